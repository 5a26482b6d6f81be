//! FCMAE: the masked dense encoder is exactly the submanifold-sparse one. (a) Pixels inside
//! masked patches change nothing, bit for bit; (b) an independent, explicit sparse encoder (active
//! sites gathered, every convolution summed over active sites only, GRN over active sites, f64)
//! agrees within 1e-5; (c) the loss on a hand-computed case; (d) the mask keeps ⌊L(1−r)⌋ patches;
//! (e) `train pretrain` → `visualize` → `export` (encoder only) → `finetune --init`. The sparse
//! encoder (visible rows only, `train::sparse`) meets (a) and (b) too, and gives the masked-dense
//! FCMAE's loss and every gradient.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use train::fcmae::{self, Fcmae, FcmaeConfig};
use train::model::{Config, ConvNeXtV2, Size};
use train::rng::SplitMix64;
use train::sparse::{Encoder, Visible};
use train::weights::{self, KeyedParam};

fn cpu() -> Device {
    train::finetune::device(train::finetune::DeviceKind::Cpu).unwrap()
}

/// Atto with every parameter random (GRN and LayerNorm included), so nothing is an identity.
fn random_atto(seed: u64, dev: &Device) -> ConvNeXtV2 {
    let m = ConvNeXtV2::new(
        &Config {
            size: Size::named("atto").unwrap(),
            num_classes: 3,
            drop_path: 0.0,
            grn: true,
        },
        seed,
        dev,
    );
    randomize(m, seed)
}

/// Every parameter of `m` drawn at random, LayerNorm scales near 1.
fn randomize<M: burn::module::Module>(m: M, seed: u64) -> M {
    let mut rng = SplitMix64::new(seed ^ 77);
    weights::replace_tensors(m, &mut |key, shape| {
        let n: usize = shape.iter().product();
        let is_ln = key.ends_with("norm.weight")
            || key.ends_with("stem.1.weight")
            || key.ends_with("downsample.0.weight");
        let (mean, std) = if is_ln {
            (1.0, 0.1)
        } else if key.contains("grn") {
            (0.0, 0.3)
        } else if key.ends_with("bias") {
            (0.0, 0.05)
        } else {
            // Weights at a scale that keeps activations O(1) through the 12 blocks, so f32
            // rounding in the dense model stays near 1e-6 of the values.
            (0.0, 0.05)
        };
        let v: Vec<f32> = (0..n)
            .map(|_| (mean + std * rng.next_normal()) as f32)
            .collect();
        Some(TensorData::new(v, shape.to_vec()))
    })
}

fn image(n: usize, s: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n * 3 * s * s)
        .map(|_| rng.next_normal() as f32)
        .collect()
}

