//! `quant`: turns ConvNeXt V2 weights (timm or official facebookresearch names; f32/f16/bf16
//! safetensors) into `edge` model files.

pub mod calib;
pub mod convert;
pub mod names;
pub mod synth;

pub use convert::{convert_file, infer_arch, load_state_dict, ConvertError, StateDict, Tensor};
