//! int8 non-overlapping k×k / stride k convolution over NHWC (stem 4×4/s4, downsample
//! 2×2/s2) to int32 accumulators: `acc[oy][ox][co] = bias[co] + Σ in[k·oy+ky][k·ox+kx][ci] ·
//! W[co][(ky·k + kx)·cin + ci]`. Patches never leave the image, so the input zero point is folded
//! into `bias` by the quantizer (`−z_in·Σ W[co][·]`), as for the pointwise conv. The stem's
//! LayerNorm consumes the accumulators. The runtime's downsample runs the same convolution as
//! [`gather_patches`] + the requantizing pointwise GEMM (8-pixel tiles, no int32 pass).
//!
//! Weights: the pointwise int8 layout ([`crate::ops::pointwise_i8::pack_c4`]) of the `cout ×
//! k·k·cin` matrix, K ordered `(ky, kx, ci)`: a patch is then `k` contiguous runs of `k·cin`.

use crate::ops::pointwise_i8::packed_index;

/// Output pixel `q`'s patch as `k` runs of `k·cin` values: the start of run `ky`.
#[inline]
fn run_start(q: usize, ky: usize, w: usize, cin: usize, k: usize) -> usize {
    let ow = w / k;
    ((q / ow * k + ky) * w + q % ow * k) * cin
}

/// The reference.
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_i8_scalar(
    input: &[i8],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    cout: usize,
    out: &mut [i32],
) {
    let kk = k * k * cin;
    for q in 0..(h / k) * (w / k) {
        for co in 0..cout {
            let mut acc = bias[co];
            for ky in 0..k {
                let run = &input[run_start(q, ky, w, cin, k)..][..k * cin];
                for (j, &v) in run.iter().enumerate() {
                    let wv = weight[packed_index(kk, co, ky * k * cin + j)];
                    acc = acc.wrapping_add(v as i32 * wv as i32);
                }
            }
            out[q * cout + co] = acc;
        }
    }
}

/// [`patch_conv_i8_scalar`] with the kernel-set signature (the NEON forms gather patches into
/// `scratch`; the reference needs none).
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_i8_scalar_slot(
    input: &[i8],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    weight: &[i8],
    bias: &[i32],
    cout: usize,
    out: &mut [i32],
    _scratch: &mut [i8],
) {
    patch_conv_i8_scalar(input, h, w, cin, k, weight, bias, cout, out)
}

