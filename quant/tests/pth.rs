//! PyTorch checkpoints (`torch.save`, made by tools/make_pth_fixtures.py with real PyTorch) read
//! into exactly the state dict of the safetensors files they were made from; bad ones are typed
//! errors with nothing written.

mod common;
use common::*;

#[test]
fn pth_files_hold_exactly_the_safetensors_tensors() {
    let st =
        quant::load_state_dict(&fixtures().join("extra/custom_official_f32.safetensors")).unwrap();
    for pth in [
        "extra/custom_official.pth",
        "extra/custom_timm_bf16_legacy.pth",
    ] {
        let sd = quant::load_state_dict(&fixtures().join(pth)).unwrap();
        assert_eq!(
            sd.keys().collect::<Vec<_>>(),
            st.keys().collect::<Vec<_>>(),
            "{pth}: names (official ones rewritten to timm's, `model.` nesting removed)"
        );
        for (k, t) in &st {
            // The bf16 file's values were rounded to bf16 before the f32 file was written.
            assert_eq!(sd[k].data, t.data, "{pth}: {k}");
            assert_eq!(
                sd[k].data.len(),
                t.shape.iter().product::<usize>(),
                "{pth}: {k}"
            );
        }
    }
}

#[test]
fn convert_reads_a_pth_and_rejects_broken_ones_writing_nothing() {
    let out = tmp_in("pth", "custom.cnx");
    let w = fixtures().join("extra/custom_official.pth");
    let (ok, stdout, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(ok, "{stderr}");
    assert!(out.exists(), "{stdout}");
    // Truncated (the ZIP directory at the end is gone), and a real checkpoint holding no model.
    let bytes = std::fs::read(&w).unwrap();
    let cut = tmp_in("pth", "truncated.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    for (bad, why) in [
        (cut, "PyTorch checkpoint"),
        (
            fixtures().join("extra/no_model.pth"),
            "no ConvNeXt tensors at the top level or under model",
        ),
    ] {
        let out = tmp_in("pth", "bad.cnx");
        let (ok, _, stderr) = convert(&bad, &out, &[]);
        assert!(!ok);
        assert!(stderr.contains(why), "{}: {stderr}", bad.display());
        assert!(!out.exists());
    }
}
