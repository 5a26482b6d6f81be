//! ONNX in: the timm export of the atto fixture (tests/fixtures/atto/model_static.onnx, opset 17,
//! LayerNormalization nodes, GELU as Erf) and rewritten forms of it — LayerNorm decomposed into
//! ReduceMean/Sub/Pow/Sqrt/Div as opset-13 exports have it, every initializer renamed — read
//! into exactly the weights timm saved, as does the channels-last `nn.Linear` form of the
//! pointwise layers (MatMul + Add, as Hugging Face exports them); graphs that are not ConvNeXt V2 are refused naming the
//! node.

mod common;
use common::*;

use prost::Message;
use tract_onnx::pb::{self, AttributeProto, ModelProto, NodeProto, TensorProto};

fn atto_onnx() -> ModelProto {
    let bytes = std::fs::read(fixtures().join("atto/model_static.onnx")).unwrap();
    ModelProto::decode(&bytes[..]).unwrap()
}

fn write(m: &ModelProto, name: &str) -> std::path::PathBuf {
    let p = tmp_in("onnx", name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn assert_weights_are_timms(sd: &quant::StateDict, what: &str) {
    let want = quant::load_state_dict(&fixtures().join("atto/weights.safetensors")).unwrap();
    assert_same_tensors(sd, &want, None, what);
}

fn float_const(name: &str, v: f32) -> NodeProto {
    NodeProto {
        output: vec![name.into()],
        name: name.into(),
        op_type: "Constant".into(),
        attribute: vec![AttributeProto {
            name: "value".into(),
            r#type: pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(TensorProto {
                data_type: pb::tensor_proto::DataType::Float as i32,
                float_data: vec![v],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

/// Every LayerNormalization as opset-13 exporters write it: mean, centred square, eps, sqrt,
/// divide, scale, shift.
fn decompose_layer_norms(m: &mut ModelProto) -> usize {
    let g = m.graph.as_mut().unwrap();
    let mut nodes = Vec::new();
    let mut count = 0;
    for n in std::mem::take(&mut g.node) {
        if n.op_type != "LayerNormalization" {
            nodes.push(n);
            continue;
        }
        count += 1;
        let p = format!("ln{count}");
        let v = |s: &str| format!("{p}_{s}");
        let (x, scale, bias, y) = (&n.input[0], &n.input[1], &n.input[2], &n.output[0]);
        let mut mean = node("ReduceMean", &v("mean"), &[x], &v("mean"));
        mean.attribute.push(AttributeProto {
            name: "axes".into(),
            r#type: pb::attribute_proto::AttributeType::Ints as i32,
            ints: vec![-1],
            ..Default::default()
        });
        let mut var = mean.clone();
        var.input = vec![v("sq")];
        var.output = vec![v("var")];
        var.name = v("var");
        nodes.extend([
            mean,
            node("Sub", &v("sub"), &[x, &v("mean")], &v("centred")),
            float_const(&v("two"), 2.0),
            node("Pow", &v("pow"), &[&v("centred"), &v("two")], &v("sq")),
            var,
            float_const(&v("eps"), 1e-6),
            node("Add", &v("add_eps"), &[&v("var"), &v("eps")], &v("var_eps")),
            node("Sqrt", &v("sqrt"), &[&v("var_eps")], &v("std")),
            node("Div", &v("div"), &[&v("centred"), &v("std")], &v("normed")),
            node("Mul", &v("scale"), &[&v("normed"), scale], &v("scaled")),
            node("Add", &v("shift"), &[&v("scaled"), bias], y),
        ]);
    }
    g.node = nodes;
    count
}

/// Every 1×1 convolution as a channels-last `nn.Linear` exports (Hugging Face, timm without
/// conv_mlp): Transpose, MatMul by the `[in, out]` weights, Add of the bias, Transpose back.
fn pointwise_convs_as_matmul(m: &mut ModelProto) -> usize {
    let g = m.graph.as_mut().unwrap();
    let mut weights: std::collections::HashMap<String, TensorProto> = g
        .initializer
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let mut nodes = Vec::new();
    let mut count = 0;
    for n in std::mem::take(&mut g.node) {
        let w = weights.get(&n.input.get(1).cloned().unwrap_or_default());
        let pointwise = n.op_type == "Conv" && w.is_some_and(|w| w.dims[2..] == [1, 1]);
        if !pointwise {
            nodes.push(n);
            continue;
        }
        count += 1;
        let w = w.unwrap().clone();
        let (o, i) = (w.dims[0] as usize, w.dims[1] as usize);
        let vals: Vec<f32> = w
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let mut t = vec![0f32; vals.len()];
        for r in 0..o {
            for c in 0..i {
                t[c * o + r] = vals[r * i + c];
            }
        }
        let name = format!("pw{count}_weight_t");
        let wt = TensorProto {
            name: name.clone(),
            dims: vec![i as i64, o as i64],
            data_type: w.data_type,
            raw_data: t.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        weights.insert(name.clone(), wt.clone());
        g.initializer.push(wt);
        let v = |s: &str| format!("pw{count}_{s}");
        let perm = |p: &[i64]| AttributeProto {
            name: "perm".into(),
            r#type: pb::attribute_proto::AttributeType::Ints as i32,
            ints: p.to_vec(),
            ..Default::default()
        };
        let mut to_nhwc = node("Transpose", &v("nhwc"), &[&n.input[0]], &v("nhwc"));
        to_nhwc.attribute.push(perm(&[0, 2, 3, 1]));
        let mut to_nchw = node("Transpose", &v("nchw"), &[&v("biased")], &n.output[0]);
        to_nchw.attribute.push(perm(&[0, 3, 1, 2]));
        nodes.extend([
            to_nhwc,
            node("MatMul", &v("matmul"), &[&v("nhwc"), &name], &v("mm")),
            node("Add", &v("bias"), &[&n.input[2], &v("mm")], &v("biased")),
            to_nchw,
        ]);
    }
    g.node = nodes;
    count
}

#[test]
fn timms_onnx_export_reads_as_timms_weights_and_converts_to_the_same_model_file() {
    let w = fixtures().join("atto/model_static.onnx");
    let (sd, notes) = quant::load_state_dict_entry(&w, quant::Entry::Default).unwrap();
    assert_weights_are_timms(&sd, "model_static.onnx");
    let note = notes.layout.unwrap();
    assert!(note.contains("ONNX graph (opset 17"), "{note}");
    // The CLI writes the very file the safetensors give.
    let (a, b) = (
        tmp_in("onnx", "from_onnx.cnx"),
        tmp_in("onnx", "from_st.cnx"),
    );
    let (ok, stdout, stderr) = convert(&w, &a, &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("recognised as ConvNeXt V2"), "{stdout}");
    let (ok, _, stderr) = convert(&fixtures().join("atto/weights.safetensors"), &b, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn decomposed_layer_norms_linear_pointwise_layers_and_renamed_initializers_read_the_same() {
    let mut m = atto_onnx();
    // stem, 3 downsamplers, 12 blocks, head.
    assert_eq!(decompose_layer_norms(&mut m), 1 + 3 + 12 + 1);
    assert_eq!(pointwise_convs_as_matmul(&mut m), 2 * 12);
    let g = m.graph.as_mut().unwrap();
    let names: std::collections::HashMap<String, String> = g
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), format!("w{i}")))
        .collect();
    for t in &mut g.initializer {
        t.name = names[&t.name].clone();
    }
    for n in &mut g.node {
        for i in &mut n.input {
            if let Some(r) = names.get(i) {
                *i = r.clone();
            }
        }
    }
    let sd = quant::load_state_dict(&write(&m, "decomposed.onnx")).unwrap();
    assert_weights_are_timms(&sd, "decomposed, renamed");
}

#[test]
fn hugging_face_exports_read_as_their_state_dict() {
    // tools/make_hf_fixtures.py: one transformers model, its state dict and three exports.
    let want = quant::load_state_dict(&fixtures().join("extra/hf_tiny.safetensors")).unwrap();
    for file in [
        "hf_tiny_opset17.onnx",
        "hf_tiny_opset13.onnx",
        "hf_tiny_dynamo.onnx",
        "hf_tiny_gelu_opset20.onnx",
    ] {
        let sd = quant::load_state_dict(&fixtures().join("extra").join(file)).unwrap();
        assert_same_tensors(&sd, &want, None, file);
    }
}

#[test]
fn graphs_that_are_not_convnext_v2_are_refused_naming_the_node() {
    let first = |m: &mut ModelProto, op: &str| -> usize {
        let g = m.graph.as_ref().unwrap();
        g.node.iter().position(|n| n.op_type == op).unwrap()
    };
    let refuse = |m: &ModelProto, file: &str, want: &[&str]| {
        let p = write(m, file);
        let e = quant::load_state_dict(&p).unwrap_err();
        assert!(matches!(e, quant::ConvertError::Onnx { .. }), "{e:?}");
        let msg = e.to_string();
        for w in want {
            assert!(msg.contains(w), "{file}: {w:?} not in {msg}");
        }
        let out = tmp_in("onnx", "refused.cnx");
        let (ok, _, _) = convert(&p, &out, &[]);
        assert!(!ok && !out.exists(), "{file}");
    };
    // A ReLU where GELU's Erf was.
    let mut m = atto_onnx();
    let i = first(&mut m, "Erf");
    let g = m.graph.as_mut().unwrap();
    g.node[i].op_type = "Relu".into();
    let name = g.node[i].name.clone();
    refuse(
        &m,
        "relu.onnx",
        &[&name, "(Relu)", "not an op of a ConvNeXt V2 graph"],
    );
    // The tanh-approximated GELU.
    let mut m = atto_onnx();
    let i = first(&mut m, "Erf");
    let g = m.graph.as_mut().unwrap();
    g.node[i].op_type = "Gelu".into();
    g.node[i].attribute.push(AttributeProto {
        name: "approximate".into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: b"tanh".to_vec(),
        ..Default::default()
    });
    refuse(&m, "tanh.onnx", &["(Gelu)", "tanh-approximated GELU"]);
    // The first depthwise convolution made dense (group 1): out of place, by name.
    let mut m = atto_onnx();
    let g = m.graph.as_mut().unwrap();
    let dw = g
        .node
        .iter()
        .position(|n| {
            n.op_type == "Conv" && n.attribute.iter().any(|a| a.name == "group" && a.i > 1)
        })
        .unwrap();
    for a in &mut g.node[dw].attribute {
        if a.name == "group" {
            a.i = 1;
        }
    }
    let name = g.node[dw].name.clone();
    refuse(
        &m,
        "dense_dw.onnx",
        &[&name, "expected stage 0's first block", "groups 1"],
    );
    // The depthwise convolution padded 2 instead of 3.
    let mut m = atto_onnx();
    let g = m.graph.as_mut().unwrap();
    for a in &mut g.node[dw].attribute {
        if a.name == "pads" {
            a.ints = vec![2; 4];
        }
    }
    refuse(&m, "pads.onnx", &[&name, "pads [2, 2, 2, 2]"]);
    // An input normalization folded in front of the stem: a Sub by a per-channel constant.
    let mut m = atto_onnx();
    let g = m.graph.as_mut().unwrap();
    let input = g.input[0].name.clone();
    g.initializer.push(TensorProto {
        name: "mean".into(),
        dims: vec![1, 3, 1, 1],
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: vec![0.485, 0.456, 0.406],
        ..Default::default()
    });
    for n in &mut g.node {
        for i in &mut n.input {
            if *i == input {
                *i = "centred".into();
            }
        }
    }
    g.node
        .insert(0, node("Sub", "normalize", &[&input, "mean"], "centred"));
    refuse(
        &m,
        "normalized.onnx",
        &["`normalize` (Sub)", "per-channel constant"],
    );
    // A ConvNeXt V1-style layer scale (γ·x) after the first block's fc2.
    let mut m = atto_onnx();
    let g = m.graph.as_mut().unwrap();
    let pointwise: Vec<usize> = g
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.op_type == "Conv"
                && n.attribute
                    .iter()
                    .any(|a| a.name == "kernel_shape" && a.ints == [1, 1])
        })
        .map(|(i, _)| i)
        .collect();
    let fc2 = pointwise[1];
    let out = g.node[fc2].output[0].clone();
    for n in &mut g.node {
        for i in &mut n.input {
            if *i == out {
                *i = "scaled".into();
            }
        }
    }
    g.initializer.push(TensorProto {
        name: "layer_scale".into(),
        dims: vec![40, 1, 1],
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: vec![1e-6; 40],
        ..Default::default()
    });
    g.node.insert(
        fc2 + 1,
        node("Mul", "layer_scale_mul", &[&out, "layer_scale"], "scaled"),
    );
    refuse(
        &m,
        "layer_scale.onnx",
        &["`layer_scale_mul` (Mul)", "layer scale"],
    );
    // Not ONNX at all.
    let p = tmp_in("onnx", "garbage.onnx");
    std::fs::write(&p, b"\x08\x07garbage that is not protobuf").unwrap();
    let e = quant::load_state_dict(&p).unwrap_err().to_string();
    assert!(e.contains("garbage.onnx") && e.contains("ONNX"), "{e}");
}
