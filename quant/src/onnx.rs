//! ConvNeXt V2 weights out of an ONNX graph (timm's and Hugging Face's exports, opset 13–20),
//! recognised by the graph's structure, not by initializer names, which exporters rename
//! (`onnx::MatMul_1234`). The file is read with tract-onnx (protobuf and external data).
//!
//! Every `Conv`, `MatMul`, `Gemm`, `LayerNormalization` and `Mul` that consumes a constant with
//! more than one element becomes a token, as does every GELU (`Erf` or `Gelu`): a
//! convolution (`Conv`: weight, bias), a linear layer (a 1×1 `Conv`, `MatMul` by a constant,
//! `Gemm`, with the bias of the `Add` that follows), or an affine pair (the γ of a `LayerNormalization`, or of a
//! `Mul` by a constant, with the β of the `Add` that follows it: a decomposed LayerNorm's or
//! GRN's). Scalars (eps, 2, √2, 0.5) and integer tensors (shapes, axes) belong to the
//! parameter-free parts (LayerNorm statistics, GELU, GRN's norms) and are skipped; a `Sub`,
//! `Div` or `Pow` by a per-channel constant (an input normalization folded into the graph) is
//! refused, as are padding other than ConvNeXt V2's and a LayerNorm eps above 1e-5. The token
//! sequence must then read as ConvNeXt V2:
//!
//! ```text
//! stem   := Conv(k = stride) Affine
//! block  := Conv(depthwise, 7×7) Affine(norm) Linear(fc1) GELU Affine(grn) Linear(fc2)
//! down   := Affine(norm) Conv(2×2, stride 2)
//! model  := stem block+ (down block+)* Affine(head norm) Linear(head fc)
//! ```
//!
//! Nodes of any op outside ConvNeXt V2's (a `Relu`, a tanh-approximated GELU, a `BatchNorm`) are
//! refused by name, as is a token out of place.

use std::path::Path;

use crate::convert::StateDict;

/// Whether this build reads ONNX (cargo feature `onnx`, on by default; off where only the
/// safetensors and PyTorch readers are wanted, e.g. edge's cross-compiled tests).
pub const AVAILABLE: bool = cfg!(feature = "onnx");

/// Why an ONNX file could not be read as ConvNeXt V2.
#[derive(Debug)]
pub struct OnnxError {
    /// The node at fault (`name (op_type)`), when one is.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for OnnxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(n) => write!(f, "node {n}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Reads `path` and returns its weights under timm's names, with a line describing the graph.
///
/// Errors: [`OnnxError`] naming the node at fault (or the file, when it is not ONNX).
pub fn load(path: &Path) -> Result<(StateDict, String), OnnxError> {
    #[cfg(feature = "onnx")]
    return graph::load(path);
    #[cfg(not(feature = "onnx"))]
    return Err(OnnxError {
        node: None,
        message: format!(
            "{}: this build of quant reads no ONNX (cargo feature `onnx`)",
            path.display()
        ),
    });
}

#[cfg(feature = "onnx")]
mod graph {
    use super::OnnxError;
    use std::collections::HashMap;
    use std::path::Path;

    use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};
    use tract_onnx::prelude::*;

    use crate::convert::{StateDict, Tensor};

    fn err(node: Option<&NodeProto>, message: impl Into<String>) -> OnnxError {
        OnnxError {
            node: node.map(describe),
            message: message.into(),
        }
    }

    fn describe(n: &NodeProto) -> String {
        let name = if n.name.is_empty() {
            n.output.first().map(String::as_str).unwrap_or("?")
        } else {
            &n.name
        };
        format!("`{name}` ({})", n.op_type)
    }

    /// Ops a ConvNeXt V2 export is made of (parameter-free ones included).
    const KNOWN_OPS: &[&str] = &[
        "Conv",
        "MatMul",
        "Gemm",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Erf",
        "Gelu",
        "LayerNormalization",
        "ReduceMean",
        "ReduceSum",
        "ReduceL2",
        "ReduceSumSquare",
        "GlobalAveragePool",
        "Transpose",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Identity",
        "Cast",
        "Constant",
        "Shape",
        "Gather",
        "Concat",
        "Slice",
        "Expand",
    ];

