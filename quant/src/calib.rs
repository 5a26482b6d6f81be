//! Range selection for int8 post-training calibration: a streaming histogram per observed
//! activation tensor, and three ways to turn it into a clipping range (`--method`):
//! - `minmax`: the observed extremes (no clipping; one outlier costs every other value precision);
//! - `percentile`: the range holding the central `p` % of the values (ties to the bin edges);
//! - `mse`: the range that minimizes the expected squared error of quantizing the histogram
//!   (rounding error `step²/12` inside, clipping error outside), each end searched on a
//!   geometric grid below its observed extreme.
//!
//! Activations are then quantized asymmetrically per tensor ([`asymmetric`]): int8 with a zero
//! point so that real 0 is exact (zero padding, ReLU-like GELU outputs) and one-sided ranges do
//! not waste half of the codes. Weights are symmetric per output channel ([`symmetric_scales`]).

/// Histogram bins.
pub const BINS: usize = 2048;

/// How a range is chosen from the statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Observed minimum and maximum.
    MinMax,
    /// The central `p` percent (0 < p ≤ 100).
    Percentile(f64),
    /// Least expected squared quantization error.
    Mse,
}

/// Streaming statistics of one tensor: exact extremes and a histogram over a range that
/// doubles (merging bin pairs) whenever a value falls outside it.
#[derive(Clone, Debug)]
pub struct RangeStats {
    min: f32,
    max: f32,
    lo: f64,
    hi: f64,
    hist: Vec<u64>,
    count: u64,
}

impl Default for RangeStats {
    fn default() -> Self {
        RangeStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            lo: 0.0,
            hi: 0.0,
            hist: vec![0; BINS],
            count: 0,
        }
    }
}

impl RangeStats {
    /// Adds finite values (non-finite ones are ignored and not counted).
    pub fn observe(&mut self, xs: &[f32]) {
        let (mut mn, mut mx) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in xs.iter().filter(|x| x.is_finite()) {
            mn = mn.min(x);
            mx = mx.max(x);
        }
        if mn > mx {
            return;
        }
        if self.count == 0 {
            // The first range covers 0 and the first values, with a little room.
            self.lo = (mn.min(0.0) as f64) * 1.0001;
            self.hi = (mx.max(0.0) as f64) * 1.0001;
            if self.hi - self.lo < 1e-12 {
                self.hi = self.lo + 1e-6;
            }
        }
        while (mx as f64) >= self.hi {
            self.grow_up();
        }
        while (mn as f64) < self.lo {
            self.grow_down();
        }
        self.min = self.min.min(mn);
        self.max = self.max.max(mx);
        let w = (self.hi - self.lo) / BINS as f64;
        for &x in xs.iter().filter(|x| x.is_finite()) {
            let b = (((x as f64) - self.lo) / w) as usize;
            self.hist[b.min(BINS - 1)] += 1;
            self.count += 1;
        }
    }

    /// Doubles the range upwards: bins pair up into the lower half.
    fn grow_up(&mut self) {
        for i in 0..BINS / 2 {
            self.hist[i] = self.hist[2 * i] + self.hist[2 * i + 1];
        }
        self.hist[BINS / 2..].fill(0);
        self.hi = self.lo + 2.0 * (self.hi - self.lo);
    }

    /// Doubles the range downwards: bins pair up into the upper half.
    fn grow_down(&mut self) {
        for i in (0..BINS / 2).rev() {
            self.hist[BINS / 2 + i] = self.hist[2 * i] + self.hist[2 * i + 1];
        }
        self.hist[..BINS / 2].fill(0);
        self.lo = self.hi - 2.0 * (self.hi - self.lo);
    }

