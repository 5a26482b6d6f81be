//! x86-64 GELU table lookup with AVX-512 VBMI: 64 codes per step, the 256-entry table held in
//! four `zmm` registers; `vpermi2b` looks up the low 7 bits in the table's lower or upper half
//! and the code's sign bit picks between the two. Bit-identical to [`super::gelu_i8_scalar`]
//! (it is the same table); the tail of fewer than 64 codes is masked.

use crate::cpu::X86Features;
use core::arch::x86_64::*;

/// [`super::gelu_i8_scalar`] on AVX-512 VBMI. Panics if the CPU lacks it.
pub fn gelu_i8_avx512vbmi(x: &mut [i8], lut: &[i8; 256]) {
    let f = X86Features::get();
    assert!(f.avx512 && f.avx512_vbmi, "AVX-512 VBMI not available");
    // SAFETY: the CPU has AVX-512 F/BW and VBMI (asserted).
    unsafe { lookup(x, lut) }
}

/// The AVX-512 int8 set's GELU slot: [`gelu_i8_avx512vbmi`] where the CPU has VBMI (Ice Lake,
/// Sapphire Rapids, Zen 4 and later), else the reference (Cascade Lake has VNNI without VBMI).
pub fn gelu_i8_avx512(x: &mut [i8], lut: &[i8; 256]) {
    let f = X86Features::get();
    if f.avx512 && f.avx512_vbmi {
        gelu_i8_avx512vbmi(x, lut)
    } else {
        super::gelu_i8_scalar(x, lut)
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn lookup(x: &mut [i8], lut: &[i8; 256]) {
    // Table entries 0..128 are the codes 0..=127, 128..256 the codes −128..=−1 (`q as u8`).
    // SAFETY: `lut` holds 256 bytes.
    let t: [__m512i; 4] =
        core::array::from_fn(|i| unsafe { _mm512_loadu_si512(lut.as_ptr().add(64 * i).cast()) });
    let step = |v: __m512i| {
        let lo = _mm512_permutex2var_epi8(t[0], v, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], v, t[3]);
        _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi)
    };
    let mut chunks = x.chunks_exact_mut(64);
    for c in &mut chunks {
        // SAFETY: `c` holds 64 bytes.
        unsafe {
            let v = _mm512_loadu_si512(c.as_ptr().cast());
            _mm512_storeu_si512(c.as_mut_ptr().cast(), step(v));
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let m: __mmask64 = (1u64 << rest.len()) - 1;
        // SAFETY: the mask covers exactly `rest.len()` bytes.
        unsafe {
            let v = _mm512_maskz_loadu_epi8(m, rest.as_ptr());
            _mm512_mask_storeu_epi8(rest.as_mut_ptr(), m, step(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gelu_i8::{gelu_i8_scalar, gelu_lut};
    use crate::ops::testutil::*;

    #[test]
    fn vbmi_bit_identical_to_reference() {
        let f = X86Features::get();
        if !(f.avx512 && f.avx512_vbmi) {
            std::println!("gelu_i8 avx512vbmi: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(99);
        let lut = gelu_lut(0.05, -7, 0.03, -100);
        // Every code, then random lengths around the 64-byte step.
        let all: std::vec::Vec<i8> = (0..=255u8).map(|v| v as i8).collect();
        for len in [256, 1, 63, 64, 65, 200, 1000] {
            let x: std::vec::Vec<i8> = if len == 256 {
                all.clone()
            } else {
                rng.bytes(len)
            };
            let (mut want, mut got) = (x.clone(), x.clone());
            gelu_i8_scalar(&mut want, &lut);
            gelu_i8_avx512vbmi(&mut got, &lut);
            assert_eq!(got, want, "len {len}");
        }
        std::println!("gelu_i8 avx512vbmi: ran");
    }
}
