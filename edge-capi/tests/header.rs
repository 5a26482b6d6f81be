//! `include/edge.h` is what cbindgen makes of `src/lib.rs` today (regenerate it with
//! `UPDATE_HEADER=1 cargo test -p edge-capi --test header`).

#[test]
fn header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let cfg = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_src(format!("{dir}/src/lib.rs"))
        .with_config(cfg)
        .generate()
        .unwrap()
        .write(&mut out);
    let generated = String::from_utf8(out).unwrap();
    let path = format!("{dir}/include/edge.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "{path} is stale: UPDATE_HEADER=1 cargo test -p edge-capi --test header"
    );
    for f in [
        "edge_model_parse",
        "edge_model_info",
        "edge_model_arena_len",
        "edge_run_u8_hwc",
        "edge_run_f32_nchw",
        "edge_status_name",
    ] {
        assert!(
            generated.contains(&format!("{f}(")),
            "{f} missing from the header"
        );
    }
}
