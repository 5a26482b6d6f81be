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
fn a_pytorch_2_15_file_the_zip_readers_offset_detection_misreads_is_read() {
    // fuzz/seeds/weights (tools/make_fuzz_pth_seeds.py, PyTorch 2.15): a valid torch.save file
    // (Python's zipfile reads it) on which zip 9.8's archive-offset detection fails with
    // "Invalid Central Directory header"; it holds the f32 safetensors seed's tensors under
    // `model`.
    let seeds = fixtures().join("../../fuzz/seeds/weights");
    let want = quant::load_state_dict(&seeds.join("d1211_c8-16_40x36_f32.safetensors")).unwrap();
    let got = quant::load_state_dict(&seeds.join("d1211_c8-16_40x36_zip.pth")).unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, t) in &want {
        assert_eq!(got[k].data, t.data, "{k}");
    }
    // The rewritten copy is gone.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("quant-rezip-{}-", std::process::id()))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
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
            "no ConvNeXt V2 tensors at the top level or under any entry, in any known layout",
        ),
    ] {
        let out = tmp_in("pth", "bad.cnx");
        let (ok, _, stderr) = convert(&bad, &out, &[]);
        assert!(!ok);
        assert!(stderr.contains(why), "{}: {stderr}", bad.display());
        assert!(!out.exists());
    }
}

#[test]
fn a_checkpoint_with_model_and_model_ema_says_which_it_used_and_ema_or_state_chooses() {
    use quant::Entry;
    // tools/make_pth_ema_fixture.py: `model` = custom_official.pth's weights, `model_ema` the
    // same with head.bias + 0.5.
    let w = fixtures().join("extra/custom_official_ema.pth");
    let st =
        quant::load_state_dict(&fixtures().join("extra/custom_official_f32.safetensors")).unwrap();
    let (sd, note) = quant::load_state_dict_entry(&w, Entry::Default).unwrap();
    assert_eq!(sd.keys().collect::<Vec<_>>(), st.keys().collect::<Vec<_>>());
    assert!(st.iter().all(|(k, t)| sd[k].data == t.data));
    let note = note
        .entry
        .expect("a note when the file holds EMA weights too");
    assert!(
        note.contains("using `model`") && note.contains("`model_ema`") && note.contains("--ema"),
        "{note}"
    );
    let (ema, note) = quant::load_state_dict_entry(&w, Entry::Ema).unwrap();
    assert!(note.entry.is_none());
    for (k, t) in &st {
        let want: Vec<f32> = if k == "head.fc.bias" {
            t.data.iter().map(|v| v + 0.5).collect()
        } else {
            t.data.clone()
        };
        assert_eq!(ema[k].data, want, "{k}");
    }
    let (named, note) = quant::load_state_dict_entry(&w, Entry::Named("model".into())).unwrap();
    assert!(note.entry.is_none() && named.iter().all(|(k, t)| st[k].data == t.data));
    // Asking for what the file lacks is an error naming what it has, never ignored.
    let e = quant::load_state_dict_entry(&w, Entry::Named("nope".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no `nope`") && e.contains("`model`, `model_ema`"),
        "{e}"
    );
    let single = fixtures().join("extra/custom_official.pth");
    let e = quant::load_state_dict_entry(&single, Entry::Ema)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no EMA weights") && e.contains("`model`"), "{e}");
    let e = quant::load_state_dict_entry(
        &fixtures().join("extra/custom_official_f32.safetensors"),
        Entry::Ema,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("single state dict"), "{e}");
    // The CLI: the note on stderr; --state for a missing entry writes nothing.
    let out = tmp_in("pth", "ema.cnx");
    let (ok, _, stderr) = convert(&w, &out, &["--input-size", "96x128"]);
    assert!(
        ok && stderr.contains("--ema selects the EMA weights"),
        "{stderr}"
    );
    std::fs::remove_file(&out).unwrap();
    let (ok, _, stderr) = convert(&w, &out, &["--input-size", "96x128", "--state", "nope"]);
    assert!(
        !ok && stderr.contains("no `nope`") && !out.exists(),
        "{stderr}"
    );
    let (ok, _, stderr) = convert(
        &w,
        &out,
        &["--input-size", "96x128", "--ema", "--state", "model"],
    );
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
}
