//! `quant`: turns ConvNeXt V2 weights (timm, official facebookresearch, FCMAE pretraining or
//! Hugging Face names: [`names`]; f32/f16/bf16/f64 safetensors or PyTorch checkpoints) into `edge` model files, f32 (`convert`) or int8 (`calibrate`: post-training
//! calibration, scheme in [`quantize`]).

pub mod calib;
pub mod calibrate;
pub mod convert;
pub mod data;
pub mod names;
pub mod onnx;
pub mod quantize;
pub mod synth;
pub mod values;

pub use convert::{
    convert_file, infer_arch, load_state_dict, load_state_dict_entry, ConvertError, Entry,
    LoadNotes, StateDict, Tensor,
};
