//! int8 model files (format version 2, flag INT8): round trip, every truncation, seeded flips,
//! one test per new record check, and runs that never panic.

mod common;
use common::*;
use edge::builder::AlignedBytes;
use edge::format::{self, entry, field, seal, Dtype, Role};
use edge::{Error, Input, Model, Precision};

fn resealed(file: &AlignedBytes, f: impl FnOnce(&mut [u8])) -> Result<(), Error> {
    let mut d = file.clone();
    f(d.as_mut_slice());
    seal(d.as_mut_slice());
    Model::parse(d.as_slice()).map(|_| ())
}

fn entry_at(i: usize) -> usize {
    format::HEADER_LEN + i * format::ENTRY_LEN
}

/// Table index and payload offset of the first tensor with `role`.
fn find(arch: &edge::Arch, b: &[u8], role: Role) -> (usize, usize) {
    let i = format::tensor_ids(arch, Precision::Int8)
        .position(|id| id.role == role)
        .unwrap();
    let off = u64::from_le_bytes(b[entry_at(i) + entry::OFFSET..][..8].try_into().unwrap());
    (i, off as usize)
}

fn run(m: &Model) -> Result<Vec<f32>, Error> {
    let a = m.arch();
    let mut arena = vec![0u8; m.arena_len()];
    let mut logits = vec![0f32; a.num_classes];
    let img = vec![90u8; a.input_h * a.input_w * 3];
    m.run(Input::HwcU8(&img), &mut arena, &mut logits)?;
    Ok(logits)
}

#[test]
fn int8_round_trip_and_close_to_f32() {
    let (arch, file) = tiny_int8_model(1);
    let m = Model::parse(file.as_slice()).unwrap();
    assert_eq!((*m.arch(), m.precision()), (arch, Precision::Int8));
    for (i, id) in format::tensor_ids(&arch, Precision::Int8).enumerate() {
        assert_eq!(m.tensor_id(i), Some(id));
    }
    assert_eq!(
        file.as_slice(),
        tiny_int8_model(1).1.as_slice(),
        "deterministic"
    );
    // The int8 logits follow the f32 model's on a calibration image.
    let (_, f) = tiny_model(1);
    let fm = Model::parse(f.as_slice()).unwrap();
    let n = arch.input_h * arch.input_w * 3;
    let img: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let (mut a1, mut a2) = (vec![0u8; fm.arena_len()], vec![0u8; m.arena_len()]);
    let (mut lf, mut lq) = (vec![0f32; 5], vec![0f32; 5]);
    fm.run(Input::HwcU8(&img), &mut a1, &mut lf).unwrap();
    m.run(Input::HwcU8(&img), &mut a2, &mut lq).unwrap();
    let range = lf.iter().fold(0f32, |r, v| r.max(v.abs()));
    let err = max_abs(&lf, &lq);
    println!("tiny int8 vs f32: max |Δlogit| {err:.4} of range {range:.4}");
    assert!(err < 0.1 * range, "{lf:?} {lq:?}");
    // The int8 arena is smaller than the f32 one.
    assert!(m.arena_len() < fm.arena_len());
}

#[test]
fn int8_truncations_and_flips_never_panic() {
    let (_, file) = tiny_int8_model(2);
    let bytes = file.as_slice();
    for len in (0..bytes.len()).step_by(7) {
        let t = AlignedBytes::from_slice(&bytes[..len]);
        assert!(Model::parse(t.as_slice()).is_err(), "len {len}");
    }
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut accepted = 0;
    for i in 0..3000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let pos = if i % 2 == 0 {
            s as usize % (format::HEADER_LEN + 40 * format::ENTRY_LEN)
        } else {
            s as usize % bytes.len()
        };
        let mut d = file.clone();
        d.as_mut_slice()[pos] ^= 1 << (s >> 60 & 7);
        seal(d.as_mut_slice());
        if let Ok(m) = Model::parse(d.as_slice()) {
            accepted += 1;
            run(&m).unwrap();
        }
    }
    assert!(accepted > 100 && accepted < 3000, "{accepted}");
}

