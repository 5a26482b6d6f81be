//! x86-64 int8 patch convolutions: up to 4 output pixels' patches gathered into `scratch`
//! (`4·k·k·cin` bytes, the same scratch the NEON kernels take), then the int8 GEMM of
//! [`crate::ops::pointwise_i8::x86`] over the c4-packed `[cout][k·k·cin]` weights (int32 out).
//! Bit-identical to [`super::patch_conv_i8_scalar`] (integer sums).

use crate::ops::pointwise_i8::packed_len;
use crate::ops::pointwise_i8::x86::{self, GemmI8, EPI_I32};

#[allow(clippy::too_many_arguments)]
fn patch_conv_i8_x86(
    input: &[i8],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    cout: usize,
    out: &mut [i32],
    scratch: &mut [i8],
    gemm: unsafe fn(&GemmI8),
) {
    let kk = k * k * cin;
    let ow = w / k;
    let pixels = (h / k) * ow;
    assert!(
        input.len() >= h * w * cin
            && weight.len() >= packed_len(cout, kk)
            && bias.len() >= cout
            && out.len() >= pixels * cout
            && scratch.len() >= 4 * kk
    );
    let mut q = 0;
    while q < pixels {
        let mr = (pixels - q).min(4);
        for r in 0..mr {
            let (oy, ox) = ((q + r) / ow, (q + r) % ow);
            for ky in 0..k {
                let src = &input[((oy * k + ky) * w + ox * k) * cin..][..k * cin];
                scratch[r * kk + ky * k * cin..][..k * cin].copy_from_slice(src);
            }
        }
        let g = GemmI8 {
            a: scratch.as_ptr(),
            k: kk,
            b: weight.as_ptr(),
            bias: bias.as_ptr(),
            rows: mr,
            n: cout,
            out: out[q * cout..].as_mut_ptr().cast(),
            rq: core::ptr::null(),
            zero_point: 0,
        };
        // SAFETY: the caller checked the CPU has the GEMM's ISA; `scratch` holds mr rows of
        // kk, the weights packed_len(cout, kk), `out` rows q..q+mr of cout (asserted above).
        unsafe { gemm(&g) };
        q += mr;
    }
}

/// Defines the safe entry point of one ISA.
macro_rules! entry_point {
    ($isa:literal, $has:ident, $gemm:ident, $name:ident) => {
        #[doc = concat!("[`super::patch_conv_i8_scalar`] on ", $isa, ", bit-identical to it. Panics if the CPU lacks it or a slice is short.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $name(
            input: &[i8],
            h: usize,
            w: usize,
            cin: usize,
            k: usize,
            weight: &[i8],
            bias: &[i32],
            cout: usize,
            out: &mut [i32],
            scratch: &mut [i8],
        ) {
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            let gemm: unsafe fn(&GemmI8) = x86::$gemm::<EPI_I32>;
            patch_conv_i8_x86(input, h, w, cin, k, weight, bias, cout, out, scratch, gemm)
        }
    };
}

entry_point!("AVX2", avx2, gemm_avx2, patch_conv_i8_avx2);
entry_point!(
    "AVX-512 VNNI",
    avx512_vnni,
    gemm_vnni,
    patch_conv_i8_avx512vnni
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::X86Features;
    use crate::ops::patch_conv_i8::patch_conv_i8_scalar;
    use crate::ops::pointwise_i8::pack_c4;
    use crate::ops::testutil::*;
    use std::vec;

    type Patch = fn(&[i8], usize, usize, usize, usize, &[i8], &[i32], usize, &mut [i32], &mut [i8]);

    #[test]
    fn x86_bit_identical_to_reference() {
        let f = X86Features::get();
        let sets: [(&str, bool, Patch); 2] = [
            ("avx2", f.avx2, patch_conv_i8_avx2),
            ("avx512vnni", f.avx512_vnni, patch_conv_i8_avx512vnni),
        ];
        let mut rng = Rng::new(94);
        for (name, has, kernel) in sets {
            if !has {
                std::println!("patch_conv_i8 {name}: not on this CPU, skipped");
                continue;
            }
            for (h, w, cin, k, cout) in [
                (16, 16, 3, 4, 40),
                (14, 14, 40, 2, 80),
                (8, 12, 3, 4, 13),
                (4, 6, 5, 2, 21),
                (2, 2, 1, 2, 1),
            ] {
                let kk = k * k * cin;
                let mut x = rng.bytes(h * w * cin);
                let mut wt = rng.bytes(cout * kk);
                if cin == 5 {
                    // Extremes: every product (−128)·(−128).
                    x.iter_mut().for_each(|v| *v = -128);
                    wt.iter_mut().for_each(|v| *v = -128);
                }
                let mut wp = vec![0i8; packed_len(cout, kk)];
                pack_c4(&wt, cout, kk, &mut wp);
                let b: std::vec::Vec<i32> = (0..cout).map(|_| rng.next_u64() as i32 >> 8).collect();
                let n = (h / k) * (w / k) * cout;
                let (mut want, mut got) = (vec![0i32; n + 1], vec![3i32; n + 1]);
                want[n] = 3;
                let mut scratch = vec![0i8; 4 * kk];
                patch_conv_i8_scalar(&x, h, w, cin, k, &wp, &b, cout, &mut want);
                kernel(&x, h, w, cin, k, &wp, &b, cout, &mut got, &mut scratch);
                assert_eq!(got, want, "{name} {h}x{w}x{cin} k{k} → {cout}");
            }
            std::println!("patch_conv_i8 {name}: ran");
        }
    }
}
