//! A PNG of training curves, drawn with the `image` crate: left panel loss (train loss red),
//! right panel accuracy (test top-1 blue, EMA top-1 green) on a 0–100 % axis with a grid line every
//! 10 %. Numbers are in the CSV beside it; the picture is for seeing the shape.

use std::path::Path;

use image::{Rgb, RgbImage};

const W: u32 = 900;
const H: u32 = 360;
const PANEL: u32 = 420;
const PAD: u32 = 20;

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for dy in 0..2 {
            let (xi, yi) = (x.round() as i64, y.round() as i64 + dy);
            if xi >= 0 && yi >= 0 && (xi as u32) < W && (yi as u32) < H {
                img.put_pixel(xi as u32, yi as u32, c);
            }
        }
    }
}

fn series(img: &mut RgbImage, x0: u32, ys: &[f64], lo: f64, hi: f64, c: Rgb<u8>) {
    let pts: Vec<(f64, f64)> = ys
        .iter()
        .enumerate()
        .filter(|(_, y)| y.is_finite())
        .map(|(i, &y)| {
            let fx = if ys.len() > 1 {
                i as f64 / (ys.len() - 1) as f64
            } else {
                0.5
            };
            let fy = ((y - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0);
            (
                x0 as f64 + fx * (PANEL - 2 * PAD) as f64 + PAD as f64,
                (H - PAD) as f64 - fy * (H - 2 * PAD) as f64,
            )
        })
        .collect();
    for w in pts.windows(2) {
        line(img, w[0], w[1], c);
    }
    for &(x, y) in &pts {
        line(img, (x - 2.0, y), (x + 2.0, y), c);
    }
}

fn frame(img: &mut RgbImage, x0: u32) {
    let grey = Rgb([200, 200, 200]);
    let (l, r) = ((x0 + PAD) as f64, (x0 + PANEL - PAD) as f64);
    let (t, b) = (PAD as f64, (H - PAD) as f64);
    line(img, (l, t), (l, b), grey);
    line(img, (l, b), (r, b), grey);
}

/// Writes the plot: `loss` per epoch (own scale, from 0 to its maximum) and accuracies in [0, 1].
pub fn write(path: &Path, loss: &[f64], acc: &[f64], ema_acc: &[f64]) -> Result<(), String> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    frame(&mut img, 0);
    frame(&mut img, PANEL + 40);
    let grid = Rgb([235, 235, 235]);
    for k in 1..10 {
        let y = (H - PAD) as f64 - k as f64 / 10.0 * (H - 2 * PAD) as f64;
        let x0 = (PANEL + 40 + PAD) as f64;
        line(
            &mut img,
            (x0 + 1.0, y),
            (x0 + (PANEL - 2 * PAD) as f64, y),
            grid,
        );
    }
    let hi = loss
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    series(&mut img, 0, loss, 0.0, hi.max(1e-6), Rgb([210, 40, 40]));
    series(&mut img, PANEL + 40, acc, 0.0, 1.0, Rgb([40, 70, 210]));
    series(&mut img, PANEL + 40, ema_acc, 0.0, 1.0, Rgb([30, 160, 60]));
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
