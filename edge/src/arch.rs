//! The network shape: stages, depths, widths, classes, input size. It comes from the model file;
//! the named sizes here are conveniences for tools, never assumptions of the runtime.

use crate::Error;

/// Most stages a model file may describe.
pub const MAX_STAGES: usize = 8;
/// Hidden width of each block's MLP relative to its stage width (ConvNeXt's inverted bottleneck).
pub const MLP_RATIO: usize = 4;
/// Stem patch size (Conv k4 s4).
pub const STEM_PATCH: usize = 4;
/// Downsample patch size (Conv k2 s2).
pub const DOWN_PATCH: usize = 2;
/// Depthwise kernel size.
pub const DW_KERNEL: usize = 7;

// Bounds that keep every size computation far from overflow on 32-bit targets too.
const MAX_DIM: usize = 1 << 14;
const MAX_DEPTH: usize = 256;
const MAX_CLASSES: usize = 1 << 20;
const MAX_INPUT: usize = 1 << 13;

/// A ConvNeXt V2 architecture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arch {
    /// Number of stages (ConvNeXt V2 uses 4).
    pub num_stages: usize,
    /// Blocks per stage (first `num_stages` entries used).
    pub depths: [usize; MAX_STAGES],
    /// Channels per stage (first `num_stages` entries used).
    pub dims: [usize; MAX_STAGES],
    /// Input channels (3: RGB).
    pub in_chans: usize,
    /// Classifier outputs.
    pub num_classes: usize,
    /// Input height in pixels.
    pub input_h: usize,
    /// Input width in pixels.
    pub input_w: usize,
    /// LayerNorm epsilon (timm: 1e-6), inside the square root.
    pub ln_eps: f32,
    /// GRN epsilon (timm: 1e-6), added to the channel mean of the L2 norms.
    pub grn_eps: f32,
}

/// The named ConvNeXt V2 sizes: (name, depths, dims).
pub const NAMED: &[(&str, [usize; 4], [usize; 4])] = &[
    ("atto", [2, 2, 6, 2], [40, 80, 160, 320]),
    ("femto", [2, 2, 6, 2], [48, 96, 192, 384]),
    ("pico", [2, 2, 6, 2], [64, 128, 256, 512]),
    ("nano", [2, 2, 8, 2], [80, 160, 320, 640]),
    ("tiny", [3, 3, 9, 3], [96, 192, 384, 768]),
    ("base", [3, 3, 27, 3], [128, 256, 512, 1024]),
    ("large", [3, 3, 27, 3], [192, 384, 768, 1536]),
    ("huge", [3, 3, 27, 3], [352, 704, 1408, 2816]),
];

impl Arch {
    /// A four-stage architecture with timm's defaults (3 input channels, eps 1e-6).
    pub fn new(
        depths: [usize; 4],
        dims: [usize; 4],
        num_classes: usize,
        input_h: usize,
        input_w: usize,
    ) -> Self {
        let mut d = [0; MAX_STAGES];
        let mut c = [0; MAX_STAGES];
        d[..4].copy_from_slice(&depths);
        c[..4].copy_from_slice(&dims);
        Arch {
            num_stages: 4,
            depths: d,
            dims: c,
            in_chans: 3,
            num_classes,
            input_h,
            input_w,
            ln_eps: 1e-6,
            grn_eps: 1e-6,
        }
    }

