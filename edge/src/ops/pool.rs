//! Global average pooling over NHWC pixels (the head's `mean` over H, W).

/// `out[c] = (1/P) Σ_p in[p][c]`, summed in f64 so the order of pixels does not matter.
pub fn avgpool_f32_scalar(input: &[f32], pixels: usize, c: usize, out: &mut [f32]) {
    const CH: usize = 64;
    let mut acc = [0f64; CH];
    for c0 in (0..c).step_by(CH) {
        let cw = CH.min(c - c0);
        acc[..cw].fill(0.0);
        for px in input[..pixels * c].chunks_exact(c) {
            for (a, &v) in acc[..cw].iter_mut().zip(&px[c0..c0 + cw]) {
                *a += v as f64;
            }
        }
        for (o, a) in out[c0..c0 + cw].iter_mut().zip(&acc[..cw]) {
            *o = (*a / pixels as f64) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_each_channel() {
        let x: [f32; 12] = core::array::from_fn(|i| i as f32); // 4 pixels × 3 channels
        let mut y = [0f32; 3];
        avgpool_f32_scalar(&x, 4, 3, &mut y);
        assert_eq!(y, [4.5, 5.5, 6.5]);
    }
}