fn encode_sparse(
    m: &ConvNeXtV2,
    x: Vec<f32>,
    mask: &[f32],
    n: usize,
    s: usize,
    dev: &Device,
) -> Vec<f32> {
    let g = s / 32;
    let vis = Visible::new(mask, n, g, g, dev).expect("equal patch counts");
    let x = Tensor::<4>::from_data(TensorData::new(x, [n, 3, s, s]), dev);
    m.forward_features_sparse(x, &vis, None)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn encode(m: &ConvNeXtV2, x: Vec<f32>, mask: &[f32], n: usize, s: usize, dev: &Device) -> Vec<f32> {
    let g = s / 32;
    let vis = Tensor::<4>::from_data(fcmae::stem_visibility(mask, n, g, g), dev);
    let x = Tensor::<4>::from_data(TensorData::new(x, [n, 3, s, s]), dev);
    m.forward_features(x, Some(vis), None)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn masked_pixels_change_nothing_bit_for_bit() {
    let dev = cpu();
    let m = random_atto(1, &dev);
    let (n, s) = (2, 96);
    let l = 9;
    let mask = fcmae::random_mask(n, l, 0.6, &mut SplitMix64::new(3));
    let x = image(n, s, 4);
    let mut y = x.clone();
    let mut rng = SplitMix64::new(9);
    let mut changed = 0;
    for b in 0..n {
        for c in 0..3 {
            for r in 0..s {
                for q in 0..s {
                    if mask[b * l + (r / 32) * 3 + q / 32] > 0.5 {
                        y[((b * 3 + c) * s + r) * s + q] = 100.0 * rng.next_normal() as f32;
                        changed += 1;
                    }
                }
            }
        }
    }
    assert!(changed > 0);
    for (name, f) in [
        ("dense", encode as fn(_, _, _, _, _, _) -> _),
        ("sparse", encode_sparse),
    ] {
        let a = f(&m, x.clone(), &mask, n, s, &dev);
        let b = f(&m, y.clone(), &mask, n, s, &dev);
        assert!(
            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name} encoder output changed"
        );
    }
}

// ---- the explicit sparse reference ----------------------------------------------------------

struct Params(HashMap<String, (Vec<usize>, Vec<f64>)>);

impl Params {
    fn of(m: &ConvNeXtV2) -> Self {
        Params(
            weights::burn_tensors(m)
                .into_iter()
                .map(|(k, d)| {
                    let shape = d.shape().to_vec();
                    let v = d
                        .try_to_vec::<f32>()
                        .unwrap()
                        .into_iter()
                        .map(f64::from)
                        .collect();
                    (k, (shape, v))
                })
                .collect(),
        )
    }
    fn get(&self, k: &str) -> &[f64] {
        &self.0.get(k).unwrap_or_else(|| panic!("{k}")).1
    }
}

/// Features at active sites: site → channel vector, on an h×w grid.
struct Sparse {
    h: usize,
    w: usize,
    sites: HashMap<(usize, usize), Vec<f64>>,
}

fn layer_norm(v: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + 1e-6).sqrt();
    v.iter()
        .enumerate()
        .map(|(c, x)| (x - mean) * inv * w[c] + b[c])
        .collect()
}

