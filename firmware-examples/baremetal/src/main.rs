//! Bare-metal ConvNeXt V2 classification on aarch64 (QEMU `virt`, Cortex-A72): the model is
//! embedded with `edge::include_model!`, the arena is a static, the image is the astronaut
//! fixture (u8 RGB HWC). Prints top-5 on the PL011 UART, then starts every other core QEMU has
//! (`-smp N`; PSCI `CPU_ON`, see `smp.rs`) and runs the image again split across all of them.
//! Exits through semihosting with status 0 when top-1 equals the host's and the all-core logits
//! equal the one-core logits bit for bit, 1 otherwise, 2 on an error.
#![no_std]
#![no_main]

use core::fmt::Write;

mod smp;

mod expected {
    include!(concat!(env!("OUT_DIR"), "/expected.rs"));
}

static MODEL: &[u8] = edge::include_model!("../assets/model.cnx");
static IMAGE: &[u8] = include_bytes!("../assets/image_u8_hwc.bin");

/// Atto at 224 needs 3,015,695 bytes; checked against `Model::arena_len` at run time.
const ARENA_LEN: usize = 4 << 20;
static mut ARENA: [u8; ARENA_LEN] = [0; ARENA_LEN];

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x0, mpidr_el1
    and     x0, x0, #0xff
    cbz     x0, 2f
1:  wfe
    b       1b
2:  mov     x0, #(3 << 20)      // CPACR_EL1.FPEN: no trap on FP/SIMD
    msr     cpacr_el1, x0
    isb
    ldr     x0, =__stack_top
    mov     sp, x0
    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
3:  cmp     x0, x1
    b.hs    4f
    stp     xzr, xzr, [x0], #16
    b       3b
4:  bl      rust_main
5:  b       5b
"#
);

/// QEMU virt PL011 data register.
struct Uart;
impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // SAFETY: 0x0900_0000 is the PL011 UARTDR on QEMU virt; a volatile byte store sends it.
            unsafe { core::ptr::write_volatile(0x0900_0000 as *mut u8, b) };
        }
        Ok(())
    }
}

/// Semihosting SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit: QEMU exits with `code`.
fn exit(code: u64) -> ! {
    let block = [0x20026u64, code];
    // SAFETY: the semihosting trap reads the two-word block pointed to by x1.
    unsafe {
        core::arch::asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") block.as_ptr(), options(nostack))
    };
    loop {
        core::hint::spin_loop();
    }
}

fn counter() -> u64 {
    let t: u64;
    // SAFETY: reading the virtual counter has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) t) };
    t
}

fn freq() -> u64 {
    let f: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f) };
    f
}

#[no_mangle]
extern "C" fn rust_main() -> ! {
    let mut uart = Uart;
    // SAFETY: the only reference to ARENA ever taken (secondary cores reach it only through the
    // tasks `edge` hands them, which borrow from this one).
    let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
    match classify(&mut uart, arena) {
        Ok(true) => exit(0),
        Ok(false) => exit(1),
        Err(e) => {
            let _ = writeln!(uart, "error: {e}");
            exit(2)
        }
    }
}

fn classify(uart: &mut Uart, arena: &mut [u8]) -> Result<bool, edge::Error> {
    let model = edge::Model::parse(MODEL)?;
    let a = model.arch();
    let _ = writeln!(
        uart,
        "edge bare-metal: {} {}x{}, {} classes, model {} bytes, arena {} of {} bytes, kernels {}",
        a.name().unwrap_or("custom"),
        a.input_h,
        a.input_w,
        a.num_classes,
        model.file_len(),
        model.arena_len(),
        arena.len(),
        edge::Kernels::Auto.resolved_name().unwrap_or("?")
    );
    let mut logits = [0f32; 1000];
    let logits = logits
        .get_mut(..a.num_classes)
        .ok_or(edge::Error::OutputLength {
            expected: a.num_classes,
            got: 1000,
        })?;
    let t0 = counter();
    model.run(edge::Input::HwcU8(IMAGE), arena, logits)?;
    let ticks = counter() - t0;
    let top = top5(uart, logits);
    profile(uart, &model, arena, logits)?;
    let ok = top[0] == expected::EXPECTED_TOP1;
    let _ = writeln!(
        uart,
        "run: {} counter ticks ({} Hz; emulated time, not device latency); host top-1 {} -> {}",
        ticks,
        freq(),
        expected::EXPECTED_TOP1,
        if ok { "MATCH" } else { "MISMATCH" }
    );
    Ok(ok && all_cores(uart, &model, arena, logits)?)
}

