//! Random-weight models of any size, for benchmarks and tests where only shapes matter
//! (instruction counts, latency). Weights: N(0, 0.02) like timm's trunc-normal init (clipped at
//! 2σ), norm weights 1, GRN and biases small and non-zero so that no op is an identity.

use edge::builder;
use edge::format::{self, Role};
use edge::Arch;

/// A seeded random model file for `arch`.
pub fn synth_model(arch: &Arch, seed: u64) -> Result<Vec<u8>, edge::Error> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut normal = move || {
        // Box–Muller from a xorshift64* stream.
        let mut u = || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()).clamp(-2.0, 2.0) as f32
    };
    let tensors: Vec<Vec<f32>> = format::tensor_ids(arch, edge::Precision::F32)
        .map(|id| {
            let n = builder::logical_len(&builder::logical_shape(arch, id));
            use Role::*;
            match id.role {
                StemNormW | DownNormW | NormW | HeadNormW => {
                    (0..n).map(|_| 1.0 + 0.1 * normal()).collect()
                }
                GrnW | GrnB => (0..n).map(|_| 0.1 * normal()).collect(),
                StemConvB | StemNormB | DownNormB | DownConvB | DwConvB | NormB | Fc1B | Fc2B
                | HeadNormB | HeadFcB => (0..n).map(|_| 0.01 * normal()).collect(),
                StemConvW | DownConvW | DwConvW | Fc1W | Fc2W | HeadFcW => {
                    (0..n).map(|_| 0.02 * normal()).collect()
                }
                // Quantization parameters: not part of an f32 file.
                _ => Vec::new(),
            }
        })
        .collect();
    let mut i = 0;
    builder::build(arch, |_| {
        i += 1;
        &tensors[i - 1][..]
    })
}