    /// A constant: an initializer, a `Constant` node's value, or one of those passed through a
    /// shape-only op. `float`: whether it holds floating-point values (else shapes, axes).
    #[derive(Clone)]
    struct Const {
        shape: Vec<usize>,
        data: Vec<f32>,
        float: bool,
    }

    #[derive(Debug)]
    enum Kind {
        Conv {
            group: i64,
            kernel: Vec<i64>,
            stride: Vec<i64>,
        },
        Linear,
        Affine,
        /// A GELU (no parameters; the grammar checks its place).
        Gelu,
    }

    struct Token {
        kind: Kind,
        /// Conv `[O, I/g, kh, kw]`; Linear `[out, in]`; Affine γ `[C]`.
        weight: Tensor,
        /// Bias or β.
        bias: Option<Tensor>,
        node: usize,
    }

    fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
        n.attribute.iter().find(|a| a.name == name)
    }

    fn tensor_of(t: &TensorProto, dir: Option<&str>) -> Result<Const, String> {
        use tract_onnx::pb::tensor_proto::DataType as D;
        let readable = [
            D::Float,
            D::Float16,
            D::Double,
            D::Bfloat16,
            D::Int64,
            D::Int32,
            D::Int16,
            D::Int8,
            D::Uint16,
            D::Uint8,
            D::Bool,
        ]
        .map(|d| d as i32);
        if !readable.contains(&t.data_type) {
            // Strings and the like hold no weights (and tract leaves some unimplemented).
            return Ok(Const {
                shape: vec![],
                data: vec![],
                float: false,
            });
        }
        let resolver = tract_onnx::data_resolver::MmapDataResolver;
        // tract leaves some storage forms unimplemented (a panic): a typed error here instead.
        let t = std::panic::catch_unwind(|| tract_onnx::tensor::load_tensor(&resolver, t, dir))
            .map_err(|_| "a tensor storage form tract cannot read".to_string())?
            .map_err(|e| format!("{e:#}"))?;
        let float = t.datum_type().is_float();
        let shape = t.shape().to_vec();
        let f = t.cast_to::<f32>().map_err(|e| format!("{e:#}"))?;
        let data = f
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("{e:#}"))?
            .iter()
            .copied()
            .collect();
        Ok(Const { shape, data, float })
    }

    /// [`super::load`].
    pub(super) fn load(path: &Path) -> Result<(StateDict, String), OnnxError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| err(None, format!("not a readable ONNX model: {e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| err(None, "the model has no graph"))?;
        let dir = path.parent().and_then(|d| d.to_str());
        let mut consts: HashMap<String, Const> = HashMap::new();
        for t in &graph.initializer {
            let c = tensor_of(t, dir)
                .map_err(|m| err(None, format!("initializer `{}`: {m}", t.name)))?;
            consts.insert(t.name.clone(), c);
        }
        let nodes = &graph.node;
        let mut tokens: Vec<Token> = Vec::new();
        // Output name of a Mul-by-γ / MatMul / Gemm / Conv → its token, for the Add that follows.
        let mut made: HashMap<&str, usize> = HashMap::new();
        let param = |c: &Const| c.float && c.data.len() > 1;
        for (i, n) in nodes.iter().enumerate() {
            let here = Some(n);
            // onnxruntime's contrib Gelu (exact) is the one op of another domain an export may hold.
            let contrib_gelu = n.domain == "com.microsoft" && n.op_type == "Gelu";
            if !n.domain.is_empty() && n.domain != "ai.onnx" && !contrib_gelu {
                return Err(err(
                    here,
                    format!("op of domain `{}`: not a ConvNeXt V2 op", n.domain),
                ));
            }
            if !KNOWN_OPS.contains(&n.op_type.as_str()) {
                let why = if n.op_type == "Tanh" {
                    "a tanh-approximated GELU? edge computes the exact (erf) GELU of ConvNeXt V2"
                        .to_string()
                } else {
                    "not an op of a ConvNeXt V2 graph".to_string()
                };
                return Err(err(here, why));
            }
            let input = |k: usize| n.input.get(k).and_then(|name| consts.get(name.as_str()));
            let out = n.output.first().map(String::as_str).unwrap_or("");
            match n.op_type.as_str() {
                "Constant" => {
                    let c = if let Some(t) = attr(n, "value").and_then(|a| a.t.as_ref()) {
                        tensor_of(t, dir).map_err(|m| err(here, m))?
                    } else if let Some(a) = attr(n, "value_float") {
                        Const {
                            shape: vec![],
                            data: vec![a.f],
                            float: true,
                        }
                    } else if let Some(a) = attr(n, "value_floats") {
                        Const {
                            shape: vec![a.floats.len()],
                            data: a.floats.clone(),
                            float: true,
                        }
                    } else {
                        // value_int(s), strings: shapes and the like.
                        Const {
                            shape: vec![],
                            data: vec![],
                            float: false,
                        }
                    };
                    consts.insert(out.to_string(), c);
                }
                "Identity" | "Cast" | "Squeeze" | "Unsqueeze" => {
                    // The values stay in order and the dimensions > 1 stay the same.
                    if let Some(c) = input(0).cloned() {
                        consts.insert(out.to_string(), c);
                    }
                }
                "Reshape" | "Flatten" => {
                    if let Some(c) = input(0).cloned() {
                        // Only a reshape that adds or removes dimensions of 1 keeps a weight's
                        // layout; the target shape is the second input (Reshape) or the axis.
                        let target: Option<Vec<usize>> = if n.op_type == "Reshape" {
                            input(1).and_then(|t| reshaped(&c.shape, &t.data))
                        } else {
                            let axis = attr(n, "axis").map_or(1, |a| a.i);
                            flattened(&c.shape, axis)
                        };
                        let nontrivial =
                            |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
                        match target {
                        Some(t) if nontrivial(&t) == nontrivial(&c.shape) => {
                            consts.insert(out.to_string(), Const { shape: t, ..c });
                        }
                        _ if !c.float => {}
                        _ => {
                            return Err(err(
                                here,
                                format!(
                                    "reshapes a constant {:?} into another layout: weights must keep theirs",
                                    c.shape
                                ),
                            ))
                        }
                    }
                    }
                }
                "Transpose" => {
                    if let Some(c) = input(0).cloned() {
                        let perm = attr(n, "perm").map(|a| a.ints.clone());
                        let c = match (c.shape.as_slice(), perm.as_deref()) {
                            (&[r, k], None | Some(&[1, 0])) => Const {
                                shape: vec![k, r],
                                data: transpose2(&c.data, r, k),
                                float: c.float,
                            },
                            (&[_, _], Some(&[0, 1])) => c,
                            (s, _) if s.iter().filter(|&&d| d > 1).count() <= 1 => c,
                            _ => {
                                return Err(err(
                                here,
                                "transposes a constant of rank > 2: weights must keep their layout",
                            ));
                            }
                        };
                        consts.insert(out.to_string(), c);
                    }
                }
                "Conv" => {
                    let w = input(1)
                        .ok_or_else(|| err(here, "convolution weights are not a constant"))?;
                    if w.shape.len() != 4 {
                        return Err(err(
                            here,
                            format!(
                                "weights {:?}: a 2-D convolution's are [O, I, kh, kw]",
                                w.shape
                            ),
                        ));
                    }
                    let ints = |name: &str| attr(n, name).map(|a| a.ints.clone());
                    let kernel = ints("kernel_shape")
                        .unwrap_or_else(|| w.shape[2..].iter().map(|&d| d as i64).collect());
                    let stride = ints("strides").unwrap_or_else(|| vec![1; kernel.len()]);
                    if ints("dilations").is_some_and(|d| d.iter().any(|&v| v != 1)) {
                        return Err(err(here, "dilated convolution: not in ConvNeXt V2"));
                    }
                    let group = attr(n, "group").map_or(1, |a| a.i);
                    if attr(n, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET") {
                        return Err(err(here, "auto_pad: ConvNeXt V2 pads explicitly"));
                    }
                    // The depthwise 7×7 pads 3 on every side, every other convolution 0.
                    let pad = if kernel == [7, 7] { 3 } else { 0 };
                    let pads = ints("pads").unwrap_or_else(|| vec![0; 4]);
                    if pads.iter().any(|&p| p != pad) {
                        return Err(err(
                            here,
                            format!(
                                "pads {pads:?}: a {kernel:?} convolution of ConvNeXt V2 pads {pad}"
                            ),
                        ));
                    }
                    // A 1×1 convolution is a pointwise linear layer (timm's conv_mlp blocks).
                    let pointwise = group == 1 && kernel == [1, 1] && stride == [1, 1];
                    tokens.push(Token {
                        kind: if pointwise {
                            Kind::Linear
                        } else {
                            Kind::Conv {
                                group,
                                kernel,
                                stride,
                            }
                        },
                        weight: Tensor {
                            shape: if pointwise {
                                w.shape[..2].to_vec()
                            } else {
                                w.shape.clone()
                            },
                            data: w.data.clone(),
                        },
                        bias: input(2).map(|b| Tensor {
                            shape: vec![b.data.len()],
                            data: b.data.clone(),
                        }),
                        node: i,
                    });
                    made.insert(out, tokens.len() - 1);
                }
                "MatMul" | "Gemm" => {
                    let (a, b) = (input(0), input(1));
                    let gemm = n.op_type == "Gemm";
                    let trans = |name: &str| attr(n, name).is_some_and(|a| a.i != 0);
                    let (w, transposed) = match (a, b) {
                        (None, Some(w)) => (w, gemm && trans("transB")),
                        (Some(_), _) if !gemm => {
                            return Err(err(here, "a constant left operand: not a linear layer"))
                        }
                        _ => return Err(err(here, "linear-layer weights are not a constant")),
                    };
                    if gemm && trans("transA") {
                        return Err(err(
                            here,
                            "Gemm with transA: not a linear layer on features",
                        ));
                    }
                    let alpha_beta = ["alpha", "beta"]
                        .iter()
                        .all(|k| attr(n, k).is_none_or(|a| a.f == 1.0));
                    if !alpha_beta {
                        return Err(err(here, "Gemm with alpha or beta ≠ 1"));
                    }
                    let &[r, k] = w.shape.as_slice() else {
                        return Err(err(
                            here,
                            format!("weights of rank {}, not 2", w.shape.len()),
                        ));
                    };
                    // timm's [out, in]: MatMul and Gemm without transB hold [in, out].
                    let weight = if transposed {
                        Tensor {
                            shape: vec![r, k],
                            data: w.data.clone(),
                        }
                    } else {
                        Tensor {
                            shape: vec![k, r],
                            data: transpose2(&w.data, r, k),
                        }
                    };
                    let bias = if gemm {
                        input(2).map(|c| Tensor {
                            shape: vec![c.data.len()],
                            data: c.data.clone(),
                        })
                    } else {
                        None
                    };
                    tokens.push(Token {
                        kind: Kind::Linear,
                        weight,
                        bias,
                        node: i,
                    });
                    made.insert(out, tokens.len() - 1);
                }
                "LayerNormalization" => {
                    // edge normalizes with eps 1e-6 (timm's); 1e-12 (Hugging Face's final norm) to
                    // 1e-5 (PyTorch's default) change the logits by far less than 1e-4.
                    let eps = attr(n, "epsilon").map_or(1e-5, |a| a.f);
                    if !(0.0..=1e-5).contains(&eps) {
                        return Err(err(here, format!("epsilon {eps:e}: ConvNeXt V2 uses 1e-6")));
                    }
                    let (g, b) = (input(1), input(2));
                    let g = g.ok_or_else(|| err(here, "LayerNorm scale is not a constant"))?;
                    tokens.push(Token {
                        kind: Kind::Affine,
                        weight: Tensor {
                            shape: vec![g.data.len()],
                            data: g.data.clone(),
                        },
                        bias: b.map(|b| Tensor {
                            shape: vec![b.data.len()],
                            data: b.data.clone(),
                        }),
                        node: i,
                    });
                    made.insert(out, tokens.len() - 1);
                }
                "Mul" | "Add" if n.input.len() != 2 => {
                    return Err(err(here, format!("{} inputs, not 2", n.input.len())));
                }
                "Mul" | "Add" => {
                    let (c, other) = match (input(0), input(1)) {
                        (Some(c), None) if param(c) => (c, &n.input[1]),
                        (None, Some(c)) if param(c) => (c, &n.input[0]),
                        (Some(a), Some(b)) if param(a) || param(b) => {
                            return Err(err(here, "both operands constant (fold the graph first)"))
                        }
                        (Some(c), None) | (None, Some(c)) => {
                            // A scalar (GELU's ½, √2; eps). torch exports addcmul (timm's GRN) as
                            // Add(β, Mul(Mul(γ, x·n), 1)): look through the multiplication by 1.
                            let other = if input(0).is_some() {
                                &n.input[1]
                            } else {
                                &n.input[0]
                            };
                            let t = made.get(other.as_str()).copied();
                            if let (Some(t), true) = (t, n.op_type == "Mul" && c.data == [1.0]) {
                                made.insert(out, t);
                            }
                            // The bias of a layer with one output channel is a one-element constant.
                            let single = t.is_some_and(|t| {
                                tokens[t].bias.is_none()
                                    && tokens[t].weight.shape.first() == Some(&1)
                            });
                            if let (Some(t), true) = (t, n.op_type == "Add" && c.float && single) {
                                tokens[t].bias = Some(Tensor {
                                    shape: vec![1],
                                    data: c.data.clone(),
                                });
                                made.insert(out, t);
                            }
                            continue;
                        }
                        _ => continue, // between activations (residual, GELU, GRN's statistics)
                    };
                    let v = Tensor {
                        shape: vec![c.data.len()],
                        data: c.data.clone(),
                    };
                    if n.op_type == "Mul" {
                        tokens.push(Token {
                            kind: Kind::Affine,
                            weight: v,
                            bias: None,
                            node: i,
                        });
                        made.insert(out, tokens.len() - 1);
                        continue;
                    }
                    // An Add of a constant: the bias of the layer, or the β of the γ, just before.
                    let t = made
                        .get(other.as_str())
                        .copied()
                        .filter(|&t| tokens[t].bias.is_none());
                    let Some(t) = t else {
                        return Err(err(
                        here,
                        format!(
                            "adds a constant of {} values to something that is not a convolution, linear layer or LayerNorm/GRN scale",
                            v.data.len()
                        ),
                    ));
                    };
                    tokens[t].bias = Some(v);
                    made.insert(out, t);
                }
                "Gelu" if attr(n, "approximate").is_some_and(|a| a.s != b"none") => {
                    return Err(err(
                        here,
                        "tanh-approximated GELU: edge computes the exact (erf) GELU of ConvNeXt V2",
                    ));
                }
                // One per GELU (as an op, or the Erf of 0.5·x·(1 + erf(x/√2))): the grammar
                // requires it between fc1 and GRN.
                "Gelu" | "Erf" => tokens.push(Token {
                    kind: Kind::Gelu,
                    weight: Tensor {
                        shape: vec![],
                        data: vec![],
                    },
                    bias: None,
                    node: i,
                }),
                "Sub" | "Div" | "Pow" if (0..2).any(|k| input(k).is_some_and(param)) => {
                    return Err(err(
                    here,
                    "by a per-channel constant: not part of ConvNeXt V2 (input normalization belongs outside the model)",
                ));
                }
                _ => {}
            }
        }
        let sd = parse_tokens(&tokens, nodes)?;
        let producer_name = format!("{} {}", proto.producer_name, proto.producer_version);
        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(0, |o| o.version);
        let note = format!(
        "{}: read as an ONNX graph (opset {opset}, {}): {} nodes, recognised as ConvNeXt V2 by structure",
        path.display(),
        producer_name.trim(),
        nodes.len()
    );
        Ok((sd, note))
    }

    /// A `Reshape`'s output shape for `shape` and the target `spec` (0 copies a dimension, -1 is
    /// inferred); `None` when it does not fit.
    fn reshaped(shape: &[usize], spec: &[f32]) -> Option<Vec<usize>> {
        let total: usize = shape.iter().product();
        let mut out: Vec<usize> = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d as i64 {
                0 => out.push(*shape.get(i)?),
                -1 if infer.is_none() => {
                    infer = Some(i);
                    out.push(1);
                }
                d if d > 0 => out.push(d as usize),
                _ => return None,
            }
        }
        let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        if let Some(i) = infer {
            if known == 0 || !total.is_multiple_of(known) {
                return None;
            }
            out[i] = total / known;
        }
        (out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(total)).then_some(out)
    }

    /// `Flatten`'s output shape: dimensions before `axis` and from it on, multiplied.
    fn flattened(shape: &[usize], axis: i64) -> Option<Vec<usize>> {
        let axis = if axis < 0 {
            axis + shape.len() as i64
        } else {
            axis
        };
        let axis = usize::try_from(axis).ok().filter(|&a| a <= shape.len())?;
        Some(vec![
            shape[..axis].iter().product(),
            shape[axis..].iter().product(),
        ])
    }

    fn transpose2(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0f32; data.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = data[r * cols + c];
            }
        }
        t
    }

    /// Reads the token sequence as the grammar in the module docs, into timm names.
    /// A test on a convolution token's groups, kernel, stride and weights.
    type ConvTest<'a> = &'a dyn Fn(i64, &[i64], &[i64], &Tensor) -> bool;

    fn parse_tokens(tokens: &[Token], nodes: &[NodeProto]) -> Result<StateDict, OnnxError> {
        let mut sd = StateDict::new();
        let mut pos = 0usize;
        let at = |pos: usize| tokens.get(pos);
        let fail = |pos: usize, want: &str| -> OnnxError {
            match tokens.get(pos) {
                Some(t) => err(
                    Some(&nodes[t.node]),
                    format!("expected {want}, found {}", what(t)),
                ),
                None => err(None, format!("the graph ends where {want} was expected")),
            }
        };
        let mut put = |name: &str, t: &Token, what: &str| -> Result<(), OnnxError> {
            let bias = t.bias.clone().ok_or_else(|| {
            err(
                Some(&nodes[t.node]),
                if matches!(t.kind, Kind::Affine) {
                    // A scale with no shift: ConvNeXt V1's layer scale (γ·x per block) is one.
                    format!(
                        "expected {what}, found a per-channel scale with no shift after it (a layer scale, as in ConvNeXt V1? V2 has none)"
                    )
                } else {
                    format!("{what} without its bias (an Add of a constant after it)")
                },
            )
        })?;
            sd.insert(format!("{name}.weight"), t.weight.clone());
            sd.insert(format!("{name}.bias"), bias);
            Ok(())
        };
        let is_conv = |t: Option<&Token>, pred: ConvTest| matches!(t, Some(Token { kind: Kind::Conv { group, kernel, stride }, weight, .. }) if pred(*group, kernel, stride, weight));
        let is = |t: Option<&Token>, k: fn(&Kind) -> bool| t.is_some_and(|t| k(&t.kind));
        let affine = |k: &Kind| matches!(k, Kind::Affine);
        let linear = |k: &Kind| matches!(k, Kind::Linear);
        let gelu = |k: &Kind| matches!(k, Kind::Gelu);
        let depthwise = |g: i64, k: &[i64], s: &[i64], w: &Tensor| {
            g > 1 && w.shape.first() == Some(&(g as usize)) && k == [7, 7] && s == [1, 1]
        };
        // stem
        if !is_conv(at(pos), &|g, k, s, _| g == 1 && k == s && k.len() == 2) {
            return Err(fail(
                pos,
                "the stem's patchify convolution (kernel = stride)",
            ));
        }
        put("stem.0", &tokens[pos], "the stem convolution")?;
        pos += 1;
        if !is(at(pos), affine) {
            return Err(fail(pos, "the stem's LayerNorm"));
        }
        put("stem.1", &tokens[pos], "the stem LayerNorm")?;
        pos += 1;
        let mut stage = 0usize;
        loop {
            let mut block = 0usize;
            while is_conv(at(pos), &depthwise) {
                let p = format!("stages.{stage}.blocks.{block}");
                put(
                    &format!("{p}.conv_dw"),
                    &tokens[pos],
                    "the depthwise convolution",
                )?;
                for (k, (name, want, check)) in [
                    ("norm", "the block's LayerNorm", affine as fn(&Kind) -> bool),
                    ("mlp.fc1", "the block's first pointwise layer (fc1)", linear),
                    ("", "the block's GELU", gelu),
                    ("mlp.grn", "the block's GRN", affine),
                    (
                        "mlp.fc2",
                        "the block's second pointwise layer (fc2)",
                        linear,
                    ),
                ]
                .into_iter()
                .enumerate()
                {
                    if !is(at(pos + 1 + k), check) {
                        return Err(fail(pos + 1 + k, want));
                    }
                    if !name.is_empty() {
                        put(&format!("{p}.{name}"), &tokens[pos + 1 + k], want)?;
                    }
                }
                pos += 6;
                block += 1;
            }
            if block == 0 {
                return Err(fail(
                    pos,
                    &format!("stage {stage}'s first block (a depthwise 7×7 convolution)"),
                ));
            }
            let down = is(at(pos), affine)
                && is_conv(at(pos + 1), &|g, k, s, _| {
                    g == 1 && k == [2, 2] && s == [2, 2]
                });
            if !down {
                break;
            }
            stage += 1;
            put(
                &format!("stages.{stage}.downsample.0"),
                &tokens[pos],
                "the downsampling LayerNorm",
            )?;
            put(
                &format!("stages.{stage}.downsample.1"),
                &tokens[pos + 1],
                "the downsampling convolution",
            )?;
            pos += 2;
        }
        if !is(at(pos), affine) {
            return Err(fail(
                pos,
                "a block, a downsampling layer or the head's LayerNorm",
            ));
        }
        put("head.norm", &tokens[pos], "the head LayerNorm")?;
        if !is(at(pos + 1), linear) {
            return Err(fail(pos + 1, "the classifier"));
        }
        put("head.fc", &tokens[pos + 1], "the classifier")?;
        pos += 2;
        if pos < tokens.len() {
            return Err(fail(pos, "the end of the graph after the classifier"));
        }
        Ok(sd)
    }

    fn what(t: &Token) -> String {
        match &t.kind {
            Kind::Conv {
                group,
                kernel,
                stride,
            } => format!(
            "a convolution (kernel {kernel:?}, stride {stride:?}, groups {group}, weights {:?})",
            t.weight.shape
        ),
            Kind::Linear => format!("a linear layer (weights {:?})", t.weight.shape),
            Kind::Affine => format!("a LayerNorm/GRN scale of {} channels", t.weight.data.len()),
            Kind::Gelu => "a GELU".to_string(),
        }
    }
}
