//! Embeds the expected top-1 (computed on the host by `edge-bench`, written by
//! scripts/firmware.sh) as a constant, and points the linker at link.x.
use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rustc-link-search={}", dir.display());
    println!("cargo:rerun-if-changed=link.x");
    for f in ["assets/model.cnx", "assets/image_u8_hwc.bin", "assets/expected_top1.txt"] {
        println!("cargo:rerun-if-changed={f}");
        if !dir.join(f).exists() {
            panic!("{f} is missing: run scripts/firmware.sh (it converts the model and computes the host top-1)");
        }
    }
    let top1: usize = fs::read_to_string(dir.join("assets/expected_top1.txt"))
        .unwrap()
        .trim()
        .parse()
        .expect("assets/expected_top1.txt must hold one class index");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::write(out.join("expected.rs"), format!("pub const EXPECTED_TOP1: usize = {top1};\n")).unwrap();
}
