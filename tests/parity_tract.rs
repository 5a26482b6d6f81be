//! f32 parity with tract-onnx running timm's ONNX export of the same Atto model.

mod common;
use common::*;
use tract_onnx::prelude::*;

#[test]
fn edge_matches_tract_on_timm_onnx() -> TractResult<()> {
    let plan = tract_onnx::onnx()
        .model_for_path(fixture("atto/model_static.onnx"))?
        .into_optimized()?
        .into_runnable()?;
    let file = atto();
    let model = edge::Model::parse(file.as_slice()).unwrap();
    for name in ["randn_s0", "randn_s1", "astronaut"] {
        let x = read_f32(&format!("atto/inputs/{name}.bin"));
        let t = tract_ndarray::Array4::from_shape_vec((1, 3, 224, 224), x.clone())?.into_tensor();
        let out = plan.run(tvec!(t.into()))?;
        let tract: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        let edge_logits = run_logits(&model, edge::Input::NchwF32(&x));
        let timm = read_f32(&format!("atto/logits/{name}.bin"));
        let (e_t, t_timm) = (max_abs(&edge_logits, &tract), max_abs(&tract, &timm));
        println!("{name}: |edge - tract| = {e_t:.3e}, |tract - timm| = {t_timm:.3e}");
        assert!(e_t <= 1e-4, "{name}: {e_t}");
        assert!(t_timm <= 1e-4, "tract itself disagrees with timm: {t_timm}");
    }
    Ok(())
}
