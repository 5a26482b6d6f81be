//! Exact GELU, `0.5·x·(1 + erf(x/√2))`, as PyTorch's default (`approximate='none'`).
//! `libm::erff` is the erf (max error ~1 ulp), so this reference is exact to f32 rounding.

/// In place.
pub fn gelu_f32_scalar(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + libm::erff(*v * core::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::excessive_precision)]
    fn known_values() {
        // gelu(x) computed with mpmath at 30 digits.
        let xs = [-3.0f32, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0];
        let want = [
            -0.0040496941,
            -0.15865525,
            -0.15426877,
            0.0,
            0.34573123,
            0.84134475,
            2.9959503,
        ];
        let mut y = xs;
        gelu_f32_scalar(&mut y);
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() <= 4e-7, "{a} vs {b}");
        }
    }
}
