//! x86-64 patch convolutions (the stem's 4×4/s4 and the downsampling 2×2/s2, non-overlapping):
//! each output row is a GEMM of its `ow` patches (`k` segments of `k·cin` contiguous inputs
//! each) against the HWIO weights, on the pointwise GEMM's tiles
//! ([`crate::ops::pointwise::x86`]). Output channels past the last multiple of 8 (none in the
//! standard models) take the reference's loop.

use crate::ops::pointwise::x86::{self, Gemm, EPI_STORE};

/// Defines the safe entry point of one ISA.
macro_rules! entry_point {
    ($isa:literal, $has:ident, $gemm:ident, $name:ident) => {
        #[doc = concat!("[`super::patch_conv_f32_scalar`] on ", $isa, "; within f32 rounding (FMA) of it.")]
        #[doc = "Panics if the CPU lacks it or a slice is short."]
        #[allow(clippy::too_many_arguments)]
        pub fn $name(
            input: &[f32],
            h: usize,
            w: usize,
            cin: usize,
            k: usize,
            weight: &[f32],
            bias: &[f32],
            cout: usize,
            cols: core::ops::Range<usize>,
            out: &mut [f32],
        ) {
            assert!(crate::cpu::X86Features::get().$has, concat!($isa, " not available"));
            let (oh, ow) = (h / k, w / k);
            assert!(cols.start <= cols.end && cols.end <= cout);
            let (c0, nc) = (cols.start, cols.len());
            assert!(
                input.len() >= h * w * cin
                    && weight.len() >= k * k * cin * cout
                    && bias.len() >= cout
                    && out.len() >= oh * ow * nc
            );
            let full = nc / 8 * 8;
            for oy in 0..oh {
                let g = Gemm {
                    a: input[oy * k * w * cin..].as_ptr(),
                    a_row: k * cin,
                    seg_len: k * cin,
                    segs: k,
                    seg_stride: w * cin,
                    b: weight[c0..].as_ptr(),
                    b_panel: 8,
                    b_row: cout,
                    bias: bias[c0..].as_ptr(),
                    out: out[oy * ow * nc..].as_mut_ptr(),
                    out_row: nc,
                    rows: ow,
                    n: full,
                    sumsq: core::ptr::null_mut(),
                };
                // SAFETY: the CPU has the ISA (asserted). Patch ox of row oy reads input rows
                // oy·k..oy·k+k, columns ox·k..ox·k+k (all cin channels): inside `input`; B reads
                // rows 0..k·k·cin (cout apart), columns c0..c0+full ≤ cols.end ≤ cout of
                // `weight`; `out` row oy (rows nc apart), columns < full ≤ nc. All inside the
                // asserted lengths.
                unsafe { x86::$gemm::<EPI_STORE>(&g) };
            }
            if full < nc {
                super::patch_conv_columns(
                    input, h, w, cin, k, weight, bias, cout, cols.clone(), c0 + full, out,
                );
            }
        }
    };
}

entry_point!("AVX2+FMA", avx2, gemm_avx2, patch_conv_f32_avx2);
entry_point!("AVX-512", avx512, gemm_avx512, patch_conv_f32_avx512);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::X86Features;
    use crate::ops::patch_conv::patch_conv_f32_scalar;
    use crate::ops::testutil::*;
    use std::vec;

    type Patch = crate::kernels::PatchFn;

    #[test]
    fn x86_matches_reference() {
        let f = X86Features::get();
        let mut rng = Rng::new(74);
        let sets: [(&str, bool, Patch); 2] = [
            ("avx2", f.avx2, patch_conv_f32_avx2),
            ("avx512", f.avx512, patch_conv_f32_avx512),
        ];
        for (name, has, kernel) in sets {
            if !has {
                std::println!("patch_conv {name}: not on this CPU, skipped");
                continue;
            }
            for (h, w, cin, k, cout) in [
                (16, 16, 3, 4, 40),
                (14, 14, 40, 2, 80),
                (8, 12, 3, 4, 13),
                (4, 6, 5, 2, 21),
                (2, 2, 1, 2, 1),
                (14, 14, 160, 2, 320),
            ] {
                let x = rng.vec(h * w * cin, 1.0);
                let wt = rng.vec(k * k * cin * cout, 1.0);
                let b = rng.vec(cout, 1.0);
                let n = (h / k) * (w / k) * cout;
                let (mut want, mut got) = (vec![0.0; n + 1], vec![0.0; n + 1]);
                patch_conv_f32_scalar(&x, h, w, cin, k, &wt, &b, cout, 0..cout, &mut want);
                kernel(&x, h, w, cin, k, &wt, &b, cout, 0..cout, &mut got);
                let scale = ((k * k * cin) as f32).sqrt();
                assert!(
                    max_rel_err(&got, &want) <= 1e-6 * scale,
                    "{name} {h}x{w}x{cin} k{k} → {cout}"
                );
                assert_eq!(got[n], 0.0);
            }
            std::println!("patch_conv {name}: ran");
        }
    }
}
