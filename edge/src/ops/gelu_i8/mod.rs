//! GELU of the int8 path as a 256-entry lookup table: with per-tensor input and output
//! quantization, GELU of an int8 code is one of 256 int8 codes, computed once (in f64) when
//! the model is quantized and stored with it. Exact GELU of the dequantized input, rounded to
//! the output grid: no approximation beyond the two quantizations themselves.

/// `lut[q as u8] = sat8(rint(gelu((q − z_in)·s_in) / s_out) + z_out)` for every int8 `q`,
/// with exact GELU (`0.5·x·(1 + erf(x/√2))`) in f64.
pub fn gelu_lut(in_scale: f32, in_zero: i32, out_scale: f32, out_zero: i32) -> [i8; 256] {
    core::array::from_fn(|i| {
        let q = i as u8 as i8;
        let x = (q as i32 - in_zero) as f64 * in_scale as f64;
        let y = 0.5 * x * (1.0 + libm::erf(x * core::f64::consts::FRAC_1_SQRT_2));
        let r = libm::rint(y / out_scale as f64) + out_zero as f64;
        r.clamp(-128.0, 127.0) as i8
    })
}

/// The reference: in place, `x[i] = lut[x[i] as u8]`.
pub fn gelu_i8_scalar(x: &mut [i8], lut: &[i8; 256]) {
    for v in x {
        *v = lut[*v as u8 as usize];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{gelu_i8_avx512, gelu_i8_avx512vbmi};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_f32_gelu_on_the_grid() {
        for (s_in, z_in, s_out, z_out) in [(0.05f32, 0, 0.04f32, -100), (0.1, 20, 0.05, -120)] {
            let lut = gelu_lut(s_in, z_in, s_out, z_out);
            for q in -128i32..=127 {
                let mut x = [(q - z_in) as f32 * s_in];
                crate::ops::gelu::gelu_f32_scalar(&mut x);
                let want = (x[0] / s_out + z_out as f32).clamp(-128.0, 127.0);
                let got = lut[q as i8 as u8 as usize] as f32;
                // Rounded to the nearest code (f32 vs f64 GELU may straddle a tie).
                assert!((got - want).abs() <= 0.5 + 1e-3, "q {q}: {got} vs {want}");
            }
            // GELU(0) = 0 maps the input zero point to the output zero point.
            assert_eq!(lut[z_in as i8 as u8 as usize] as i32, z_out);
        }
    }
}

/// NEON: 16 codes per step by four 64-byte table lookups (`TBL` with 4 registers returns 0 for
/// indices past its 64 entries, so the four partial results are OR-ed); a scalar tail.
/// Bit-identical to [`gelu_i8_scalar`].
#[cfg(target_arch = "aarch64")]
pub fn gelu_i8_neon(x: &mut [i8], lut: &[i8; 256]) {
    use core::arch::aarch64::*;
    // SAFETY: 16-byte loads at offsets 0..256 of the 256-byte table.
    let t: [uint8x16x4_t; 4] = unsafe {
        let p = lut.as_ptr() as *const u8;
        core::array::from_fn(|i| vld1q_u8_x4(p.add(64 * i)))
    };
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` is exactly 16 bytes.
        unsafe {
            let i = vld1q_u8(c.as_ptr() as *const u8);
            let k = vdupq_n_u8(64);
            let i1 = vsubq_u8(i, k);
            let i2 = vsubq_u8(i1, k);
            let i3 = vsubq_u8(i2, k);
            let r = vorrq_u8(
                vorrq_u8(vqtbl4q_u8(t[0], i), vqtbl4q_u8(t[1], i1)),
                vorrq_u8(vqtbl4q_u8(t[2], i2), vqtbl4q_u8(t[3], i3)),
            );
            vst1q_u8(c.as_mut_ptr() as *mut u8, r);
        }
    }
    gelu_i8_scalar(chunks.into_remainder(), lut);
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::testutil::*;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(100);
        let lut: [i8; 256] = core::array::from_fn(|_| rng.next_u64() as i8);
        for n in [0, 1, 15, 16, 17, 256, 1000] {
            let mut x: std::vec::Vec<i8> =
                (0..n).map(|i| (i as u8).wrapping_mul(37) as i8).collect();
            let mut want = x.clone();
            gelu_i8_scalar(&mut want, &lut);
            gelu_i8_neon(&mut x, &lut);
            assert_eq!(x, want, "{n}");
        }
    }
}