/// The patches of output pixels `pixels` (row-major, `q = oy·ow + ox`) of a k×k / stride k
/// convolution over the NHWC `input` (`w` pixels wide, `cin` channels), one row of `k·k·cin`
/// values per output pixel in the weights' K order `(ky, kx, ci)`: `out[(q − pixels.start)·k·k·
/// cin..]` (im2col, `ow = w / k`). Over them the convolution is the pointwise GEMM with the
/// same packed weights (see the module docs), whose 8-row register tiles and requantizing
/// epilogue the runtime's downsample then uses. A patch row is also `k·k` whole input pixels
/// of `cin` channels, so per-pixel operators (the downsample's LayerNorm) may run on the
/// gathered rows. Panics if a slice is short.
pub fn gather_patches(
    input: &[i8],
    w: usize,
    cin: usize,
    k: usize,
    pixels: core::ops::Range<usize>,
    out: &mut [i8],
) {
    let run = k * cin;
    let kk = k * run;
    for (patch, q) in out[..pixels.len() * kk].chunks_exact_mut(kk).zip(pixels) {
        for (ky, dst) in patch.chunks_exact_mut(run).enumerate() {
            dst.copy_from_slice(&input[run_start(q, ky, w, cin, k)..][..run]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub use x86::{patch_conv_i8_avx2, patch_conv_i8_avx512vnni};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pointwise_i8::{pack_c4, packed_len};
    use crate::ops::testutil::*;
    use std::vec::Vec;

    /// The pointwise GEMM over the gathered patches of any range of output pixels is the patch
    /// conv (its rows of the output), accumulators and requantized codes alike.
    #[test]
    fn gemm_over_gathered_patches_is_the_conv() {
        use crate::ops::pointwise_i8::{pointwise_i8_acc_scalar, pointwise_i8_scalar};
        use crate::ops::requant::{requantize_channels_scalar, Requant};
        let mut rng = Rng::new(131);
        for (h, w, cin, cout, k) in [(14, 14, 40, 80, 2), (8, 12, 3, 13, 4), (2, 2, 1, 1, 2)] {
            let (oh, ow, kk) = (h / k, w / k, k * k * cin);
            let x = rng.bytes(h * w * cin);
            let mut wp = std::vec![0i8; packed_len(cout, kk)];
            pack_c4(&rng.bytes(cout * kk), cout, kk, &mut wp);
            let b: Vec<i32> = (0..cout).map(|_| rng.next_u64() as i32 >> 12).collect();
            let rq: Vec<Requant> = (0..cout)
                .map(|j| Requant::from_scale(1e-3 * (1 + j % 7) as f64).unwrap())
                .collect();
            let mut conv = std::vec![0i32; oh * ow * cout];
            patch_conv_i8_scalar(&x, h, w, cin, k, &wp, &b, cout, &mut conv);
            let mut want = std::vec![0i8; conv.len()];
            requantize_channels_scalar(&conv, oh * ow, cout, &rq, -3, &mut want);
            // Whole images, bands of rows, and ranges that start and end inside a row.
            let q = oh * ow;
            for pixels in [0..q, q / 2..q, 0..1, 1..q - q / 3, q - 1..q] {
                let px = pixels.len();
                let mut patches = std::vec![7i8; px * kk + 1];
                gather_patches(&x, w, cin, k, pixels.clone(), &mut patches);
                assert_eq!(patches[px * kk], 7, "wrote past the band");
                let (mut acc, mut codes) = (std::vec![0i32; px * cout], std::vec![0i8; px * cout]);
                pointwise_i8_acc_scalar(&patches, px, kk, &wp, &b, cout, &mut acc);
                pointwise_i8_scalar(&patches, px, kk, &wp, &b, &rq, -3, cout, &mut codes);
                let band = pixels.start * cout..pixels.end * cout;
                assert_eq!(acc, conv[band.clone()], "{h}x{w}x{cin} k{k} {pixels:?}");
                assert_eq!(codes, want[band], "{h}x{w}x{cin} k{k} {pixels:?}");
            }
        }
    }

    /// Against the f32 patch conv on integer values (exact in f32 at these sizes).
    #[test]
    fn equals_f32_reference_on_integer_values() {
        let mut rng = Rng::new(130);
        for (h, w, cin, cout, k) in [(8, 8, 3, 5, 4), (4, 6, 7, 9, 2), (2, 2, 1, 1, 2)] {
            let x = rng.bytes(h * w * cin);
            let wm = rng.bytes(cout * k * k * cin); // [cout][(ky,kx,ci)]
            let b: Vec<i32> = (0..cout)
                .map(|_| (rng.next_u64() % 2001) as i32 - 1000)
                .collect();
            let mut wp = std::vec![0i8; packed_len(cout, k * k * cin)];
            pack_c4(&wm, cout, k * k * cin, &mut wp);
            let mut got = std::vec![0i32; (h / k) * (w / k) * cout];
            patch_conv_i8_scalar(&x, h, w, cin, k, &wp, &b, cout, &mut got);
            // HWIO f32 weights from the [cout][(ky,kx,ci)] matrix.
            let mut hwio = std::vec![0f32; wm.len()];
            for co in 0..cout {
                for r in 0..k * k * cin {
                    hwio[r * cout + co] = wm[co * k * k * cin + r] as f32;
                }
            }
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
            let mut want = std::vec![0f32; got.len()];
            crate::ops::patch_conv::patch_conv_f32_scalar(
                &xf,
                h,
                w,
                cin,
                k,
                &hwio,
                &bf,
                cout,
                0..cout,
                &mut want,
            );
            for (g, wv) in got.iter().zip(&want) {
                assert_eq!(*g as f32, *wv);
            }
        }
    }
}

/// NEON: up to 4 output pixels' patches gathered into `scratch` (`4·k·k·cin` bytes, from the
/// caller's arena), then the pointwise int8 GEMM driver and micro-kernel (`SMULL` + `SADALP`)
/// over them. Bit-identical to [`patch_conv_i8_scalar`].
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_i8_neon(
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
    let tile = crate::ops::pointwise_i8::smull(k * k * cin);
    patch_conv_i8_with(input, h, w, cin, k, weight, bias, cout, out, scratch, tile)
}

/// [`patch_conv_i8_neon`] with the `SDOT` micro-kernel (cargo feature `dotprod`).
///
/// # Safety
/// The CPU must implement FEAT_DotProd.
#[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub unsafe fn patch_conv_i8_sdot(
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
    // SAFETY: the caller guarantees dotprod.
    let tile = unsafe { crate::ops::pointwise_i8::sdot(k * k * cin) };
    patch_conv_i8_with(input, h, w, cin, k, weight, bias, cout, out, scratch, tile)
}

#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn patch_conv_i8_with(
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
    mut tile: impl FnMut(usize, &[i8], &[i8], &mut [[i32; 8]; 4]),
) {
    use crate::ops::pointwise_i8::{acc_store, gemm_i8, packed_len};
    let kk = k * k * cin;
    let pixels = (h / k) * (w / k);
    assert!(input.len() >= h * w * cin && weight.len() >= packed_len(cout, kk));
    assert!(bias.len() >= cout && out.len() >= pixels * cout && scratch.len() >= 4 * kk);
    let mut q = 0;
    while q < pixels {
        let mr = [4, 2, 1]
            .into_iter()
            .find(|&m| pixels - q >= m)
            .unwrap_or(1);
        // The pixels' patches become `mr` contiguous GEMM rows of k·k·cin.
        for r in 0..mr {
            for ky in 0..k {
                let src = &input[run_start(q + r, ky, w, cin, k)..][..k * cin];
                scratch[r * kk + ky * k * cin..][..k * cin].copy_from_slice(src);
            }
        }
        let mut emit = acc_store(bias, cout, &mut out[q * cout..]);
        gemm_i8(
            &scratch[..mr * kk],
            mr,
            kk,
            weight,
            cout,
            &mut tile,
            &mut emit,
        );
        q += mr;
    }
}

/// [`patch_conv_i8_sdot`] in a build whose target has FEAT_DotProd. Kernel-set slot.
#[cfg(all(
    target_arch = "aarch64",
    feature = "dotprod",
    target_feature = "dotprod"
))]
#[allow(clippy::too_many_arguments)]
pub fn patch_conv_i8_sdot_static(
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
    // SAFETY: `target_feature = "dotprod"` holds for the whole build (cfg above).
    unsafe { patch_conv_i8_sdot(input, h, w, cin, k, weight, bias, cout, out, scratch) }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod neon_tests {
    use super::*;
    use crate::ops::pointwise_i8::packed_len;
    use crate::ops::testutil::*;
    use std::vec::Vec;

    #[test]
    fn neon_bit_identical_to_reference() {
        let mut rng = Rng::new(131);
        let mut shapes = std::vec![(224, 224, 3, 40, 4), (14, 14, 160, 320, 2), (2, 2, 1, 1, 2)];
        for _ in 0..25 {
            let k = if rng.next_u64() % 2 == 0 { 2 } else { 4 };
            shapes.push((
                k * (1 + rng.next_u64() as usize % 5),
                k * (1 + rng.next_u64() as usize % 5),
                1 + rng.next_u64() as usize % 20,
                1 + rng.next_u64() as usize % 40,
                k,
            ));
        }
        for (h, w, cin, cout, k) in shapes {
            let kk = k * k * cin;
            let x = rng.bytes(h * w * cin);
            let wp = rng.bytes(packed_len(cout, kk));
            let b: Vec<i32> = (0..cout).map(|_| (rng.next_u64() as i32) >> 8).collect();
            let n = (h / k) * (w / k) * cout;
            let (mut want, mut got) = (std::vec![0i32; n], std::vec![0i32; n]);
            let mut scratch = std::vec![0i8; 4 * kk];
            patch_conv_i8_scalar(&x, h, w, cin, k, &wp, &b, cout, &mut want);
            patch_conv_i8_neon(&x, h, w, cin, k, &wp, &b, cout, &mut got, &mut scratch);
            assert_eq!(got, want, "{h}x{w}x{cin}->{cout} k{k}");
            #[cfg(feature = "dotprod")]
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                let mut got = std::vec![0i32; n];
                // SAFETY: dotprod detected.
                unsafe {
                    patch_conv_i8_sdot(&x, h, w, cin, k, &wp, &b, cout, &mut got, &mut scratch)
                };
                assert_eq!(got, want, "sdot {h}x{w}x{cin}->{cout} k{k}");
            }
        }
    }
}
