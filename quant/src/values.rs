//! Weight values that cannot be used: NaN and infinities (a diverged run, a broken conversion),
//! and finite values beyond the precision they are stored in (f64 files read as f32; GRN's γ, β
//! stored as fp16 in int8 models). Every loader checks every tensor it uses and reports all
//! offenders at once, by name, before anything is written.

use std::fmt;

/// What is wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// NaN, +inf or −inf in the file.
    NotFinite,
    /// A finite f64 beyond f32's range (±3.4028235e38): it would become an infinity.
    BeyondF32,
    /// A finite value beyond fp16's range (±65504), where the int8 model stores it in fp16.
    BeyondF16,
}

/// The first offending element of one tensor, and how many of its elements offend.
#[derive(Clone, Debug, PartialEq)]
pub struct BadValue {
    /// Canonical (timm) tensor name.
    pub tensor: String,
    /// Flat row-major index of the first offending element.
    pub index: usize,
    /// Its value as stored in the file (f64 so that values beyond f32 show as they are).
    pub value: f64,
    /// Offending elements in the tensor.
    pub count: usize,
    /// Elements in the tensor.
    pub len: usize,
    /// What is wrong.
    pub problem: Problem,
}

/// Every tensor holding values that cannot be used (one entry each, in name order).
#[derive(Clone, Debug, PartialEq)]
pub struct BadValues(pub Vec<BadValue>);

impl fmt::Display for BadValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} tensor{} hold{} values that cannot be used:",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        )?;
        for b in &self.0 {
            let what = match b.problem {
                Problem::NotFinite => "is not finite",
                Problem::BeyondF32 => "is beyond f32's range (±3.4e38)",
                Problem::BeyondF16 => {
                    "is beyond fp16's range (±65504), where int8 models store GRN's γ and β"
                }
            };
            // Plain digits for ordinary values, exponent form for huge or tiny ones.
            let a = b.value.abs();
            let value = if a.is_finite() && (a >= 1e6 || (a != 0.0 && a < 1e-4)) {
                format!("{:e}", b.value)
            } else {
                b.value.to_string()
            };
            writeln!(
                f,
                "  {}: element {} = {value} {what} ({} of {} elements)",
                b.tensor, b.index, b.count, b.len
            )?;
        }
        let advice = if self.0.iter().all(|b| b.problem == Problem::BeyondF16) {
            "Run the f32 model (`quant convert`), or fine-tune with weight decay on GRN's parameters."
        } else {
            "The weights are damaged (a diverged training run, or a broken conversion): take them \
             from an earlier checkpoint or re-export them."
        };
        write!(f, "{advice} Nothing was written.")
    }
}

impl std::error::Error for BadValues {}

/// The first offending element of `values` under `ok` (values as the file stores them).
pub fn first_bad(
    tensor: &str,
    values: impl IntoIterator<Item = f64>,
    problem_of: impl Fn(f64) -> Option<Problem>,
) -> Option<BadValue> {
    let mut first: Option<BadValue> = None;
    let mut len = 0;
    for (i, v) in values.into_iter().enumerate() {
        len += 1;
        if let Some(problem) = problem_of(v) {
            match &mut first {
                Some(b) => b.count += 1,
                None => {
                    first = Some(BadValue {
                        tensor: tensor.to_string(),
                        index: i,
                        value: v,
                        count: 1,
                        len: 0,
                        problem,
                    })
                }
            }
        }
    }
    first.map(|b| BadValue { len, ..b })
}

/// NaN and infinities.
pub fn not_finite(v: f64) -> Option<Problem> {
    (!v.is_finite()).then_some(Problem::NotFinite)
}

/// Values that do not survive the widening to f32 (f64 files).
pub fn f32_problem(v: f64) -> Option<Problem> {
    if !v.is_finite() {
        Some(Problem::NotFinite)
    } else if !(v as f32).is_finite() {
        Some(Problem::BeyondF32)
    } else {
        None
    }
}

/// Values that do not survive rounding to fp16 (GRN's parameters in int8 models).
pub fn f16_problem(v: f64) -> Option<Problem> {
    if !v.is_finite() {
        Some(Problem::NotFinite)
    } else if !half::f16::from_f64(v).is_finite() {
        Some(Problem::BeyondF16)
    } else {
        None
    }
}

/// Checks f32 tensors `(name, values)` for NaN and infinities: all offenders, or `Ok`.
pub fn check_finite<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a [f32])>,
) -> Result<(), BadValues> {
    collect(
        tensors
            .into_iter()
            .filter_map(|(n, v)| first_bad(n, v.iter().map(|&x| x as f64), not_finite)),
    )
}

/// `Ok` when `bad` is empty, else every entry sorted by name.
pub fn collect(bad: impl IntoIterator<Item = BadValue>) -> Result<(), BadValues> {
    let mut all: Vec<BadValue> = bad.into_iter().collect();
    if all.is_empty() {
        return Ok(());
    }
    all.sort_by(|a, b| a.tensor.cmp(&b.tensor));
    Err(BadValues(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offending_tensor_is_named_with_its_first_element() {
        let a = [1.0f32, f32::NAN, 2.0, f32::INFINITY];
        let b = [0.5f32; 3];
        let c = [f32::NEG_INFINITY];
        let e =
            check_finite([("z.bias", &a[..]), ("ok", &b[..]), ("a.weight", &c[..])]).unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert_eq!(
            (
                e.0[0].tensor.as_str(),
                e.0[0].index,
                e.0[0].count,
                e.0[0].len
            ),
            ("a.weight", 0, 1, 1)
        );
        assert_eq!(
            (
                e.0[1].tensor.as_str(),
                e.0[1].index,
                e.0[1].count,
                e.0[1].len
            ),
            ("z.bias", 1, 2, 4)
        );
        assert!(e.0[1].value.is_nan());
        let msg = e.to_string();
        assert!(
            msg.contains("z.bias: element 1 = NaN is not finite (2 of 4"),
            "{msg}"
        );
        assert!(msg.contains("a.weight: element 0 = -inf"), "{msg}");
        assert!(msg.contains("Nothing was written"), "{msg}");
        assert!(check_finite([("ok", &b[..])]).is_ok());
    }

    #[test]
    fn precision_limits_are_where_the_formats_put_them() {
        assert_eq!(f32_problem(3.4e38), None);
        assert_eq!(f32_problem(3.5e38), Some(Problem::BeyondF32));
        assert_eq!(f32_problem(f64::NAN), Some(Problem::NotFinite));
        assert_eq!(f16_problem(65504.0), None);
        // Rounds to 65504 (below the midpoint to the next step, 65520).
        assert_eq!(f16_problem(65519.0), None);
        assert_eq!(f16_problem(65520.0), Some(Problem::BeyondF16));
        assert_eq!(f16_problem(-1e5), Some(Problem::BeyondF16));
    }
}