/// `[in, out]` pointwise layer.
fn pointwise(v: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let cout = b.len();
    let mut out = b.to_vec();
    for (i, x) in v.iter().enumerate() {
        for (o, acc) in out.iter_mut().enumerate() {
            *acc += x * w[i * cout + o];
        }
    }
    out
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

fn sparse_block(f: &Sparse, p: &Params, pre: &str, c: usize) -> Sparse {
    let (dw, dwb) = (
        p.get(&format!("{pre}.conv_dw.weight")),
        p.get(&format!("{pre}.conv_dw.bias")),
    );
    let mut hidden: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    for &(y, x) in f.sites.keys() {
        // Submanifold depthwise conv: taps only from active sites.
        let mut v = dwb.to_vec();
        for i in 0..7 {
            for j in 0..7 {
                let (yy, xx) = (y as isize + i as isize - 3, x as isize + j as isize - 3);
                if yy < 0 || xx < 0 {
                    continue;
                }
                if let Some(inp) = f.sites.get(&(yy as usize, xx as usize)) {
                    for ch in 0..c {
                        v[ch] += inp[ch] * dw[ch * 49 + i * 7 + j];
                    }
                }
            }
        }
        let v = layer_norm(
            &v,
            p.get(&format!("{pre}.norm.weight")),
            p.get(&format!("{pre}.norm.bias")),
        );
        let v = pointwise(
            &v,
            p.get(&format!("{pre}.mlp.fc1.weight")),
            p.get(&format!("{pre}.mlp.fc1.bias")),
        );
        hidden.insert((y, x), v.into_iter().map(gelu).collect());
    }
    // GRN over the active sites of this sample.
    let c4 = 4 * c;
    let g: Vec<f64> = (0..c4)
        .map(|ch| hidden.values().map(|v| v[ch] * v[ch]).sum::<f64>().sqrt())
        .collect();
    let mean = g.iter().sum::<f64>() / c4 as f64;
    let (gw, gb) = (
        p.get(&format!("{pre}.mlp.grn.weight")),
        p.get(&format!("{pre}.mlp.grn.bias")),
    );
    let mut out = HashMap::new();
    for (site, v) in hidden {
        let v: Vec<f64> = (0..c4)
            .map(|ch| v[ch] + gw[ch] * (v[ch] * g[ch] / (mean + 1e-6)) + gb[ch])
            .collect();
        let v = pointwise(
            &v,
            p.get(&format!("{pre}.mlp.fc2.weight")),
            p.get(&format!("{pre}.mlp.fc2.bias")),
        );
        let inp = &f.sites[&site];
        out.insert(site, (0..c).map(|ch| inp[ch] + v[ch]).collect());
    }
    Sparse {
        h: f.h,
        w: f.w,
        sites: out,
    }
}

/// k×k / stride k convolution among active sites (an output is active when its window is).
fn sparse_patch_conv(f: &Sparse, w: &[f64], b: &[f64], cin: usize, k: usize) -> Sparse {
    let mut sites = HashMap::new();
    for oy in 0..f.h / k {
        for ox in 0..f.w / k {
            let mut any = false;
            let mut v = b.to_vec();
            for i in 0..k {
                for j in 0..k {
                    if let Some(inp) = f.sites.get(&(oy * k + i, ox * k + j)) {
                        any = true;
                        for (o, acc) in v.iter_mut().enumerate() {
                            for ci in 0..cin {
                                *acc += inp[ci] * w[((o * cin + ci) * k + i) * k + j];
                            }
                        }
                    }
                }
            }
            if any {
                sites.insert((oy, ox), v);
            }
        }
    }
    Sparse {
        h: f.h / k,
        w: f.w / k,
        sites,
    }
}

fn sparse_encoder(
    p: &Params,
    img: &[f64],
    s: usize,
    visible: &dyn Fn(usize, usize) -> bool,
) -> Sparse {
    let dims = [40, 80, 160, 320];
    let depths = [2, 2, 6, 2];
    // Stem on the active 4×4 windows (the image itself is dense), then LayerNorm.
    let mut dense = Sparse {
        h: s,
        w: s,
        sites: HashMap::new(),
    };
    for y in 0..s {
        for x in 0..s {
            if visible(y, x) {
                dense
                    .sites
                    .insert((y, x), (0..3).map(|c| img[(c * s + y) * s + x]).collect());
            }
        }
    }
    let mut f = sparse_patch_conv(&dense, p.get("stem.0.weight"), p.get("stem.0.bias"), 3, 4);
    for v in f.sites.values_mut() {
        *v = layer_norm(v, p.get("stem.1.weight"), p.get("stem.1.bias"));
    }
    for st in 0..4 {
        if st > 0 {
            for v in f.sites.values_mut() {
                *v = layer_norm(
                    v,
                    p.get(&format!("stages.{st}.downsample.0.weight")),
                    p.get(&format!("stages.{st}.downsample.0.bias")),
                );
            }
            f = sparse_patch_conv(
                &f,
                p.get(&format!("stages.{st}.downsample.1.weight")),
                p.get(&format!("stages.{st}.downsample.1.bias")),
                dims[st - 1],
                2,
            );
        }
        for b in 0..depths[st] {
            f = sparse_block(&f, p, &format!("stages.{st}.blocks.{b}"), dims[st]);
        }
    }
    f
}

#[test]
fn masked_dense_encoder_equals_an_explicit_submanifold_sparse_one() {
    let dev = cpu();
    let m = random_atto(2, &dev);
    let p = Params::of(&m);
    let (n, s, g) = (2, 128, 4);
    let mask = fcmae::random_mask(n, g * g, 0.6, &mut SplitMix64::new(5));
    let x = image(n, s, 6);
    let dense = encode(&m, x.clone(), &mask, n, s, &dev);
    let sparse = encode_sparse(&m, x.clone(), &mask, n, s, &dev);
    let (c3, h3) = (320, s / 32);
    let (mut worst, mut worst_sparse) = (0.0f64, 0.0f64);
    let mut compared = 0;
    for b in 0..n {
        let img: Vec<f64> = x[b * 3 * s * s..(b + 1) * 3 * s * s]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let vis = |y: usize, xx: usize| mask[b * g * g + (y / 32) * g + xx / 32] < 0.5;
        let sp = sparse_encoder(&p, &img, s, &vis);
        assert_eq!(sp.sites.len(), 6, "⌊16·0.4⌋ = 6 active patches");
        for ((y, xx), v) in &sp.sites {
            for (c, &r) in v.iter().enumerate().take(c3) {
                let at = ((b * c3 + c) * h3 + y) * h3 + xx;
                let (d, sp_v) = (dense[at] as f64, sparse[at] as f64);
                worst = worst.max((d - r).abs() / (1.0 + r.abs()));
                worst_sparse = worst_sparse.max((sp_v - r).abs() / (1.0 + r.abs()));
                compared += 1;
            }
        }
        // The sparse encoder's masked positions are zero.
        for y in 0..h3 {
            for xx in 0..h3 {
                if !sp.sites.contains_key(&(y, xx)) {
                    for c in 0..c3 {
                        assert_eq!(sparse[((b * c3 + c) * h3 + y) * h3 + xx], 0.0);
                    }
                }
            }
        }
    }
    assert_eq!(compared, 2 * 6 * 320);
    println!(
        "masked dense vs explicit sparse: max |Δ|/(1+|v|) = {worst:.3e} over {compared} values"
    );
    println!("sparse encoder vs explicit sparse: max |Δ|/(1+|v|) = {worst_sparse:.3e}");
    assert!(worst <= 1e-5, "dense vs sparse: max relative |Δ| {worst}");
    assert!(
        worst_sparse <= 1e-5,
        "sparse encoder vs reference: max relative |Δ| {worst_sparse}"
    );
}

#[test]
fn loss_mask_and_patch_order_match_hand_computed_values() {
    let dev = cpu();
    // Two patches of three values: only the masked one (first) counts.
    let pred = Tensor::<3>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0], [1, 2, 3]),
        &dev,
    );
    let target = [0.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
    let l = fcmae::masked_mse(pred.clone(), &target, &[1.0, 0.0]).into_scalar::<f32>();
    assert!((l - 14.0 / 3.0).abs() < 1e-6, "{l}");
    let l = fcmae::masked_mse(pred, &target, &[1.0, 1.0]).into_scalar::<f32>();
    assert!((l - (14.0 / 3.0 + 1.0) / 2.0).abs() < 1e-6, "{l}");
    // patchify: [1, 3, 2, 4] with p = 2 → 2 patches; value = c·100 + row·10 + col.
    let (h, w) = (2, 4);
    let img: Vec<f32> = (0..3 * h * w)
        .map(|i| ((i / (h * w)) * 100 + (i % (h * w)) / w * 10 + i % w) as f32)
        .collect();
    let p = fcmae::patchify(&img, 1, h, w, 2, false);
    // Patch 1 (cols 2–3), position (r=1, q=0), channel 2 → 2·100 + 1·10 + 2.
    assert_eq!(p[12 + 2 * 3 + 2], 212.0); // (r·p + q)·3 + c = (1·2 + 0)·3 + 2
    assert_eq!(&p[..6], &[0.0, 100.0, 200.0, 1.0, 101.0, 201.0]);
    let q = fcmae::patchify(&img, 1, h, w, 2, true);
    let patch = &q[..12];
    let mean: f64 = patch.iter().map(|&v| v as f64).sum::<f64>() / 12.0;
    let var: f64 = patch
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / 11.0;
    assert!(
        mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4,
        "{mean} {var}"
    );
    // The mask keeps ⌊49 · 0.4⌋ = 19 patches per sample.
    let mask = fcmae::random_mask(4, 49, 0.6, &mut SplitMix64::new(1));
    for b in 0..4 {
        assert_eq!(
            mask[b * 49..(b + 1) * 49]
                .iter()
                .filter(|&&m| m == 0.0)
                .count(),
            19
        );
    }
}

