//! `edge`: ConvNeXt V2 inference for devices. `#![no_std]`, no allocator: the model is read in
//! place from `&[u8]` (validated once by [`Model::parse`]) and `run` works inside a caller-given
//! arena whose size [`Model::arena_len`] states. One file format carries f32 and int8 models
//! ([`Model::precision`]); `run` is the same call for both.
//!
//! ```no_run
//! // In firmware: `static MODEL: &[u8] = edge::include_model!("atto.cnx");`
//! fn top1(model_file: &[u8], rgb_hwc: &[u8], arena: &mut [u8], logits: &mut [f32]) -> Result<usize, edge::Error> {
//!     let model = edge::Model::parse(model_file)?; // validates everything, copies nothing
//!     model.run(edge::Input::HwcU8(rgb_hwc), arena, logits)?; // arena: model.arena_len() bytes
//!     Ok((0..logits.len()).fold(0, |best, i| if logits[i] > logits[best] { i } else { best }))
//! }
//! ```
//!
//! Layout of the crate: [`format`] (the file format, documented in `FORMAT.md`), [`model`]
//! (parsing), [`arena`] (scratch planning), [`parallel`] (the executor contract), [`profile`] (per-operator timing), [`ops`] (one module per operator: scalar reference,
//! packing, tests), [`runtime`] (composition only; `runtime_i8` for int8 models). Kernel names follow
//! `<op>_<dtype>_<isa>` (`dwconv7x7_f32_scalar`).
#![no_std]
#![cfg_attr(feature = "dotprod", feature(stdarch_neon_dotprod))]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;
#[cfg(any(test, feature = "rayon", feature = "std"))]
extern crate std;

pub mod arch;
pub mod arena;
#[cfg(feature = "alloc")]
pub mod builder;
pub mod cpu;
mod error;
pub mod format;
mod kernels;
pub mod model;
pub mod ops;
pub mod parallel;
pub mod profile;
pub mod runtime;
mod runtime_i8;

pub use arch::Arch;
pub use arena::ArenaPlan;
pub use error::Error;
pub use format::Precision;
pub use kernels::Int8Paths;
pub use model::{AlignedModel, Model, QParams};
#[cfg(feature = "rayon")]
pub use parallel::RayonExecutor;
#[cfg(feature = "std")]
pub use parallel::SpinPool;
pub use parallel::{Executor, Serial};
pub use profile::{Clock, Op, Profiler};
pub use runtime::{BlockOp, Input, Kernels, NoObserver, Observer, Tap};
