//! Depthwise 7×7 convolution, stride 1, padding 3 (every ConvNeXt block's token mixer), NCHW, with
//! its two gradients.
//!
//! Burn computes the input gradient of a grouped convolution as a transposed convolution, which
//! flex runs through its generic `conv_transpose3d` (9–13 % of a training step under `perf`), and
//! the weight gradient as one small convolution and one slice-assign per channel. Here all three
//! are direct loops over one image plane at a time: the forward pass accumulates 49 shifted row
//! AXPYs into each output row; the input gradient is the same loop with the kernel rotated by
//! 180°; the weight gradient is 49 row dot products per plane, summed over the batch. Rows are
//! contiguous, so the inner loops vectorize. Planes run in parallel (rayon).

use rayon::prelude::*;

use super::madd;

/// Kernel side.
pub const K: usize = 7;
/// Padding on each side (output size = input size).
pub const PAD: usize = 3;

/// Output columns computed per step: one 8-lane register (AVX) or two (SSE).
const LANES: usize = 8;
/// Input columns one step reads: `LANES` outputs plus the kernel's reach.
const SPAN: usize = LANES + K - 1;

/// One plane's geometry with zero borders: rows padded to a whole number of `LANES` columns
/// (`pw`), and the input additionally by `PAD` on every side, so that the inner loops need no
/// bounds checks or edge cases.
#[derive(Clone, Copy)]
struct Padded {
    h: usize,
    w: usize,
    /// Output row stride: `w` rounded up to `LANES`.
    pw: usize,
    /// Padded input row stride: `pw + K − 1`.
    xw: usize,
}

impl Padded {
    fn new(h: usize, w: usize) -> Self {
        let pw = w.div_ceil(LANES) * LANES;
        Padded {
            h,
            w,
            pw,
            xw: pw + K - 1,
        }
    }

    /// Copies `plane` (`h × w`) into `buf` with a zero border of `border` rows and columns
    /// before it, row stride `stride`, `rows` rows in all.
    fn fill(&self, plane: &[f32], border: usize, stride: usize, rows: usize, buf: &mut Vec<f32>) {
        buf.clear();
        buf.resize(rows * stride, 0.0);
        for (y, src) in plane.chunks_exact(self.w).enumerate() {
            let at = (y + border) * stride + border;
            buf[at..at + self.w].copy_from_slice(src);
        }
    }
}

/// `out = bias + Σ_{ky,kx} k[ky,kx] · xp[y+ky, x+kx]` over a padded plane `xp` (stride `g.xw`),
/// `LANES` outputs at a time held in registers across all 49 taps.
#[inline(always)]
fn plane_forward_body<const FMA: bool>(
    xp: &[f32],
    k: &[f32; K * K],
    bias: f32,
    g: Padded,
    out: &mut [f32],
) {
    for oy in 0..g.h {
        for ox in (0..g.pw).step_by(LANES) {
            let mut acc = [bias; LANES];
            for ky in 0..K {
                let at = (oy + ky) * g.xw + ox;
                let row: &[f32; SPAN] = xp[at..at + SPAN].try_into().expect("padded row");
                for kx in 0..K {
                    let kv = k[ky * K + kx];
                    for l in 0..LANES {
                        acc[l] = madd::<FMA>(kv, row[kx + l], acc[l]);
                    }
                }
            }
            let n = LANES.min(g.w.saturating_sub(ox));
            out[oy * g.w + ox..oy * g.w + ox + n].copy_from_slice(&acc[..n]);
        }
    }
}

/// Adds one plane's weight gradient into `dk`: `dk[ky,kx] += Σ_{y,x} gp[y,x] · xp[y+ky, x+kx]`
/// (`gp` zero-padded to stride `g.pw`, `xp` as in [`plane_forward`]); for each `ky`, 7×`LANES`
/// partial sums stay in registers over the whole plane.
#[inline(always)]
fn plane_weight_grad_body<const FMA: bool>(
    xp: &[f32],
    gp: &[f32],
    g: Padded,
    dk: &mut [f32; K * K],
) {
    for ky in 0..K {
        let mut acc = [[0f32; LANES]; K];
        for oy in 0..g.h {
            for ox in (0..g.pw).step_by(LANES) {
                let gv: &[f32; LANES] = gp[oy * g.pw + ox..oy * g.pw + ox + LANES]
                    .try_into()
                    .expect("padded row");
                let at = (oy + ky) * g.xw + ox;
                let row: &[f32; SPAN] = xp[at..at + SPAN].try_into().expect("padded row");
                for kx in 0..K {
                    for l in 0..LANES {
                        acc[kx][l] = madd::<FMA>(gv[l], row[kx + l], acc[kx][l]);
                    }
                }
            }
        }
        for kx in 0..K {
            dk[ky * K + kx] += acc[kx].iter().sum::<f32>();
        }
    }
}

