//! Runs one operator over all of Atto-224's instances of it (the shapes a whole image needs),
//! `iters` times, so that an instruction counter (benches/qemu/insn_count.c) can attribute a
//! model's instructions to operators: count(iters=3) − count(iters=1), halved, is one image.
//! Usage: op_insns OP scalar|neon ITERS, OP in stem|downsample|dwconv|ln|fc1|gelu|grn|fc2|pool.

use edge::ops::{dwconv7x7, gelu, grn, layernorm, patch_conv, pointwise, pool};

type LnFn = fn(&mut [f32], usize, usize, &[f32], &[f32], f32);
type GrnFn = fn(&mut [f32], usize, usize, &[f32], &[f32], f32, &mut [f32]);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (op, set, iters) = (
        args[1].as_str(),
        args[2].as_str(),
        args[3].parse::<usize>().unwrap(),
    );
    let neon = set == "neon";
    let (depths, dims) = ([2usize, 2, 6, 2], [40usize, 80, 160, 320]);
    let big = 56 * 56 * 160 * 4;
    let (mut a, mut b, mut h) = (vec![0.1f32; big], vec![0.2f32; big], vec![0.3f32; big]);
    let w = vec![0.01f32; 4 * 320 * 320 * 4];
    let v = vec![0.5f32; 4 * 320];
    let mut scratch = vec![0f32; 4 * 320];
    for _ in 0..iters {
        #[cfg(target_arch = "aarch64")]
        let (pc, lnf, grnf): (patch_conv::PatchConvF32, LnFn, GrnFn) = if neon {
            (
                patch_conv::patch_conv_f32_neon,
                layernorm::layernorm_f32_neon,
                grn::grn_f32_neon,
            )
        } else {
            (
                patch_conv::patch_conv_f32_scalar,
                layernorm::layernorm_f32_scalar,
                grn::grn_f32_scalar,
            )
        };
        #[cfg(not(target_arch = "aarch64"))]
        let (pc, lnf, grnf): (patch_conv::PatchConvF32, LnFn, GrnFn) = (
            patch_conv::patch_conv_f32_scalar,
            layernorm::layernorm_f32_scalar,
            grn::grn_f32_scalar,
        );
        if op == "stem" {
            pc(&a, 224, 224, 3, 4, &w, &v, 40, 0..40, &mut b);
        }
        for s in 0..4 {
            let (hh, ww) = (56 >> s, 56 >> s);
            let (p, c) = (hh * ww, dims[s]);
            if s > 0 && op == "downsample" {
                lnf(
                    &mut a[..4 * p * dims[s - 1]],
                    4 * p,
                    dims[s - 1],
                    &v,
                    &v,
                    1e-6,
                );
                pc(&a, 2 * hh, 2 * ww, dims[s - 1], 2, &w, &v, c, 0..c, &mut b);
            }
            for _ in 0..depths[s] {
                let n = 4 * c;
                match (op, neon) {
                    ("dwconv", false) => {
                        dwconv7x7::dwconv7x7_f32_scalar(&a, hh, ww, c, &w, &v, &mut b)
                    }
                    #[cfg(target_arch = "aarch64")]
                    ("dwconv", true) => {
                        dwconv7x7::dwconv7x7_f32_neon(&a, hh, ww, c, &w, &v, &mut b)
                    }
                    ("ln", _) => lnf(&mut b[..p * c], p, c, &v, &v, 1e-6),
                    ("fc1", false) => {
                        pointwise::pointwise_f32_scalar(&b, p, c, &w, &v, n, &mut h, false)
                    }
                    #[cfg(target_arch = "aarch64")]
                    ("fc1", true) => {
                        pointwise::pointwise_f32_neon(&b, p, c, &w, &v, n, &mut h, false)
                    }
                    ("gelu", false) => gelu::gelu_f32_scalar(&mut h[..p * n]),
                    #[cfg(target_arch = "aarch64")]
                    ("gelu", true) => gelu::gelu_f32_neon(&mut h[..p * n]),
                    ("grn", _) => grnf(&mut h[..p * n], p, n, &v, &v, 1e-6, &mut scratch),
                    ("fc2", false) => {
                        pointwise::pointwise_f32_scalar(&h, p, n, &w, &v, c, &mut a, true)
                    }
                    #[cfg(target_arch = "aarch64")]
                    ("fc2", true) => {
                        pointwise::pointwise_f32_neon(&h, p, n, &w, &v, c, &mut a, true)
                    }
                    _ => {}
                }
            }
            if s == 3 && op == "pool" {
                pool::avgpool_f32_scalar(&a, p, c, &mut scratch);
            }
        }
    }
    std::hint::black_box((&a, &b, &h));
}
