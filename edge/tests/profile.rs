//! Per-operator profiling: a timed observer is told the end of every step of the fused
//! schedule, in `Op::schedule` order, f32 and int8; a `Profiler` charges each step exactly the
//! clock ticks between its neighbours; profiling changes no logit.

mod common;

use common::atto_f32_int8;
use edge::profile::BlockStep;
use edge::{Arch, Input, Kernels, NoObserver, Observer, Op, Profiler, QParams, Serial, Tap};

/// The steps a timed observer is told about, with their indices and whether `run_start` came
/// first.
#[derive(Default)]
struct Steps {
    started: usize,
    seen: Vec<(Op, usize)>,
}
impl Observer for Steps {
    const ENABLED: bool = false;
    const TIMED: bool = true;
    fn observe(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[f32]) {
        unreachable!("ENABLED is false")
    }
    fn observe_i8(&mut self, _: Tap, _: usize, _: usize, _: usize, _: &[i8], _: QParams) {
        unreachable!("ENABLED is false")
    }
    fn run_start(&mut self) {
        assert!(self.seen.is_empty());
        self.started += 1;
    }
    fn op_done(&mut self, op: Op, index: usize) {
        self.seen.push((op, index));
    }
}

#[test]
fn every_step_is_reported_once_in_schedule_order_and_timed_exactly() {
    let (f32_file, i8_file, img) = atto_f32_int8(64);
    let (f32m, i8m) = (f32_file.model(), i8_file.model());
    for (model, name) in [(&f32m, "f32"), (&i8m, "int8")] {
        let a = *model.arch();
        let want: Vec<(Op, usize)> = Op::schedule(&a).enumerate().map(|(i, o)| (o, i)).collect();
        assert_eq!(want.len(), Op::count(&a));
        // Atto: input, stem, 3 downsamples, 4 steps in each of 2+2+6+2 blocks, pool, head.
        assert_eq!(want.len(), 2 + 3 + 4 * 12 + 2);
        let mut arena = vec![0u8; model.arena_len()];
        let mut logits = vec![0f32; a.num_classes];
        let mut plain = vec![0f32; a.num_classes];
        for k in Kernels::available() {
            let mut steps = Steps::default();
            model
                .run_with_executor(
                    Input::HwcU8(&img),
                    &mut arena,
                    &mut logits,
                    k,
                    &mut steps,
                    &Serial,
                )
                .unwrap();
            assert_eq!(steps.started, 1);
            assert_eq!(steps.seen, want, "{name} {}", k.name());

            // A clock that advances by one per reading: every step gets exactly one tick, and
            // a second run adds one more.
            let mut t = 0u64;
            let clock = || {
                t += 1;
                t
            };
            let mut ticks = vec![0u64; Op::count(&a)];
            let mut prof = Profiler::new(clock, &mut ticks);
            for _ in 0..2 {
                model
                    .run_with_executor(
                        Input::HwcU8(&img),
                        &mut arena,
                        &mut logits,
                        k,
                        &mut prof,
                        &Serial,
                    )
                    .unwrap();
            }
            assert!(
                prof.ticks().iter().all(|&n| n == 2),
                "{name}: {:?}",
                prof.ticks()
            );
            model
                .run_with(
                    Input::HwcU8(&img),
                    &mut arena,
                    &mut plain,
                    k,
                    &mut NoObserver,
                )
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&logits),
                bits(&plain),
                "{name}: profiling changed the logits"
            );
        }
    }
}

#[test]
fn a_short_tick_buffer_records_what_fits() {
    let (f32_file, _, img) = atto_f32_int8(32);
    let m = f32_file.model();
    let mut t = 0u64;
    let mut ticks = [0u64; 3];
    let mut prof = Profiler::new(
        || {
            t += 10;
            t
        },
        &mut ticks,
    );
    let mut arena = vec![0u8; m.arena_len()];
    let mut logits = vec![0f32; m.arch().num_classes];
    m.run_with(
        Input::HwcU8(&img),
        &mut arena,
        &mut logits,
        Kernels::Auto,
        &mut prof,
    )
    .unwrap();
    assert_eq!(ticks, [10, 10, 10]);
}

#[test]
fn step_macs_add_up_to_the_model_and_names_read_like_timm() {
    for a in [
        Arch::named("atto", 1000, 224, 224).unwrap(),
        Arch::named("base", 10, 96, 160).unwrap(),
        Arch::new([2, 1, 3, 1], [16, 32, 48, 64], 7, 77, 45),
    ] {
        let total: u64 = Op::schedule(&a).map(|o| o.macs(&a)).sum();
        assert_eq!(total, a.macs());
        assert_eq!(Op::schedule(&a).count(), Op::count(&a));
    }
    let a = Arch::named("atto", 1000, 224, 224).unwrap();
    let names: Vec<String> = Op::schedule(&a).map(|o| o.to_string()).collect();
    assert_eq!(names[0], "input");
    assert_eq!(names[1], "stem");
    assert_eq!(names[2], "stages.0.blocks.0 dwconv7x7+LN");
    assert_eq!(names[10], "stages.1.downsample");
    assert_eq!(names.last().unwrap(), "head.fc");
    // The pointwise pair dominates: fc1 and fc2 of a block have equal MACs, 4·C/49 times the
    // depthwise's (C = 40 in Atto's first stage).
    let step = |s| Op::Block {
        stage: 0,
        block: 0,
        step: s,
    };
    assert_eq!(
        step(BlockStep::Fc1Gelu).macs(&a),
        step(BlockStep::Fc2Residual).macs(&a)
    );
    assert_eq!(
        step(BlockStep::Fc1Gelu).macs(&a) * 49,
        step(BlockStep::DwConvNorm).macs(&a) * 4 * 40
    );
}