isa_dispatch!(
    /// [`plane_forward_body`] for this CPU.
    fn plane_forward => plane_forward_body(xp: &[f32], k: &[f32; K * K], bias: f32, g: Padded, out: &mut [f32])
);
isa_dispatch!(
    /// [`plane_weight_grad_body`] for this CPU.
    fn plane_weight_grad => plane_weight_grad_body(xp: &[f32], gp: &[f32], g: Padded, dk: &mut [f32; K * K])
);

fn kernel_of(weight: &[f32], c: usize) -> [f32; K * K] {
    weight[c * K * K..(c + 1) * K * K]
        .try_into()
        .expect("K·K weights per channel")
}

/// Forward: `x`, `out` `[n, c, h, w]`, `weight` `[c, 1, 7, 7]`, `bias` `[c]`.
pub fn dwconv7x7_f32(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    [n, c, h, w]: [usize; 4],
    out: &mut [f32],
) {
    assert!(x.len() == n * c * h * w && out.len() == x.len());
    assert!(weight.len() == c * K * K && bias.len() == c);
    if h * w == 0 {
        return;
    }
    let g = Padded::new(h, w);
    out.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .enumerate()
        .for_each_init(Vec::new, |xp, (p, (o, plane))| {
            let ch = p % c;
            g.fill(plane, PAD, g.xw, h + K - 1, xp);
            plane_forward(xp, &kernel_of(weight, ch), bias[ch], g, o);
        });
}

/// Input gradient: the forward loop over `grad` with each kernel rotated by 180°, no bias.
pub fn dwconv7x7_input_grad_f32(
    grad: &[f32],
    weight: &[f32],
    [n, c, h, w]: [usize; 4],
    out: &mut [f32],
) {
    assert!(grad.len() == n * c * h * w && out.len() == grad.len());
    assert!(weight.len() == c * K * K);
    if h * w == 0 {
        return;
    }
    let rotated: Vec<[f32; K * K]> = (0..c)
        .map(|ch| {
            let mut k = kernel_of(weight, ch);
            k.reverse();
            k
        })
        .collect();
    let g = Padded::new(h, w);
    out.par_chunks_mut(h * w)
        .zip(grad.par_chunks(h * w))
        .enumerate()
        .for_each_init(Vec::new, |gp, (p, (o, plane))| {
            g.fill(plane, PAD, g.xw, h + K - 1, gp);
            plane_forward(gp, &rotated[p % c], 0.0, g, o);
        });
}