#[test]
fn decoder_fills_masked_positions_with_the_token_and_predicts_every_patch() {
    let dev = cpu();
    let cfg = FcmaeConfig {
        encoder: Config {
            size: Size::named("atto").unwrap(),
            num_classes: 1,
            drop_path: 0.0,
            grn: true,
        },
        decoder_dim: 64,
        decoder_depth: 1,
        patch: 32,
    };
    let m = Fcmae::new(&cfg, 0, &dev);
    let x = Tensor::<4>::from_data(TensorData::new(image(2, 64, 1), [2, 3, 64, 64]), &dev);
    let pred = m.forward(x, &[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0], None);
    assert_eq!(pred.dims(), [2, 4, 32 * 32 * 3]);
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("train-fcmae-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn blobs(root: &Path, n: usize) {
    let mut rng = SplitMix64::new(3);
    for class in ["a", "b"] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..n {
            let (cx, cy, r) = (
                rng.uniform(16.0, 48.0),
                rng.uniform(16.0, 48.0),
                rng.uniform(8.0, 20.0),
            );
            let img = image::RgbImage::from_fn(64, 64, |x, y| {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                if (d < r) == (class == "a") {
                    image::Rgb([220, 180, 40])
                } else {
                    image::Rgb([30, 60, 120])
                }
            });
            img.save(dir.join(format!("{k}.png"))).unwrap();
        }
    }
}

