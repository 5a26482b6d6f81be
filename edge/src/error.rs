//! Typed errors: every way a model file, an input or an arena can be wrong has its own variant.

use core::fmt;

use crate::format::{Role, TensorId};

/// Everything `edge` can refuse. Parsing never panics; it returns one of these.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before a structure that must be there.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed to read it.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The first eight bytes are not the model-file magic.
    BadMagic,
    /// The file's format version is not one this build reads.
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The length recorded in the header differs from the buffer's length.
    LengthMismatch {
        /// Length stated in the header.
        header: u64,
        /// Length of the buffer given.
        actual: u64,
    },
    /// The CRC-32 over the file does not match the one stored: the bytes were damaged.
    ChecksumMismatch {
        /// CRC-32 stored in the header.
        stored: u32,
        /// CRC-32 computed over the buffer.
        computed: u32,
    },
    /// The buffer does not start on a 16-byte boundary (see [`crate::include_model!`] / [`crate::AlignedModel`]).
    BufferMisaligned {
        /// Address of the buffer modulo 16.
        address_mod_16: usize,
    },
    /// A header field has a value the format does not allow.
    BadHeader {
        /// Which field.
        field: &'static str,
        /// Its value (eps fields: the f32 bit pattern).
        value: u64,
    },
    /// The architecture described by the header is not runnable.
    BadArch {
        /// Why.
        reason: &'static str,
    },
    /// The input is smaller than the network's total stride: its last stage would have no pixel.
    /// (Other sizes run with timm's floor semantics: each strided convolution drops the rows and
    /// columns that do not fill a patch.)
    InputTooSmall {
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
        /// Smallest height and width accepted: the total stride, 4 · 2^(stages−1).
        smallest: usize,
    },
    /// The tensor table does not hold the number of tensors the architecture needs.
    TensorCount {
        /// Count the architecture needs.
        expected: u32,
        /// Count in the file.
        found: u32,
    },
    /// Table entry `index` is not the tensor that belongs there.
    TensorRole {
        /// Table index.
        index: u32,
        /// The tensor expected at that index.
        expected: (Role, u16, u32),
        /// Role, stage and block recorded in the file (role as its raw tag).
        found: (u16, u16, u32),
    },
    /// Table entry `index` has a dtype tag this build does not run.
    UnsupportedDtype {
        /// Table index.
        index: u32,
        /// Tag found.
        tag: u8,
    },
    /// Table entry `index` has a layout tag other than the one its role needs.
    BadLayout {
        /// Table index.
        index: u32,
        /// Layout tag expected.
        expected: u8,
        /// Layout tag found.
        found: u8,
    },
    /// Table entry `index` has a shape that does not match the architecture.
    TensorShape {
        /// Table index.
        index: u32,
        /// Its role.
        role: Role,
        /// Shape the architecture implies (unused trailing dims are 0).
        expected: [u32; 4],
        /// Shape stored (unused trailing dims are 0).
        found: [u32; 4],
    },
    /// Table entry `index` points outside the payload or its length disagrees with its shape.
    TensorOutOfBounds {
        /// Table index.
        index: u32,
        /// Offset stored.
        offset: u64,
        /// Byte length stored.
        len: u64,
    },
    /// Table entry `index` is not aligned to the format's 64-byte tensor alignment.
    TensorMisaligned {
        /// Table index.
        index: u32,
        /// Offset stored.
        offset: u64,
    },
    /// Table entry `index` overlaps the header, the table or another tensor.
    TensorOverlap {
        /// Table index.
        index: u32,
    },
    /// Table entry `index` holds a NaN or an infinity.
    NonFiniteWeight {
        /// Table index.
        index: u32,
        /// Which tensor it is (displayed by its timm name).
        tensor: TensorId,
        /// Element index inside the tensor.
        element: usize,
    },
    /// Table entry `index` holds a quantization parameter the int8 kernels cannot use.
    BadQuantParam {
        /// Table index.
        index: u32,
        /// Which tensor it is (displayed by its timm name).
        tensor: TensorId,
        /// Element (or record) inside the tensor.
        element: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A reserved field is not zero (it will mean something in a later version).
    ReservedNotZero {
        /// Which field.
        field: &'static str,
    },
    /// The executor passed to `run_parallel` reports zero workers.
    NoWorkers,
    /// The arena passed to `run` is smaller than the model needs.
    ArenaTooSmall {
        /// Bytes needed (see [`crate::Model::arena_len`]).
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The input slice has the wrong number of elements for the model's input size.
    InputLength {
        /// Elements expected.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The f32 input holds a NaN or an infinity (it would turn every logit into garbage).
    NonFiniteInput {
        /// Index of the first such element (NCHW order).
        index: usize,
    },
    /// The logits slice has the wrong length.
    OutputLength {
        /// Elements expected (number of classes).
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The selected kernel set is not available on this CPU or target.
    KernelsUnavailable {
        /// The kernel set asked for.
        kernels: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            Truncated { what, needed, available } => {
                write!(f, "model file truncated: {what} needs {needed} bytes, only {available} present")
            }
            BadMagic => write!(f, "not an edge model file (bad magic; expected \"CNXV2EDG\")"),
            UnsupportedVersion { found, supported } => {
                write!(f, "model file version {found} is not supported (this build reads version {supported})")
            }
            LengthMismatch { header, actual } => {
                write!(f, "model file length mismatch: header says {header} bytes, buffer has {actual}")
            }
            ChecksumMismatch { stored, computed } => write!(
                f,
                "model file checksum mismatch (stored crc32 {stored:#010x}, computed {computed:#010x}): the file is damaged"
            ),
            BufferMisaligned { address_mod_16 } => write!(
                f,
                "model buffer must start on a 16-byte boundary (address % 16 = {address_mod_16}); use edge::include_model! or edge::AlignedModel"
            ),
            BadHeader { field, value } => write!(f, "invalid header field {field} = {value}"),
            BadArch { reason } => write!(f, "invalid architecture: {reason}"),
            InputTooSmall {
                height,
                width,
                smallest,
            } => write!(
                f,
                "input size {height}x{width} is too small: the smallest this network accepts is \
                 {smallest}x{smallest} (its total stride; larger sizes need not be multiples of it)"
            ),
            TensorCount { expected, found } => {
                write!(f, "tensor table has {found} entries, the architecture needs {expected}")
            }
            TensorRole { index, expected, found } => write!(
                f,
                "tensor {index}: expected {} (stage {}, block {}), found role tag {} (stage {}, block {})",
                expected.0.name(),
                expected.1,
                expected.2,
                found.0,
                found.1,
                found.2
            ),
            UnsupportedDtype { index, tag } => write!(f, "tensor {index}: unsupported dtype tag {tag}"),
            BadLayout { index, expected, found } => {
                write!(f, "tensor {index}: layout tag {found}, expected {expected}")
            }
            TensorShape { index, role, expected, found } => write!(
                f,
                "tensor {index} ({}): shape {found:?} does not match the architecture's {expected:?}",
                role.name()
            ),
            TensorOutOfBounds { index, offset, len } => write!(
                f,
                "tensor {index}: bytes {offset}..+{len} lie outside the payload or disagree with its shape"
            ),
            TensorMisaligned { index, offset } => {
                write!(f, "tensor {index}: offset {offset} is not 64-byte aligned")
            }
            TensorOverlap { index } => {
                write!(f, "tensor {index} overlaps the header, the table or the previous tensor")
            }
            NonFiniteWeight {
                index,
                tensor,
                element,
            } => {
                write!(f, "tensor {index} ({tensor}): element {element} is NaN or infinite")
            }
            BadQuantParam {
                index,
                tensor,
                element,
                reason,
            } => write!(f, "tensor {index} ({tensor}), element {element}: {reason}"),
            ReservedNotZero { field } => write!(f, "reserved field {field} is not zero"),
            NoWorkers => write!(f, "the executor reports 0 workers (it must have at least 1)"),
            ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: the model needs {needed} bytes, got {got}")
            }
            InputLength { expected, got } => {
                write!(f, "input has {got} elements, the model expects {expected}")
            }
            NonFiniteInput { index } => {
                write!(f, "input element {index} is NaN or infinite")
            }
            OutputLength { expected, got } => {
                write!(f, "logits buffer has {got} elements, the model has {expected} classes")
            }
            KernelsUnavailable { kernels } => {
                write!(f, "kernel set '{kernels}' is not available on this CPU/target")
            }
        }
    }
}

impl core::error::Error for Error {}