/// Weight gradient `[c, 1, 7, 7]` and bias gradient `[c]` (sum of `grad` over batch and space).
pub fn dwconv7x7_weight_bias_grad_f32(
    x: &[f32],
    grad: &[f32],
    [n, c, h, w]: [usize; 4],
) -> (Vec<f32>, Vec<f32>) {
    assert!(x.len() == n * c * h * w && grad.len() == x.len());
    let hw = h * w;
    let g = Padded::new(h, w);
    let per_channel: Vec<([f32; K * K], f32)> = (0..c)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(xp, gp), ch| {
                let mut dk = [0f32; K * K];
                let mut db = 0f32;
                for b in 0..n {
                    let at = (b * c + ch) * hw;
                    g.fill(&x[at..at + hw], PAD, g.xw, h + K - 1, xp);
                    g.fill(&grad[at..at + hw], 0, g.pw, h, gp);
                    plane_weight_grad(xp, gp, g, &mut dk);
                    db += grad[at..at + hw].iter().sum::<f32>();
                }
                (dk, db)
            },
        )
        .collect();
    let mut dw = Vec::with_capacity(c * K * K);
    let mut db = Vec::with_capacity(c);
    for (k, b) in per_channel {
        dw.extend_from_slice(&k);
        db.push(b);
    }
    (dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn randn(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.next_normal() as f32).collect()
    }

    /// The textbook definition in f64, one output at a time.
    fn reference(x: &[f32], wt: &[f32], b: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f64> {
        let mut out = vec![0f64; x.len()];
        for i in 0..n * c {
            let ch = i % c;
            for oy in 0..h as isize {
                for ox in 0..w as isize {
                    let mut acc = b[ch] as f64;
                    for ky in 0..K as isize {
                        for kx in 0..K as isize {
                            let (iy, ix) = (oy + ky - PAD as isize, ox + kx - PAD as isize);
                            if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                acc += wt[ch * K * K + (ky as usize) * K + kx as usize] as f64
                                    * x[i * h * w + iy as usize * w + ix as usize] as f64;
                            }
                        }
                    }
                    out[i * h * w + oy as usize * w + ox as usize] = acc;
                }
            }
        }
        out
    }

    fn worst(a: &[f32], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max)
    }

    /// Shapes smaller than, equal to and larger than the kernel, including 1×1 and non-square.
    const SHAPES: [[usize; 4]; 5] = [
        [2, 3, 1, 1],
        [1, 2, 3, 5],
        [2, 4, 7, 7],
        [3, 2, 9, 13],
        [1, 1, 16, 16],
    ];

    /// The baseline and the FMA bodies agree (the entry points run whichever this CPU has).
    #[test]
    fn both_isa_variants_agree() {
        let mut rng = SplitMix64::new(13);
        for (h, w) in [(1, 1), (5, 9), (16, 16), (7, 13)] {
            let g = Padded::new(h, w);
            let x = randn(&mut rng, h * w);
            let gr = randn(&mut rng, h * w);
            let k: [f32; K * K] = randn(&mut rng, K * K).try_into().unwrap();
            let (mut xp, mut gp) = (Vec::new(), Vec::new());
            g.fill(&x, PAD, g.xw, h + K - 1, &mut xp);
            g.fill(&gr, 0, g.pw, h, &mut gp);
            let (mut a, mut b) = (vec![0f32; h * w], vec![0f32; h * w]);
            plane_forward_body::<false>(&xp, &k, 0.5, g, &mut a);
            plane_forward_body::<true>(&xp, &k, 0.5, g, &mut b);
            let (mut da, mut db) = ([0f32; K * K], [0f32; K * K]);
            plane_weight_grad_body::<false>(&xp, &gp, g, &mut da);
            plane_weight_grad_body::<true>(&xp, &gp, g, &mut db);
            for (p, q) in a.iter().zip(&b).chain(da.iter().zip(&db)) {
                assert!(
                    (p - q).abs() <= 1e-4 * p.abs().max(1.0),
                    "{h}x{w}: {p} vs {q}"
                );
            }
        }
    }

    #[test]
    fn forward_matches_definition() {
        let mut rng = SplitMix64::new(11);
        for s in SHAPES {
            let len = s.iter().product();
            let (x, wt, b) = (
                randn(&mut rng, len),
                randn(&mut rng, s[1] * K * K),
                randn(&mut rng, s[1]),
            );
            let mut out = vec![f32::NAN; len];
            dwconv7x7_f32(&x, &wt, &b, s, &mut out);
            let e = worst(&out, &reference(&x, &wt, &b, s));
            assert!(e < 1e-4, "{s:?}: {e}");
        }
    }

    /// The gradients of L = Σ g·conv(x) by the definition: dL/dx[j] = Σ_i g[i]·∂out[i]/∂x[j]
    /// (the forward of a one-hot input), dL/dw[c,k] and dL/db[c] likewise by linearity.
    #[test]
    fn gradients_match_definition() {
        let mut rng = SplitMix64::new(12);
        for s in SHAPES {
            let [n, c, h, w] = s;
            let len = n * c * h * w;
            let (x, wt, g) = (
                randn(&mut rng, len),
                randn(&mut rng, c * K * K),
                randn(&mut rng, len),
            );
            let zero_b = vec![0f32; c];
            let dot = |out: &[f64]| out.iter().zip(&g).map(|(o, &g)| o * g as f64).sum::<f64>();
            let mut dx = vec![f32::NAN; len];
            dwconv7x7_input_grad_f32(&g, &wt, s, &mut dx);
            let want_dx: Vec<f64> = (0..len)
                .map(|j| {
                    let mut e = vec![0f32; len];
                    e[j] = 1.0;
                    dot(&reference(&e, &wt, &zero_b, s))
                })
                .collect();
            assert!(worst(&dx, &want_dx) < 1e-4, "{s:?} dx");
            let (dw, db) = dwconv7x7_weight_bias_grad_f32(&x, &g, s);
            let want_dw: Vec<f64> = (0..c * K * K)
                .map(|j| {
                    let mut e = vec![0f32; c * K * K];
                    e[j] = 1.0;
                    dot(&reference(&x, &e, &zero_b, s))
                })
                .collect();
            let want_db: Vec<f64> = (0..c)
                .map(|j| {
                    let mut e = vec![0f32; c];
                    e[j] = 1.0;
                    dot(&reference(&x, &vec![0f32; c * K * K], &e, s))
                })
                .collect();
            assert!(worst(&dw, &want_dw) < 1e-3, "{s:?} dw");
            assert!(worst(&db, &want_db) < 1e-4, "{s:?} db");
        }
    }
}
