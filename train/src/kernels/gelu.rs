//! Exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch's `approximate='none'`), and its derivative
//! `Φ(x) + x·φ(x)`, as branch-free loops the compiler vectorizes.
//!
//! Flex computes both with a scalar `erff` call per element (7–10 % of a training step under
//! `perf`). Here erf is the rational approximation Eigen and XLA use for f32 (the same one as
//! `edge`'s NEON GELU: argument clamped to ±4, odd degree-13 over even degree-8 polynomial) and
//! `exp` is Cephes' `expf` (range reduction by ln 2, degree-7 polynomial, 2ⁿ from the exponent
//! bits). Tested against libm in f64: |error| ≤ 1e-6·max(1, |x|).

use std::f32::consts::FRAC_1_SQRT_2;

use super::madd;

/// erf(z) for f32, |error| ≤ ~1e-7 (rational approximation; exact ±1 beyond |z| = 4 in f32).
pub fn erf_f32_rational(z: f32) -> f32 {
    erf_body::<false>(z)
}

/// eˣ for x ≤ 0 (clamped at −87, where eˣ is still a normal f32): Cephes `expf`, ~1 ulp.
pub fn exp_f32_nonpositive(x: f32) -> f32 {
    exp_body::<false>(x)
}

#[inline(always)]
fn erf_body<const FMA: bool>(z: f32) -> f32 {
    let z = z.clamp(-4.0, 4.0);
    let y = z * z;
    let p = -2.726_142_3e-10f32;
    let p = madd::<FMA>(p, y, 2.770_681_4e-8);
    let p = madd::<FMA>(p, y, -2.101_024e-6);
    let p = madd::<FMA>(p, y, -5.692_506_4e-5);
    let p = madd::<FMA>(p, y, -7.349_906_3e-4);
    let p = madd::<FMA>(p, y, -2.954_6e-3);
    let p = madd::<FMA>(p, y, -1.609_603_3e-2);
    let q = -1.456_607_2e-5f32;
    let q = madd::<FMA>(q, y, -2.133_740_6e-4);
    let q = madd::<FMA>(q, y, -1.682_827e-3);
    let q = madd::<FMA>(q, y, -7.373_329e-3);
    let q = madd::<FMA>(q, y, -1.426_473_9e-2);
    z * p / q
}

#[inline(always)]
fn exp_body<const FMA: bool>(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4f32;
    let p = madd::<FMA>(p, r, 1.398_199_9e-3);
    let p = madd::<FMA>(p, r, 8.333_452e-3);
    let p = madd::<FMA>(p, r, 4.166_579_6e-2);
    let p = madd::<FMA>(p, r, 1.666_666_5e-1);
    let p = madd::<FMA>(p, r, 0.5);
    let e = p * r * r + r + 1.0;
    // n ∈ [−126, 0]: the biased exponent n + 127 is in 1..=127.
    let bits = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    e * f32::from_bits(bits as u32)
}

isa_dispatch!(
    /// `out[i] = gelu(x[i])`.
    pub fn gelu_f32 => gelu_body(x: &[f32], out: &mut [f32])
);

#[inline(always)]
fn gelu_body<const FMA: bool>(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        let half = 0.5 * v;
        *o = madd::<FMA>(half, erf_body::<FMA>(v * FRAC_1_SQRT_2), half);
    }
}

isa_dispatch!(
    /// `out[i] = grad[i] · gelu'(x[i])`, `gelu'(x) = ½(1 + erf(x/√2)) + x·e^(−x²/2)/√(2π)`.
    pub fn gelu_backward_f32 => gelu_backward_body(x: &[f32], grad: &[f32], out: &mut [f32])
);

#[inline(always)]
fn gelu_backward_body<const FMA: bool>(x: &[f32], grad: &[f32], out: &mut [f32]) {
    assert!(x.len() == grad.len() && x.len() == out.len());
    // 1/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        let cdf = madd::<FMA>(0.5, erf_body::<FMA>(v * FRAC_1_SQRT_2), 0.5);
        let pdf = INV_SQRT_2PI * exp_body::<FMA>(-0.5 * v * v);
        *o = g * madd::<FMA>(v, pdf, cdf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x over [−12, 12] in steps of 5e-4 plus the edges, as in `edge`'s GELU tests.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (-24_000..=24_000).map(|i| i as f32 * 5e-4).collect();
        xs.extend([
            0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 100.0, -100.0, -1e4, 1e4,
        ]);
        xs
    }

    #[test]
    fn erf_and_exp_match_libm() {
        let mut worst_erf = 0f64;
        let mut worst_exp = 0f64;
        for x in inputs() {
            let z = x as f64 * 0.5;
            worst_erf = worst_erf.max((erf_f32_rational(z as f32) as f64 - libm::erf(z)).abs());
            if x <= 0.0 {
                let want = libm::exp((x as f64).max(-87.0));
                let got = exp_f32_nonpositive(x) as f64;
                worst_exp = worst_exp.max((got - want).abs() / want);
            }
        }
        assert!(worst_erf <= 5e-7, "erf abs error {worst_erf:e}");
        assert!(worst_exp <= 3e-7, "exp rel error {worst_exp:e}");
    }

    #[test]
    fn gelu_and_derivative_match_f64() {
        let xs = inputs();
        let grad: Vec<f32> = xs.iter().map(|x| 1.0 + (x * 7.3).sin()).collect();
        // Both variants whatever this CPU has (FMA = true without the hardware is still exact:
        // `mul_add` falls back to libm's fmaf).
        for fma in [false, true] {
            let mut y = vec![0f32; xs.len()];
            let mut dx = vec![0f32; xs.len()];
            if fma {
                gelu_body::<true>(&xs, &mut y);
                gelu_backward_body::<true>(&xs, &grad, &mut dx);
            } else {
                gelu_body::<false>(&xs, &mut y);
                gelu_backward_body::<false>(&xs, &grad, &mut dx);
            }
            check(&xs, &grad, &y, &dx);
        }
        // And the dispatching entry points.
        let mut y = vec![0f32; xs.len()];
        let mut dx = vec![0f32; xs.len()];
        gelu_f32(&xs, &mut y);
        gelu_backward_f32(&xs, &grad, &mut dx);
        check(&xs, &grad, &y, &dx);
    }

    fn check(xs: &[f32], grad: &[f32], y: &[f32], dx: &[f32]) {
        let (mut worst_y, mut worst_dx) = (0f64, 0f64);
        for i in 0..xs.len() {
            let x = xs[i] as f64;
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let scale = x.abs().max(1.0);
            worst_y = worst_y.max((y[i] as f64 - x * cdf).abs() / scale);
            worst_dx = worst_dx.max((dx[i] as f64 - grad[i] as f64 * (cdf + x * pdf)).abs());
        }
        assert!(worst_y <= 1e-6, "gelu error {worst_y:e}");
        assert!(worst_dx <= 2e-6, "gelu' error {worst_dx:e}");
    }
}
