//! The int8 path's operators over all of Atto-224's instances of each (the shapes one image
//! needs; the downsample as the runtime runs it: gathered patches, then the requantizing GEMM),
//! `iters` times, for the instruction counter (see `op_insns.rs` and
//! benches/qemu/ops_i8.sh). Usage: op_insns_i8 OP scalar|neon|sdot ITERS, OP in
//! stem|downsample|dwconv|ln|fc1|gelu|grn|fc2|residual. `sdot` (ARMv8.2: SDOT for the
//! convolutions, native fp16 for GRN) needs the `dotprod` feature and such a CPU.

use edge::ops::grn_f16::GrnF16Quant;
use edge::ops::layernorm_i8::OutQuant;
use edge::ops::requant::Requant;
use edge::ops::residual_i8::ResidualQuant;
use edge::ops::{
    dwconv7x7_i8, gelu_i8, grn_f16, layernorm_i8, patch_conv_i8, pointwise_i8, residual_i8,
};
use half::f16;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (op, set, iters) = (
        args[1].as_str(),
        args[2].as_str(),
        args[3].parse::<usize>().unwrap(),
    );
    let (depths, dims) = ([2usize, 2, 6, 2], [40usize, 80, 160, 320]);
    let big = 56 * 56 * 160 * 4;
    let (mut a, mut b, mut h) = (vec![3i8; big], vec![5i8; big], vec![7i8; big]);
    let mut acc = vec![0i32; big];
    let w = vec![1i8; 4 * 1280 * 1280];
    let bias = vec![0i32; 4 * 1280];
    let rq = vec![Requant::from_scale(1e-3).unwrap(); 4 * 1280];
    let f = vec![0.5f32; 4 * 1280];
    let g = vec![f16::from_f32(0.5); 4 * 1280];
    let mut fs = vec![0f32; 4 * 1280];
    let mut scratch = vec![0i8; 4 * 4 * 4 * 320];
    let lut = gelu_i8::gelu_lut(0.05, 0, 0.05, 0);
    let oq = OutQuant {
        inv_scale: 20.0,
        zero: 0,
    };
    let gq = GrnF16Quant::new(0.05, 0, 0.05, 0).unwrap();
    let neon = set != "scalar";
    for _ in 0..iters {
        if op == "stem" {
            run_patch(
                set,
                &a,
                224,
                224,
                3,
                4,
                &w,
                &bias,
                40,
                &mut acc,
                &mut scratch,
            );
        }
        for s in 0..4 {
            let hw = 56 >> s;
            let (p, c) = (hw * hw, dims[s]);
            if s > 0 && op == "downsample" {
                // As the runtime: the patches gathered, then the requantizing GEMM over them.
                let kk = 4 * dims[s - 1];
                patch_conv_i8::gather_patches(&a, 2 * hw, dims[s - 1], 2, 0..p, &mut h);
                fc1(set, &h, p, kk, &w, &bias, &rq, c, &mut b);
            }
            for _ in 0..depths[s] {
                let n = 4 * c;
                match op {
                    "dwconv" if !neon => {
                        dwconv7x7_i8::dwconv7x7_i8_scalar(&a, hw, hw, c, 0, &w, &bias, &mut acc)
                    }
                    #[cfg(target_arch = "aarch64")]
                    "dwconv" => {
                        dwconv7x7_i8::dwconv7x7_i8_neon(&a, hw, hw, c, 0, &w, &bias, &mut acc)
                    }
                    "ln" if !neon => layernorm_i8::layernorm_i32_i8_scalar(
                        &acc, p, c, &f, &f, &f, 1e-6, oq, &mut b, &mut fs,
                    ),
                    #[cfg(target_arch = "aarch64")]
                    "ln" => layernorm_i8::layernorm_i32_i8_neon(
                        &acc, p, c, &f, &f, &f, 1e-6, oq, &mut b, &mut fs,
                    ),
                    "fc1" => fc1(set, &b, p, c, &w, &bias, &rq, n, &mut h),
                    "gelu" if !neon => gelu_i8::gelu_i8_scalar(&mut h[..p * n], &lut),
                    #[cfg(target_arch = "aarch64")]
                    "gelu" => gelu_i8::gelu_i8_neon(&mut h[..p * n], &lut),
                    "grn" => grn(set, &h, p, n, &g, &gq, &mut b, &mut fs),
                    "fc2" => fc2(set, &h, p, n, &w, &bias, c, &mut acc),
                    "residual" => {
                        let q = ResidualQuant {
                            x_zero: 0,
                            x_scale: rq[0],
                            acc_scale: &rq,
                            out_zero: 0,
                        };
                        if !neon {
                            residual_i8::residual_add_i8_scalar(&mut a, &acc, p, c, &q);
                        } else {
                            #[cfg(target_arch = "aarch64")]
                            residual_i8::residual_add_i8_neon(&mut a, &acc, p, c, &q);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    std::hint::black_box((&a, &b, &h, &acc));
}

#[allow(clippy::too_many_arguments)]
fn fc1(
    set: &str,
    x: &[i8],
    p: usize,
    k: usize,
    w: &[i8],
    b: &[i32],
    rq: &[Requant],
    n: usize,
    out: &mut [i8],
) {
    match set {
        #[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
        // SAFETY: only run (by benches/qemu/ops_i8.sh) on a CPU model with dotprod.
        "sdot" => unsafe { pointwise_i8::pointwise_i8_sdot(x, p, k, w, b, rq, 0, n, out) },
        #[cfg(target_arch = "aarch64")]
        "neon" => pointwise_i8::pointwise_i8_neon(x, p, k, w, b, rq, 0, n, out),
        _ => pointwise_i8::pointwise_i8_scalar(x, p, k, w, b, rq, 0, n, out),
    }
}

#[allow(clippy::too_many_arguments)]
fn fc2(set: &str, x: &[i8], p: usize, k: usize, w: &[i8], b: &[i32], n: usize, out: &mut [i32]) {
    match set {
        #[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
        // SAFETY: only run (by benches/qemu/ops_i8.sh) on a CPU model with dotprod.
        "sdot" => unsafe { pointwise_i8::pointwise_i8_acc_sdot(x, p, k, w, b, n, out) },
        #[cfg(target_arch = "aarch64")]
        "neon" => pointwise_i8::pointwise_i8_acc_neon(x, p, k, w, b, n, out),
        _ => pointwise_i8::pointwise_i8_acc_scalar(x, p, k, w, b, n, out),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_patch(
    set: &str,
    x: &[i8],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    wt: &[i8],
    b: &[i32],
    cout: usize,
    out: &mut [i32],
    scratch: &mut [i8],
) {
    match set {
        #[cfg(all(target_arch = "aarch64", feature = "dotprod"))]
        // SAFETY: only run (by benches/qemu/ops_i8.sh) on a CPU model with dotprod.
        "sdot" => unsafe {
            patch_conv_i8::patch_conv_i8_sdot(x, h, w, cin, k, wt, b, cout, out, scratch)
        },
        #[cfg(target_arch = "aarch64")]
        "neon" => patch_conv_i8::patch_conv_i8_neon(x, h, w, cin, k, wt, b, cout, out, scratch),
        _ => patch_conv_i8::patch_conv_i8_scalar(x, h, w, cin, k, wt, b, cout, out),
    }
    // Only the NEON forms gather through `scratch`.
    #[cfg(not(target_arch = "aarch64"))]
    let _ = scratch;
}

/// GRN as the runtime composes it: the sums per pixel task (blocks of the runtime's task
/// size), the norms, the update over all pixels.
#[allow(clippy::too_many_arguments)]
fn grn(
    set: &str,
    h: &[i8],
    p: usize,
    n: usize,
    g: &[f16],
    gq: &GrnF16Quant,
    out: &mut [i8],
    fs: &mut [f32],
) {
    let block = p.div_ceil(32).div_ceil(8).max(1) * 8;
    let (sums, part) = fs.split_at_mut(n);
    sums.fill(0.0);
    for rows in h[..p * n].chunks(block * n) {
        let bp = rows.len() / n;
        match set {
            #[cfg(target_arch = "aarch64")]
            "neon" => grn_f16::grn_f16_sumsq_neon(rows, bp, n, 0..n, gq, part),
            #[cfg(target_arch = "aarch64")]
            // SAFETY: only run (by benches/qemu/ops_i8.sh) on a CPU model with fp16.
            "sdot" => unsafe { grn_f16::grn_f16_sumsq_fp16(rows, bp, n, 0..n, gq, part) },
            _ => grn_f16::grn_f16_sumsq_scalar(rows, bp, n, 0..n, gq, part),
        }
        for (s, v) in sums.iter_mut().zip(part.iter()) {
            *s += *v;
        }
    }
    grn_f16::grn_f16_stats(sums, 1e-6);
    let nx: &[f32] = sums;
    match set {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: only run (by benches/qemu/ops_i8.sh) on a CPU model with fp16.
        "sdot" => unsafe { grn_f16::grn_f16_apply_fp16(h, p, n, g, g, nx, gq, out) },
        #[cfg(target_arch = "aarch64")]
        "neon" => grn_f16::grn_f16_apply_neon(h, p, n, g, g, nx, gq, out),
        _ => grn_f16::grn_f16_apply_scalar(h, p, n, g, g, nx, gq, out),
    }
}
