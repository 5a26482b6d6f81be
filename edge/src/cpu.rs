//! What the CPU can run, asked of the CPU itself inside `no_std`: on x86-64 `cpuid` for the
//! instruction sets and `xgetbv` for whether the OS saves the wide registers on a context
//! switch (without that, AVX or AVX-512 code would corrupt state). Queried once, then cached in
//! an atomic (no allocation, no `std::is_x86_feature_detected!`).

use core::sync::atomic::{AtomicU8, Ordering};

/// x86-64 instruction-set extensions the kernel sets use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86Features {
    /// AVX2 + FMA + F16C with the OS saving `ymm` (x86-64-v3): the `avx2` kernel set.
    pub avx2: bool,
    /// AVX-512 F/BW/VL/DQ with the OS saving `zmm` and the opmask registers: the `avx512` set.
    pub avx512: bool,
    /// AVX-512 VNNI (`vpdpbusd` on EVEX registers), on top of `avx512`.
    pub avx512_vnni: bool,
    /// AVX-VNNI (`vpdpbusd` VEX-encoded, 256-bit), on top of `avx2`.
    pub avx_vnni: bool,
    /// AVX-512 VBMI (`vpermi2b`: 128-entry byte tables), on top of `avx512`.
    pub avx512_vbmi: bool,
    /// AVX512-FP16 (native fp16 arithmetic, 32 lanes), on top of `avx512`.
    pub avx512_fp16: bool,
}

const KNOWN: u8 = 1 << 7;
const AVX2: u8 = 1;
const AVX512: u8 = 2;
const AVX512_VNNI: u8 = 4;
const AVX_VNNI: u8 = 8;
const AVX512_VBMI: u8 = 16;
const AVX512_FP16: u8 = 32;

static CACHE: AtomicU8 = AtomicU8::new(0);

impl X86Features {
    /// The features of the CPU this runs on (all `false` off x86-64).
    pub fn get() -> X86Features {
        let mut bits = CACHE.load(Ordering::Relaxed);
        if bits & KNOWN == 0 {
            bits = detect() | KNOWN;
            CACHE.store(bits, Ordering::Relaxed);
        }
        X86Features {
            avx2: bits & AVX2 != 0,
            avx512: bits & AVX512 != 0,
            avx512_vnni: bits & AVX512_VNNI != 0,
            avx_vnni: bits & AVX_VNNI != 0,
            avx512_vbmi: bits & AVX512_VBMI != 0,
            avx512_fp16: bits & AVX512_FP16 != 0,
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    0
}

#[cfg(target_arch = "x86_64")]
fn detect() -> u8 {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let bit = |v: u32, b: u32| v >> b & 1 == 1;
    // `cpuid` exists on every x86-64 CPU; leaf 7 is read only when leaf 0 reports it.
    let (l1, max_leaf) = (__cpuid(1), __cpuid(0).eax);
    // OSXSAVE (ecx 27): the OS uses XSAVE, so XCR0 can be read.
    if !bit(l1.ecx, 27) || max_leaf < 7 {
        return 0;
    }
    // SAFETY: XGETBV is available because CPUID.1:ECX.OSXSAVE is set (checked above).
    let xcr0 = unsafe { xgetbv0() };
    let os_ymm = xcr0 & 0b110 == 0b110; // SSE and AVX state
                                        // Opmask, the high halves of ZMM0-15, ZMM16-31.
    let os_zmm = os_ymm && xcr0 & 0xE0 == 0xE0;
    let (l7, l7_1) = (__cpuid_count(7, 0), __cpuid_count(7, 1));
    let avx = bit(l1.ecx, 28);
    let fma = bit(l1.ecx, 12);
    let f16c = bit(l1.ecx, 29);
    let avx2 = os_ymm && avx && fma && f16c && bit(l7.ebx, 5);
    // F (16), DQ (17), BW (30), VL (31).
    let avx512 =
        avx2 && os_zmm && bit(l7.ebx, 16) && bit(l7.ebx, 17) && bit(l7.ebx, 30) && bit(l7.ebx, 31);
    let mut bits = 0;
    if avx2 {
        bits |= AVX2;
        if bit(l7_1.eax, 4) {
            bits |= AVX_VNNI;
        }
    }
    if avx512 {
        bits |= AVX512;
        if bit(l7.ecx, 11) {
            bits |= AVX512_VNNI;
        }
        if bit(l7.ecx, 1) {
            bits |= AVX512_VBMI;
        }
        if bit(l7.edx, 23) {
            bits |= AVX512_FP16;
        }
    }
    bits
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller checked CPUID.1:ECX.OSXSAVE.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}