/// Starts the other cores and runs the image split across all of them; true when the logits are
/// bit-identical to the one-core `logits` (trivially with one core).
fn all_cores(
    uart: &mut Uart,
    model: &edge::Model,
    arena: &mut [u8],
    one: &[f32],
) -> Result<bool, edge::Error> {
    let cores = smp::Cores::start();
    let n = edge::Executor::workers(&cores);
    if n == 1 {
        let _ = writeln!(
            uart,
            "smp: one core (run QEMU with -smp N to split the image across N)"
        );
        return Ok(true);
    }
    let mut logits = [0f32; 1000];
    let logits = &mut logits[..one.len()];
    let t0 = counter();
    // The arena is checked against `model.arena_len_for(n)` (a typed error if short).
    model.run_parallel(
        edge::Input::HwcU8(IMAGE),
        arena,
        logits,
        edge::Kernels::Auto,
        &cores,
    )?;
    let ticks = counter() - t0;
    let _ = writeln!(
        uart,
        "smp: the image split across {n} cores, {ticks} counter ticks (emulated time)"
    );
    top5(uart, logits);
    let same = logits
        .iter()
        .zip(one)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    let _ = writeln!(
        uart,
        "smp: {n}-core logits {} the one-core logits",
        if same {
            "bit-identical to"
        } else {
            "DIFFER from"
        }
    );
    Ok(same)
}

/// Prints the five largest logits and returns their classes (`usize::MAX` past the class count).
fn top5(uart: &mut Uart, logits: &[f32]) -> [usize; 5] {
    let mut top = [usize::MAX; 5];
    for (i, &v) in logits.iter().enumerate() {
        if let Some(slot) = (0..5).find(|&s| top[s] == usize::MAX || v > logits[top[s]]) {
            top.copy_within(slot..4, slot + 1);
            top[slot] = i;
        }
    }
    let _ = writeln!(uart, "top-5:");
    for (r, &i) in top.iter().enumerate().filter(|(_, &i)| i != usize::MAX) {
        let _ = writeln!(uart, "  {}. class {:>4}  logit {:+.6}", r + 1, i, logits[i]);
    }
    top
}

/// One more run with `edge::Profiler` on the generic timer (`cntvct_el0` as the `Clock`):
/// the share of each operator kind, no allocation.
fn profile(
    uart: &mut Uart,
    model: &edge::Model,
    arena: &mut [u8],
    logits: &mut [f32],
) -> Result<(), edge::Error> {
    let a = *model.arch();
    let mut ticks = [0u64; 256];
    let n = edge::Op::count(&a).min(ticks.len());
    let mut prof = edge::Profiler::new(counter, &mut ticks[..n]);
    model.run_with(
        edge::Input::HwcU8(IMAGE),
        arena,
        logits,
        edge::Kernels::Auto,
        &mut prof,
    )?;
    let total: u64 = ticks[..n].iter().sum();
    let _ = writeln!(uart, "profile ({total} counter ticks, emulated time):");
    let mut kinds: [(&str, u64); 16] = [("", 0); 16];
    for (op, &t) in edge::Op::schedule(&a).zip(&ticks[..n]) {
        if let Some(k) = kinds
            .iter_mut()
            .find(|k| k.0.is_empty() || k.0 == op.kind())
        {
            k.0 = op.kind();
            k.1 += t;
        }
    }
    for (kind, t) in kinds.iter().filter(|k| !k.0.is_empty()) {
        let _ = writeln!(
            uart,
            "  {kind:<24} {:>5.1} %",
            100.0 * *t as f64 / total.max(1) as f64
        );
    }
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Uart, "panic: {info}");
    exit(3)
}