    /// Values observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Observed extremes (`None` before any value).
    pub fn min_max(&self) -> Option<(f32, f32)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// The clipping range by `method`, always containing 0; `None` before any value.
    pub fn range(&self, method: Method) -> Option<(f32, f32)> {
        let (mn, mx) = self.min_max()?;
        let (mn, mx) = (mn.min(0.0), mx.max(0.0));
        let r = match method {
            Method::MinMax => (mn, mx),
            Method::Percentile(p) => {
                let tail = (1.0 - p.clamp(0.0, 100.0) / 100.0) / 2.0;
                (
                    self.quantile(tail).max(mn),
                    self.quantile(1.0 - tail).min(mx),
                )
            }
            Method::Mse => self.mse_range(mn, mx),
        };
        Some((r.0.min(0.0), r.1.max(0.0)))
    }

    /// The value below which a fraction `q` of the observations lie (bin-edge resolution).
    fn quantile(&self, q: f64) -> f32 {
        let target = q * self.count as f64;
        let w = (self.hi - self.lo) / BINS as f64;
        let mut seen = 0u64;
        for (i, &n) in self.hist.iter().enumerate() {
            if (seen + n) as f64 >= target && n > 0 {
                let frac = (target - seen as f64) / n as f64;
                return (self.lo + (i as f64 + frac.clamp(0.0, 1.0)) * w) as f32;
            }
            seen += n;
        }
        self.hi as f32
    }

    /// Expected squared error of quantizing the histogram to 256 levels over `[a, b]`.
    fn sq_error(&self, a: f64, b: f64) -> f64 {
        let step = (b - a) / 255.0;
        let w = (self.hi - self.lo) / BINS as f64;
        let mut err = 0.0;
        for (i, &n) in self.hist.iter().enumerate().filter(|(_, n)| **n > 0) {
            let c = self.lo + (i as f64 + 0.5) * w;
            let e = if c < a {
                (a - c) * (a - c)
            } else if c > b {
                (c - b) * (c - b)
            } else {
                step * step / 12.0
            };
            err += n as f64 * e;
        }
        err
    }

    /// Coordinate descent over the two ends, each from a geometric grid (3 % steps, 200
    /// candidates) below its observed extreme.
    fn mse_range(&self, mn: f32, mx: f32) -> (f32, f32) {
        let (mut a, mut b) = (mn as f64, mx as f64);
        let grid = |end: f64| (0..200).map(move |i| end * 0.97f64.powi(i));
        for _ in 0..3 {
            b = grid(mx as f64)
                .min_by(|x, y| self.sq_error(a, *x).total_cmp(&self.sq_error(a, *y)))
                .unwrap_or(b);
            a = grid(mn as f64)
                .min_by(|x, y| self.sq_error(*x, b).total_cmp(&self.sq_error(*y, b)))
                .unwrap_or(a);
        }
        (a as f32, b as f32)
    }
}

/// Smallest scale handed out (a tensor that is all zeros still gets a valid quantization).
pub const MIN_SCALE: f32 = 1e-8;

/// Asymmetric int8 parameters for `[lo, hi]` (which must contain 0): `real = scale · (q − zero)`,
/// `zero` an integer in [−128, 127] so that real 0 is exact.
pub fn asymmetric(lo: f32, hi: f32) -> (f32, i32) {
    asymmetric_at_least(lo, hi, MIN_SCALE)
}

/// [`asymmetric`] with the scale raised to at least `min_scale` (the zero point follows).
pub fn asymmetric_at_least(lo: f32, hi: f32, min_scale: f32) -> (f32, i32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = ((hi - lo) / 255.0).max(min_scale);
    let zero = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    (scale, zero)
}

