//! CI's short smoke run of the fuzz targets (fuzz/, cargo-fuzz + nightly, run for real by
//! `scripts/fuzz.sh`): every seed of fuzz/seeds is valid and accepted, and a fixed set of seeded
//! mutations of each (byte flips, truncations, resealed or not) is either accepted or refused
//! with a typed error — never a panic. Deterministic, so a failure reproduces.

use std::path::{Path, PathBuf};

use edge::builder::AlignedBytes;

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

/// xorshift64*: the mutation stream.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n.max(1)
    }
}

/// `n` mutants of `seed`: 1–4 byte flips, then a truncation one time in three.
fn mutants(seed: &[u8], n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut b = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len());
                b[at] ^= 1 + rng.below(255) as u8;
            }
            if rng.below(3) == 0 {
                b.truncate(rng.below(b.len()));
            }
            b
        })
        .collect()
}

fn parse_and_run(bytes: &[u8], reseal: bool) -> bool {
    let mut buf = AlignedBytes::from_slice(bytes);
    if reseal && bytes.len() >= 64 {
        edge::format::seal(buf.as_mut_slice());
    }
    let Ok(m) = edge::Model::parse(buf.as_slice()) else {
        return false;
    };
    let a = m.arch();
    let mut arena = vec![0u8; m.arena_len()];
    let mut logits = vec![0f32; a.num_classes];
    let img = vec![7u8; a.input_h * a.input_w * 3];
    m.run(edge::Input::HwcU8(&img), &mut arena, &mut logits)
        .is_ok()
}

#[test]
fn model_parser_seeds_run_and_mutants_are_refused_or_run() {
    let mut rng = Rng(0x5eed);
    let (mut ok, mut refused) = (0, 0);
    for path in seeds("parse") {
        let seed = std::fs::read(&path).unwrap();
        assert!(
            parse_and_run(&seed, false),
            "{} must parse and run",
            path.display()
        );
        for (i, m) in mutants(&seed, 300, &mut rng).iter().enumerate() {
            if parse_and_run(m, i % 2 == 0) {
                ok += 1
            } else {
                refused += 1
            }
        }
    }
    println!("model mutants: {ok} accepted, {refused} refused");
    assert!(refused > 0);
}

#[test]
fn weights_reader_seeds_convert_and_mutants_are_refused_or_read() {
    let mut rng = Rng(0xfeed);
    let dir = std::env::temp_dir().join(format!("fuzz-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for path in seeds("weights") {
        let sd =
            quant::load_state_dict(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let arch = quant::infer_arch(&sd, 32, 32).unwrap();
        quant::convert::convert(&sd, &arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let seed = std::fs::read(&path).unwrap();
        let file = dir.join(path.file_name().unwrap());
        for m in mutants(&seed, 60, &mut rng) {
            std::fs::write(&file, &m).unwrap();
            if let Ok(sd) = quant::load_state_dict(&file) {
                if let Ok(arch) = quant::infer_arch(&sd, 32, 32) {
                    let _ = quant::convert::convert(&sd, &arch);
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn image_seeds_decode_and_mutants_are_refused_or_decoded() {
    let mut rng = Rng(0x1a9e);
    for path in seeds("image") {
        let seed = std::fs::read(&path).unwrap();
        let img =
            preprocess::decode_rgb8(&seed).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(img.dimensions(), (24, 16));
        for m in mutants(&seed, 300, &mut rng) {
            if let Ok(img) = preprocess::decode_rgb8(&m) {
                if let Ok(rgb) = preprocess::center_crop(&img, 224, 224, 0.875) {
                    assert_eq!(rgb.len(), 224 * 224 * 3);
                }
            }
        }
    }
}