    /// A named size (`atto`, `femto`, `pico`, `nano`, `tiny`, `base`, `large`, `huge`).
    pub fn named(name: &str, num_classes: usize, input_h: usize, input_w: usize) -> Option<Self> {
        NAMED
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, d, c)| Arch::new(*d, *c, num_classes, input_h, input_w))
    }

    /// The name of this size if its depths and dims are a named one.
    pub fn name(&self) -> Option<&'static str> {
        if self.num_stages != 4 {
            return None;
        }
        NAMED
            .iter()
            .find(|(_, d, c)| d[..] == self.depths[..4] && c[..] == self.dims[..4])
            .map(|(n, _, _)| *n)
    }

    /// Blocks per stage.
    pub fn depths(&self) -> &[usize] {
        &self.depths[..self.num_stages.min(MAX_STAGES)]
    }

    /// Channels per stage.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.num_stages.min(MAX_STAGES)]
    }

    /// Channels of the last stage (the head's input).
    pub fn last_dim(&self) -> usize {
        self.dims().last().copied().unwrap_or(0)
    }

    /// Total stride from input to the last stage.
    pub fn total_stride(&self) -> usize {
        STEM_PATCH << self.num_stages.saturating_sub(1).min(MAX_STAGES)
    }

    /// (height, width) of stage `s`'s feature map.
    pub fn stage_hw(&self, s: usize) -> (usize, usize) {
        let stride = STEM_PATCH << s;
        (self.input_h / stride, self.input_w / stride)
    }

    /// Checks that the architecture is runnable; the parser calls this on every file.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason| Err(Error::BadArch { reason });
        if self.num_stages == 0 || self.num_stages > MAX_STAGES {
            return bad("number of stages must be 1..=8");
        }
        if self.in_chans != 3 {
            return bad("input channels must be 3 (RGB)");
        }
        if self.num_classes == 0 || self.num_classes > MAX_CLASSES {
            return bad("number of classes must be 1..=1048576");
        }
        for s in 0..self.num_stages {
            if self.dims[s] == 0 || self.dims[s] > MAX_DIM {
                return bad("stage width must be 1..=16384");
            }
            if self.depths[s] > MAX_DEPTH {
                return bad("stage depth must be 0..=256");
            }
        }
        for s in self.num_stages..MAX_STAGES {
            if self.dims[s] != 0 || self.depths[s] != 0 {
                return bad("depths/dims beyond the number of stages must be 0");
            }
        }
        if !(self.ln_eps.is_finite() && self.ln_eps > 0.0) {
            return bad("LayerNorm eps must be finite and > 0");
        }
        if !(self.grn_eps.is_finite() && self.grn_eps > 0.0) {
            return bad("GRN eps must be finite and > 0");
        }
        if self.input_h == 0
            || self.input_w == 0
            || self.input_h > MAX_INPUT
            || self.input_w > MAX_INPUT
        {
            return bad("input height/width must be 1..=8192");
        }
        // timm's floor semantics: any size whose last stage keeps at least one pixel.
        let smallest = self.total_stride();
        if self.input_h < smallest || self.input_w < smallest {
            return Err(Error::InputTooSmall {
                height: self.input_h,
                width: self.input_w,
                smallest,
            });
        }
        Ok(())
    }

    /// Multiply-accumulates per image (convolutions and the classifier).
    pub fn macs(&self) -> u64 {
        let mut m = 0u64;
        let (h, w) = self.stage_hw(0);
        let c0 = self.dims[0] as u64;
        m += (h * w) as u64 * c0 * (self.in_chans * STEM_PATCH * STEM_PATCH) as u64;
        for s in 0..self.num_stages {
            let (h, w) = self.stage_hw(s);
            let p = (h * w) as u64;
            let c = self.dims[s] as u64;
            if s > 0 {
                m += p * c * self.dims[s - 1] as u64 * (DOWN_PATCH * DOWN_PATCH) as u64;
            }
            let per_block =
                p * c * (DW_KERNEL * DW_KERNEL) as u64 + 2 * p * c * c * MLP_RATIO as u64;
            m += per_block * self.depths[s] as u64;
        }
        m + self.last_dim() as u64 * self.num_classes as u64
    }

    /// Number of parameters (equals timm's count for the same model).
    pub fn param_count(&self) -> u64 {
        let mut n = 0u64;
        let mut prev = self.in_chans as u64;
        for s in 0..self.num_stages {
            let c = self.dims[s] as u64;
            let k = if s == 0 { STEM_PATCH } else { DOWN_PATCH } as u64;
            // conv + bias + LayerNorm (stem: LN after conv; downsample: LN before conv, over prev)
            n += prev * c * k * k + c + 2 * if s == 0 { c } else { prev };
            let h = MLP_RATIO as u64 * c;
            let block = c * 49 + c + 2 * c + c * h + h + 2 * h + h * c + c;
            n += block * self.depths[s] as u64;
            prev = c;
        }
        n + 2 * prev + prev * self.num_classes as u64 + self.num_classes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atto_param_count_and_macs_match_timm() {
        let a = Arch::named("atto", 1000, 224, 224).unwrap();
        assert_eq!(a.param_count(), 3_708_400); // timm convnextv2_atto
                                                // fvcore/official README: 0.55 G MACs
        assert!((a.macs() as f64 / 1e9 - 0.55).abs() < 0.01, "{}", a.macs());
        let t = Arch::named("tiny", 1000, 224, 224).unwrap();
        assert!((t.param_count() as f64 / 1e6 - 28.6).abs() < 0.1);
        assert!((t.macs() as f64 / 1e9 - 4.47).abs() < 0.03, "{}", t.macs());
    }

    #[test]
    fn validate_rejects_bad_sizes() {
        let mut a = Arch::named("atto", 1000, 224, 224).unwrap();
        assert!(a.validate().is_ok());
        // Not a multiple of 32: runs, with timm's floors (230 → 57 → 28 → 14 → 7).
        a.input_w = 230;
        assert!(a.validate().is_ok());
        assert_eq!(a.stage_hw(3), (7, 7));
        a.input_w = 31;
        assert_eq!(
            a.validate(),
            Err(Error::InputTooSmall {
                height: 224,
                width: 31,
                smallest: 32
            })
        );
        a.input_w = 32;
        assert!(a.validate().is_ok());
        assert_eq!(a.stage_hw(3), (7, 1));
        let mut b = Arch::named("atto", 0, 224, 224).unwrap();
        assert!(matches!(b.validate(), Err(Error::BadArch { .. })));
        b.num_classes = 10;
        b.ln_eps = f32::NAN;
        assert!(matches!(b.validate(), Err(Error::BadArch { .. })));
    }
}
