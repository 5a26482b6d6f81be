//! Helpers shared by quant's CLI tests: the fixture folder, running the binary, a temp folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Runs `quant ARGS`: (success, stdout, stderr).
pub fn quant(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_quant"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// A path in this test process's own temporary folder (`tag` separates test files).
pub fn tmp_in(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quant-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs `quant convert --weights W --out O EXTRA...`.
pub fn convert(weights: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "convert",
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    quant(&args)
}

/// `got` holds exactly `want`'s tensors, except those whose name starts with `skip`: the same
/// names, values, and shapes up to dimensions of 1.
pub fn assert_same_tensors(
    got: &quant::StateDict,
    want: &quant::StateDict,
    skip: Option<&str>,
    what: &str,
) {
    let squeezed = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    let want: Vec<(&String, &quant::Tensor)> = want
        .iter()
        .filter(|(k, _)| skip.is_none_or(|s| !k.starts_with(s)))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        "{what}: names"
    );
    for (k, t) in want {
        assert_eq!(got[k].data, t.data, "{what}: {k}");
        assert_eq!(squeezed(&got[k].shape), squeezed(&t.shape), "{what}: {k}");
    }
}
