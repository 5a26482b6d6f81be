//! ConvNeXt V2 training in Burn: the model exactly as timm computes it ([`model`]), timm/official
//! weights in and timm-named weights out ([`weights`]), data ([`data`]), AdamW with the official
//! parameter groups and schedule ([`optim`]), checkpoints ([`checkpoint`]), supervised fine-tuning
//! ([`finetune`]), prediction ([`predict`]) and the linear probe of a frozen encoder ([`probe`]).

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod fcmae;
pub mod finetune;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod predict;
pub mod pretrain;
pub mod probe;
pub mod rng;
pub mod runlog;
pub mod sparse;
pub mod weights;