#[test]
fn each_int8_record_defect_has_its_own_error() {
    let (arch, file) = tiny_int8_model(3);
    let b = file.as_slice();
    assert!(run(&Model::parse(b).unwrap()).is_ok());

    // Activation pairs: scale > 0 and normal; zero point an integer in −128..=127.
    let (i, off) = find(&arch, b, Role::BlockAct);
    let put_f32 =
        |at: usize, v: f32| move |b: &mut [u8]| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    for (at, v) in [
        (off, 0.0),
        (off, -1.0),
        (off, 1e-40),
        (off + 4, 128.0),
        (off + 4, 0.5),
    ] {
        let e = resealed(&file, put_f32(at, v)).unwrap_err();
        assert!(
            matches!(e, Error::BadQuantParam { index, .. } if index as usize == i),
            "{v}: {e}"
        );
    }
    assert!(matches!(
        resealed(&file, put_f32(off, f32::NAN)),
        Err(Error::NonFiniteWeight { .. })
    ));
    // GRN runs in fp16: GELU's output scale (pair 2) and 1 / GRN's output scale (pair 3) must be
    // normal fp16 values; normal f32 scales outside that range are refused, naming GELU's pair.
    let (gelu, grn) = (off + 2 * 8, off + 3 * 8);
    for (at, v) in [(gelu, 1e-6), (gelu, 1e5), (grn, 1e-6), (grn, 1e5)] {
        let e = resealed(&file, put_f32(at, v)).unwrap_err();
        assert!(
            matches!(e, Error::BadQuantParam { index, element: 4, .. } if index as usize == i)
                && e.to_string().contains("fp16"),
            "{v}: {e}"
        );
    }
    assert!(resealed(&file, put_f32(gelu, 0.01)).is_ok());
    // Requantization records: multiplier in [2^30, 2^31), shifts bounded, reserved bytes zero.
    let (i, off) = find(&arch, b, Role::Fc1Rq);
    let cases: [(usize, &[u8]); 4] = [
        (0, &0x3fff_ffffu32.to_le_bytes()),
        (4, &[32]),
        (5, &[63]),
        (6, &[1]),
    ];
    for (at, v) in cases {
        let e = resealed(&file, |b| {
            b[off + at..off + at + v.len()].copy_from_slice(v)
        })
        .unwrap_err();
        assert!(
            matches!(e, Error::BadQuantParam { index, element: 0, .. } if index as usize == i),
            "{e}"
        );
        assert!(e.to_string().contains("requantization"), "{e}");
    }
    // fp16 GRN parameters must be finite.
    let (i, off) = find(&arch, b, Role::GrnW);
    assert_eq!(
        resealed(&file, |b| b[off..off + 2]
            .copy_from_slice(&0x7e00u16.to_le_bytes())),
        Err(Error::NonFiniteWeight {
            index: i as u32,
            tensor: edge::format::TensorId {
                role: Role::GrnW,
                stage: 0,
                block: 0
            },
            element: 0
        })
    );
    // Each entry must carry its role's int8 dtype.
    let (i, _) = find(&arch, b, Role::Fc1W);
    assert_eq!(
        resealed(&file, |b| b[entry_at(i) + entry::DTYPE] = Dtype::F32 as u8),
        Err(Error::UnsupportedDtype {
            index: i as u32,
            tag: Dtype::F32 as u8
        })
    );
    // An int8 file without its flag is read as f32 and refused (different tensor list).
    assert!(matches!(
        resealed(&file, |b| b[field::FLAGS] = 0),
        Err(Error::TensorCount { .. })
    ));
    // int8 weights and biases take any value: a model that runs.
    let (_, off) = find(&arch, b, Role::Fc2W);
    let mut d = file.clone();
    d.as_mut_slice()[off..off + 64].fill(0x80);
    seal(d.as_mut_slice());
    let logits = run(&Model::parse(d.as_slice()).unwrap()).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
}