/// Symmetric per-output-channel scales of a row-major `[n][k]` weight matrix: `absmax / 127`.
pub fn symmetric_scales(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    (0..n)
        .map(|j| {
            let m = w[j * k..][..k].iter().fold(0f32, |m, v| m.max(v.abs()));
            (m / 127.0).max(MIN_SCALE)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic standard normal samples (Box–Muller over a xorshift).
    fn normal(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let mut u = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| ((-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()) as f32)
            .collect()
    }

    #[test]
    fn minmax_is_exact_and_growth_keeps_every_count() {
        let mut st = RangeStats::default();
        st.observe(&[0.5, 1.0]);
        st.observe(&[-3.0, 40.0, f32::NAN, f32::INFINITY]);
        st.observe(&[1e3]);
        assert_eq!(st.count(), 5);
        assert_eq!(st.hist.iter().sum::<u64>(), 5);
        assert_eq!(st.range(Method::MinMax), Some((-3.0, 1e3)));
        assert_eq!(RangeStats::default().range(Method::Mse), None);
        // Ranges always contain 0.
        let mut pos = RangeStats::default();
        pos.observe(&[2.0, 3.0]);
        assert_eq!(pos.range(Method::MinMax), Some((0.0, 3.0)));
    }

    #[test]
    fn percentile_of_uniform_data() {
        let mut st = RangeStats::default();
        let xs: Vec<f32> = (0..100_000)
            .map(|i| -1.0 + 2.0 * i as f32 / 100_000.0)
            .collect();
        st.observe(&xs);
        let (lo, hi) = st.range(Method::Percentile(90.0)).unwrap();
        assert!(
            (lo + 0.9).abs() < 0.01 && (hi - 0.9).abs() < 0.01,
            "{lo} {hi}"
        );
        let (lo, hi) = st.range(Method::Percentile(100.0)).unwrap();
        assert!(lo <= -0.999 && hi >= 0.999);
    }

    /// A Gaussian with one far outlier: minmax keeps it, percentile 99.99 clips to a few σ.
    /// MSE weighs the outlier's squared clipping error against every value's rounding error:
    /// its range must never have a larger expected error than minmax's or percentile's.
    #[test]
    fn percentile_clips_outliers_and_mse_minimizes_error() {
        let mut st = RangeStats::default();
        let mut xs = normal(200_000, 7);
        xs.push(1000.0);
        st.observe(&xs);
        assert_eq!(st.range(Method::MinMax).unwrap().1, 1000.0);
        let (plo, phi) = st.range(Method::Percentile(99.99)).unwrap();
        assert!(
            phi > 3.0 && phi < 6.0 && plo < -3.0 && plo > -6.0,
            "pct {plo} {phi}"
        );
        let (lo, hi) = st.range(Method::Mse).unwrap();
        let e = st.sq_error(lo as f64, hi as f64);
        assert!(e <= st.sq_error(-5.0, 1000.0) && e <= st.sq_error(plo as f64, phi as f64));
        // Heavy tails without a lone outlier: a few hundred values far out are worth clipping.
        let mut st = RangeStats::default();
        let mut xs = normal(200_000, 9);
        xs.extend(normal(300, 11).iter().map(|v| v * 40.0));
        st.observe(&xs);
        let (mn, mx) = st.min_max().unwrap();
        let (lo, hi) = st.range(Method::Mse).unwrap();
        assert!(hi < 0.9 * mx && lo > mn, "mse {lo} {hi} of {mn} {mx}");
        assert!(st.sq_error(lo as f64, hi as f64) < 0.9 * st.sq_error(mn as f64, mx as f64));
    }

    #[test]
    fn asymmetric_params_make_zero_exact() {
        for (lo, hi) in [
            (-1.0f32, 3.0f32),
            (0.0, 6.0),
            (-0.17, 4.5),
            (-2.0, 0.0),
            (0.0, 0.0),
        ] {
            let (s, z) = asymmetric(lo, hi);
            assert!((-128..=127).contains(&z));
            // lo and hi land on codes within one step of the ends.
            let q = |x: f32| (x / s).round() + z as f32;
            assert!(q(lo) >= -128.5 && q(hi) <= 127.5, "{lo} {hi}: {s} {z}");
        }
        let sc = symmetric_scales(&[1.0, -2.54, 0.0, 0.0, 0.5, 0.25], 3, 2);
        assert_eq!(sc, vec![2.54 / 127.0, MIN_SCALE, 0.5 / 127.0]);
    }
}