#[test]
fn pretrain_visualize_export_then_finetune_from_the_encoder() {
    let root = tmp("cli");
    let data = root.join("data");
    blobs(&data, 8);
    let bin = env!("CARGO_BIN_EXE_train");
    let run = Command::new(bin)
        .args([
            "pretrain",
            "--size",
            "atto",
            "--input-size",
            "64",
            "--batch",
            "8",
            "--epochs",
            "2",
        ])
        .args([
            "--decoder-dim",
            "64",
            "--lr",
            "1e-3",
            "--warmup-epochs",
            "0",
            "--quiet",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(root.join("pt"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let csv = std::fs::read_to_string(root.join("pt/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let strip = image::open(root.join("pt/recon_epoch002.png")).unwrap();
    assert_eq!((strip.width(), strip.height()), (4 * 64 + 12, 64));

    let vis = root.join("vis.png");
    let o = Command::new(bin)
        .args(["visualize", "--checkpoint"])
        .arg(root.join("pt/checkpoint.safetensors"))
        .arg("--image")
        .arg(data.join("a/0.png"))
        .arg("--out")
        .arg(&vis)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let strip = image::open(&vis).unwrap();
    assert_eq!((strip.width(), strip.height()), (4 * 64 + 12, 64));
    // Held-out images of the dataset: one row each, each with its own mask.
    let o = Command::new(bin)
        .args(["visualize", "--rows", "2", "--checkpoint"])
        .arg(root.join("pt/checkpoint.safetensors"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&vis)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let grid = image::open(&vis).unwrap().to_rgb8();
    assert_eq!((grid.width(), grid.height()), (4 * 64 + 12, 2 * 64 + 4));
    // Each row's masked panel (second column) shows its own mask: 3 of the 4 patches (mask ratio
    // 0.6 keeps ⌊4 · 0.4⌋ = 1) are ImageNet-mean grey.
    let grey = |row: u32, py: u32, px: u32| {
        let p = grid
            .get_pixel(64 + 4 + px * 32 + 16, row * 68 + py * 32 + 16)
            .0;
        p == [124, 116, 104]
    };
    let masks: Vec<Vec<bool>> = (0..2)
        .map(|r| (0..4).map(|q| grey(r, q / 2, q % 2)).collect())
        .collect();
    assert_eq!(masks[0].iter().filter(|&&m| m).count(), 3, "{masks:?}");
    assert_eq!(masks[1].iter().filter(|&&m| m).count(), 3, "{masks:?}");

    let enc = root.join("encoder.safetensors");
    // --ema names weights a pretraining checkpoint does not have: an error, not ignored.
    let o = Command::new(bin)
        .args(["export", "--ema", "--checkpoint"])
        .arg(root.join("pt/checkpoint.safetensors"))
        .arg("--out")
        .arg(&enc)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("holds no EMA weights"),
        "{stderr}"
    );
    assert!(!enc.exists());
    let o = Command::new(bin)
        .args(["export", "--checkpoint"])
        .arg(root.join("pt/checkpoint.safetensors"))
        .arg("--out")
        .arg(&enc)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sd = quant::convert::load_state_dict(&enc).unwrap();
    assert!(sd.contains_key("stages.3.blocks.1.mlp.grn.weight"));
    assert!(
        sd.keys().all(|k| !k.starts_with("head.")
            && !k.contains("decoder")
            && !k.contains("mask_token")
            && !k.starts_with("proj")
            && !k.starts_with("pred")),
        "{:?}",
        sd.keys().collect::<Vec<_>>()
    );

    let o = Command::new(bin)
        .args([
            "finetune",
            "--size",
            "atto",
            "--input-size",
            "64",
            "--batch",
            "8",
            "--epochs",
            "1",
        ])
        .args(["--ema", "0", "--quiet", "--data"])
        .arg(&data)
        .arg("--init")
        .arg(&enc)
        .arg("--out")
        .arg(root.join("ft"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("head norm and classifier initialized fresh"),
        "{stderr}"
    );
    std::fs::remove_dir_all(root).ok();
}

/// Every gradient of `model` in `grads`, by key (`None` where a parameter got none).
fn gradients(model: &Fcmae, grads: &GradientsParams) -> Vec<(String, Option<Vec<f32>>)> {
    struct Get<'a>(&'a GradientsParams, Vec<(String, Option<Vec<f32>>)>);
    impl KeyedParam for Get<'_> {
        fn param<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
            let g = self.0.get::<D>(param.id);
            self.1
                .push((key, g.map(|g| g.into_data().try_to_vec::<f32>().unwrap())));
        }
    }
    let mut v = Get(grads, Vec::new());
    weights::visit_keyed(model, &mut v);
    v.1
}

/// The FCMAE loss and every gradient agree between the sparse and the masked-dense encoder
/// (relative L2 ≤ 1e-5 each), with drop path on (both draw the same decisions from one seed)
/// and every parameter random, at 96 px (3 of 9 patches visible) and 128 px (6 of 16).
#[test]
fn sparse_encoder_gives_the_dense_loss_and_every_gradient() {
    let dev = cpu().autodiff();
    for (s, seed) in [(96usize, 11u64), (128, 12)] {
        let cfg = FcmaeConfig {
            encoder: Config {
                size: Size::named("atto").unwrap(),
                num_classes: 1,
                drop_path: 0.3,
                grn: true,
            },
            decoder_dim: 64,
            decoder_depth: 1,
            patch: 32,
        };
        let model = randomize(Fcmae::new(&cfg, seed, &dev), seed);
        let n = 3;
        let g = s / 32;
        let mask = fcmae::random_mask(n, g * g, 0.6, &mut SplitMix64::new(seed));
        let x = image(n, s, seed + 1);
        let target = fcmae::patchify(&x, n, s, s, 32, true);
        let run = |enc: Encoder| {
            let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 3, s, s]), &dev);
            let mut rng = SplitMix64::new(99);
            let pred = model.forward_with(xt, &mask, Some(&mut rng), enc);
            let loss = fcmae::masked_mse(pred, &target, &mask);
            let lv = loss.clone().into_scalar::<f32>() as f64;
            (
                lv,
                gradients(
                    &model,
                    &GradientsParams::from_grads(loss.backward(), &model),
                ),
            )
        };
        let (ld, gd) = run(Encoder::Dense);
        let (ls, gs) = run(Encoder::Sparse);
        assert!(
            (ld - ls).abs() <= 1e-5 * ld.abs(),
            "{s} px: loss {ld} vs {ls}"
        );
        let mut worst = (0.0f64, String::new());
        let mut with_grad = 0;
        for ((k, a), (k2, b)) in gd.iter().zip(&gs) {
            assert_eq!(k, k2);
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, None) => continue,
                _ => panic!("{s} px: {k} has a gradient in one encoder only"),
            };
            let diff: f64 = a
                .iter()
                .zip(b)
                .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
                .sum();
            let norm: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum();
            assert!(norm > 0.0, "{s} px: {k}: zero gradient");
            let rel = (diff / norm).sqrt();
            if rel > worst.0 {
                worst = (rel, k.clone());
            }
            with_grad += 1;
        }
        // Every encoder parameter but the unused classifier head (stem 4, downsampling 3 × 4,
        // 12 blocks × 10) and the decoder's (projection 2, mask token 1, one block 10, prediction 2).
        assert_eq!(with_grad, 4 + 12 + 120 + 15, "{s} px: gradients compared");
        println!(
            "{s} px: loss dense {ld:.7} sparse {ls:.7}; worst gradient relative L2 {:.2e} ({}) over {with_grad} tensors",
            worst.0, worst.1
        );
        assert!(
            worst.0 <= 1e-5,
            "{s} px: {} relative L2 {:.3e}",
            worst.1,
            worst.0
        );
    }
}
