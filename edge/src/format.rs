//! The model file format, version 2 (see `edge/FORMAT.md`): constants, the canonical tensor
//! order of each precision (f32, int8), the dtype, layout and packed shape of each tensor, and
//! the CRC-32 that seals a file.

use crate::arch::{Arch, DOWN_PATCH, DW_KERNEL, MAX_STAGES, MLP_RATIO, STEM_PATCH};

/// First eight bytes of every model file.
pub const MAGIC: [u8; 8] = *b"CNXV2EDG";
/// Format version this build writes (it reads this one and [`MIN_VERSION`]..).
pub const VERSION: u32 = 2;
/// Oldest version this build reads (version 1: f32 models only, same layout).
pub const MIN_VERSION: u32 = 1;
/// Header flag: the file holds an int8 model (version ≥ 2).
pub const FLAG_INT8: u32 = 1;
/// Bytes of the fixed header; the tensor table starts here.
pub const HEADER_LEN: usize = 160;
/// Bytes of one tensor-table entry.
pub const ENTRY_LEN: usize = 48;
/// Alignment of every tensor's offset (a cache line; ≥ the 16 bytes NEON loads like).
pub const TENSOR_ALIGN: usize = 64;
/// Output channels per packed GEMM panel (`Layout::Panels8`).
pub const PANEL: usize = 8;
/// The checksum covers bytes `CRC_START..file_len`: everything after the CRC field.
pub const CRC_START: usize = 16;
/// `quant_index` value meaning "no quantization parameters" (f32 tensors).
pub const NO_QUANT: u32 = u32::MAX;

/// Which arithmetic a model file is for (header flag [`FLAG_INT8`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 weights and activations.
    #[default]
    F32,
    /// int8 weights and activations, int32 accumulators, LayerNorm in f32, GRN in fp16.
    Int8,
}

impl Precision {
    /// The header flags of this precision.
    pub fn flags(self) -> u32 {
        match self {
            Precision::F32 => 0,
            Precision::Int8 => FLAG_INT8,
        }
    }

    /// A short name ("f32", "int8").
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Dtype {
    /// IEEE-754 binary32, little-endian.
    F32 = 1,
    /// IEEE-754 binary16, little-endian.
    F16 = 2,
    /// Signed 8-bit integer.
    I8 = 3,
    /// Signed 32-bit integer, little-endian.
    I32 = 4,
    /// A requantization record (8 bytes): i32 multiplier, u8 pre-shift, u8 post-shift, 2 zero
    /// bytes ([`crate::ops::requant::Requant`]).
    Requant = 5,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::F16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::Requant => 8,
        }
    }
}

/// How a tensor's elements are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Layout {
    /// One vector `[C]`.
    Vector = 0,
    /// Patch convolution weights `[kh][kw][cin][cout]` (output channels contiguous).
    Hwio = 1,
    /// Depthwise weights `[kh][kw][C]` (channels contiguous, matching NHWC activations).
    DepthwiseHwc = 2,
    /// GEMM weights packed in panels of 8 outputs: `[ceil(N/8)][K][8]`, zero-padded.
    Panels8 = 3,
    /// int8 GEMM weights, panels of 8 outputs by groups of 4 inputs: `[ceil(N/8)][ceil(K/4)][8][4]`,
    /// zero-padded ([`crate::ops::pointwise_i8::pack_c4`]). Patch convolutions use it too, K
    /// ordered `(ky, kx, ci)`.
    PanelsC4 = 4,
    /// Activation quantization pairs `[n][2]`: (scale, zero point) per quantized tensor.
    QuantPairs = 5,
}

/// What a tensor is. The numeric tag is stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[allow(missing_docs)]
pub enum Role {
    StemConvW = 1,
    StemConvB = 2,
    StemNormW = 3,
    StemNormB = 4,
    DownNormW = 10,
    DownNormB = 11,
    DownConvW = 12,
    DownConvB = 13,
    DwConvW = 20,
    DwConvB = 21,
    NormW = 22,
    NormB = 23,
    Fc1W = 24,
    Fc1B = 25,
    GrnW = 26,
    GrnB = 27,
    Fc2W = 28,
    Fc2B = 29,
    HeadNormW = 40,
    HeadNormB = 41,
    HeadFcW = 42,
    HeadFcB = 43,
    // int8 only: quantization parameters.
    /// `[2][2]`: input, stem output (scale, zero point).
    StemAct = 5,
    /// `[C0]` f32: dequantization of the stem conv accumulators (`s_in·s_w[c]`).
    StemDeq = 6,
    /// `[2][2]`: downsample LayerNorm output, downsample output.
    DownAct = 14,
    /// `[C]` requantization of the downsample conv accumulators.
    DownRq = 15,
    /// `[5][2]`: block LayerNorm output, fc1 output, GELU output, GRN output, block output.
    BlockAct = 30,
    /// `[C]` f32: dequantization of the depthwise accumulators (`s_x·s_dw[c]`).
    DwDeq = 31,
    /// `[4C]` requantization of fc1's accumulators.
    Fc1Rq = 32,
    /// `[256]` int8 GELU table.
    GeluLut = 33,
    /// `[1 + C]` residual add: the stream's scale, then fc2's per-channel accumulator scales.
    ResRq = 34,
    /// `[1][2]`: the classifier's input (pooled, normalized features).
    HeadAct = 44,
    /// `[classes]` f32: dequantization of the classifier accumulators into logits.
    HeadDeq = 45,
}

/// Tensors of the stem, in file order.
pub const STEM_ROLES: [Role; 4] = [
    Role::StemConvW,
    Role::StemConvB,
    Role::StemNormW,
    Role::StemNormB,
];
/// Tensors of a downsample layer (stages ≥ 1), in file order.
pub const DOWN_ROLES: [Role; 4] = [
    Role::DownNormW,
    Role::DownNormB,
    Role::DownConvW,
    Role::DownConvB,
];
/// Tensors of a block, in file order.
pub const BLOCK_ROLES: [Role; 10] = [
    Role::DwConvW,
    Role::DwConvB,
    Role::NormW,
    Role::NormB,
    Role::Fc1W,
    Role::Fc1B,
    Role::GrnW,
    Role::GrnB,
    Role::Fc2W,
    Role::Fc2B,
];
/// Tensors of the head, in file order.
pub const HEAD_ROLES: [Role; 4] = [
    Role::HeadNormW,
    Role::HeadNormB,
    Role::HeadFcW,
    Role::HeadFcB,
];

/// int8 model: tensors of the stem, in file order.
pub const STEM_ROLES_I8: [Role; 6] = [
    Role::StemAct,
    Role::StemConvW,
    Role::StemConvB,
    Role::StemDeq,
    Role::StemNormW,
    Role::StemNormB,
];
/// int8 model: tensors of a downsample layer, in file order.
pub const DOWN_ROLES_I8: [Role; 6] = [
    Role::DownAct,
    Role::DownNormW,
    Role::DownNormB,
    Role::DownConvW,
    Role::DownConvB,
    Role::DownRq,
];
/// int8 model: tensors of a block, in file order.
pub const BLOCK_ROLES_I8: [Role; 15] = [
    Role::BlockAct,
    Role::DwConvW,
    Role::DwConvB,
    Role::DwDeq,
    Role::NormW,
    Role::NormB,
    Role::Fc1W,
    Role::Fc1B,
    Role::Fc1Rq,
    Role::GeluLut,
    Role::GrnW,
    Role::GrnB,
    Role::Fc2W,
    Role::Fc2B,
    Role::ResRq,
];
/// int8 model: tensors of the head, in file order.
pub const HEAD_ROLES_I8: [Role; 6] = [
    Role::HeadAct,
    Role::HeadNormW,
    Role::HeadNormB,
    Role::HeadFcW,
    Role::HeadFcB,
    Role::HeadDeq,
];

/// Indices of the (scale, zero point) pairs inside the int8 `*Act` tensors.
pub mod act {
    /// `StemAct`: the quantized input image.
    pub const STEM_IN: usize = 0;
    /// `StemAct`: the stem's output (first residual stream).
    pub const STEM_OUT: usize = 1;
    /// `DownAct`: the downsample LayerNorm's output.
    pub const DOWN_NORM: usize = 0;
    /// `DownAct`: the downsample's output (the stage's residual stream).
    pub const DOWN_OUT: usize = 1;
    /// `BlockAct`: the block LayerNorm's output (fc1's input).
    pub const NORM: usize = 0;
    /// `BlockAct`: fc1's output (GELU's input).
    pub const FC1: usize = 1;
    /// `BlockAct`: GELU's output (GRN's input).
    pub const GELU: usize = 2;
    /// `BlockAct`: GRN's output (fc2's input).
    pub const GRN: usize = 3;
    /// `BlockAct`: the block's output (residual stream).
    pub const OUT: usize = 4;
    /// `HeadAct`: the normalized pooled features (the classifier's input).
    pub const HEAD_NORM: usize = 0;
}

/// The tensor roles of each part of a network, in file order, for one precision.
#[derive(Clone, Copy, Debug)]
pub struct PartRoles {
    /// Stem.
    pub stem: &'static [Role],
    /// Downsample (stages ≥ 1).
    pub down: &'static [Role],
    /// Each block.
    pub block: &'static [Role],
    /// Head.
    pub head: &'static [Role],
}

impl Precision {
    /// The tensor roles of this precision's files.
    pub fn roles(self) -> PartRoles {
        match self {
            Precision::F32 => PartRoles {
                stem: &STEM_ROLES,
                down: &DOWN_ROLES,
                block: &BLOCK_ROLES,
                head: &HEAD_ROLES,
            },
            Precision::Int8 => PartRoles {
                stem: &STEM_ROLES_I8,
                down: &DOWN_ROLES_I8,
                block: &BLOCK_ROLES_I8,
                head: &HEAD_ROLES_I8,
            },
        }
    }
}

impl Role {
    /// The role for a stored tag, if any.
    pub fn from_tag(tag: u16) -> Option<Role> {
        STEM_ROLES_I8
            .iter()
            .chain(DOWN_ROLES_I8.iter())
            .chain(BLOCK_ROLES_I8.iter())
            .chain(HEAD_ROLES_I8.iter())
            .copied()
            .find(|r| *r as u16 == tag)
    }

    /// A readable name (timm's key suffix).
    pub fn name(self) -> &'static str {
        use Role::*;
        match self {
            StemConvW => "stem.0.weight",
            StemConvB => "stem.0.bias",
            StemNormW => "stem.1.weight",
            StemNormB => "stem.1.bias",
            DownNormW => "downsample.0.weight",
            DownNormB => "downsample.0.bias",
            DownConvW => "downsample.1.weight",
            DownConvB => "downsample.1.bias",
            DwConvW => "conv_dw.weight",
            DwConvB => "conv_dw.bias",
            NormW => "norm.weight",
            NormB => "norm.bias",
            Fc1W => "mlp.fc1.weight",
            Fc1B => "mlp.fc1.bias",
            GrnW => "mlp.grn.weight",
            GrnB => "mlp.grn.bias",
            Fc2W => "mlp.fc2.weight",
            Fc2B => "mlp.fc2.bias",
            HeadNormW => "head.norm.weight",
            HeadNormB => "head.norm.bias",
            HeadFcW => "head.fc.weight",
            HeadFcB => "head.fc.bias",
            StemAct => "stem.quant",
            StemDeq => "stem.0.deq",
            DownAct => "downsample.quant",
            DownRq => "downsample.1.requant",
            BlockAct => "quant",
            DwDeq => "conv_dw.deq",
            Fc1Rq => "mlp.fc1.requant",
            GeluLut => "mlp.act.lut",
            ResRq => "residual.requant",
            HeadAct => "head.quant",
            HeadDeq => "head.fc.deq",
        }
    }

    /// The layout this role is stored in, in a file of precision `p`.
    pub fn layout(self, p: Precision) -> Layout {
        use Role::*;
        match (self, p) {
            (StemConvW | DownConvW, Precision::F32) => Layout::Hwio,
            (StemConvW | DownConvW, Precision::Int8) => Layout::PanelsC4,
            (DwConvW, _) => Layout::DepthwiseHwc,
            (Fc1W | Fc2W | HeadFcW, Precision::F32) => Layout::Panels8,
            (Fc1W | Fc2W | HeadFcW, Precision::Int8) => Layout::PanelsC4,
            (StemAct | DownAct | BlockAct | HeadAct, _) => Layout::QuantPairs,
            _ => Layout::Vector,
        }
    }

    /// The element type this role is stored as, in a file of precision `p`.
    pub fn dtype(self, p: Precision) -> Dtype {
        use Role::*;
        if p == Precision::F32 {
            return Dtype::F32;
        }
        match self {
            StemConvW | DownConvW | DwConvW | Fc1W | Fc2W | HeadFcW | GeluLut => Dtype::I8,
            StemConvB | DownConvB | DwConvB | Fc1B | Fc2B | HeadFcB => Dtype::I32,
            GrnW | GrnB => Dtype::F16,
            DownRq | Fc1Rq | ResRq => Dtype::Requant,
            _ => Dtype::F32,
        }
    }
}

/// One tensor of a model: its role and where it sits (stage, block; 0 where not applicable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId {
    /// What it is.
    pub role: Role,
    /// Stage index (stem: 0; head: number of stages − 1).
    pub stage: u16,
    /// Block index inside the stage (0 for stem, downsample and head).
    pub block: u32,
}

/// timm's state-dict key of the tensor (`stem.0.weight`, `stages.1.downsample.1.bias`,
/// `stages.2.blocks.3.mlp.grn.weight`, `head.fc.weight`; int8-only roles get names in the same
/// scheme, e.g. `stages.0.blocks.0.mlp.fc1.requant`).
impl core::fmt::Display for TensorId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use Role::*;
        let (s, b, r) = (self.stage, self.block, self.role.name());
        match self.role {
            StemConvW | StemConvB | StemNormW | StemNormB | StemAct | StemDeq | HeadNormW
            | HeadNormB | HeadFcW | HeadFcB | HeadAct | HeadDeq => f.write_str(r),
            DownNormW | DownNormB | DownConvW | DownConvB | DownAct | DownRq => {
                write!(f, "stages.{s}.{r}")
            }
            _ => write!(f, "stages.{s}.blocks.{b}.{r}"),
        }
    }
}

/// Iterates over an architecture's tensors in file order: stem; per stage (downsample when
/// stage > 0, then each block); head.
pub fn tensor_ids(arch: &Arch, p: Precision) -> impl Iterator<Item = TensorId> + '_ {
    let r = p.roles();
    let last = arch.num_stages.saturating_sub(1) as u16;
    let stem = r.stem.iter().map(|&role| TensorId {
        role,
        stage: 0,
        block: 0,
    });
    let stages = (0..arch.num_stages.min(MAX_STAGES)).flat_map(move |s| {
        let down = r
            .down
            .iter()
            .filter(move |_| s > 0)
            .map(move |&role| TensorId {
                role,
                stage: s as u16,
                block: 0,
            });
        let blocks = (0..arch.depths[s]).flat_map(move |b| {
            r.block.iter().map(move |&role| TensorId {
                role,
                stage: s as u16,
                block: b as u32,
            })
        });
        down.chain(blocks)
    });
    let head = r.head.iter().map(move |&role| TensorId {
        role,
        stage: last,
        block: 0,
    });
    stem.chain(stages).chain(head)
}

/// Number of tensors an architecture has.
pub fn tensor_count(arch: &Arch, p: Precision) -> usize {
    let r = p.roles();
    let blocks: usize = arch.depths().iter().sum();
    r.stem.len()
        + r.down.len() * arch.num_stages.saturating_sub(1)
        + r.block.len() * blocks
        + r.head.len()
}

/// Table index of the first tensor of stage `s` (its downsample, or its first block).
pub fn stage_base(arch: &Arch, p: Precision, s: usize) -> usize {
    let r = p.roles();
    let mut i = r.stem.len();
    for t in 0..s {
        if t > 0 {
            i += r.down.len();
        }
        i += r.block.len() * arch.depths[t];
    }
    i
}

/// Number of (scale, zero point) pairs in an int8 `*Act` tensor.
pub fn act_pairs(role: Role) -> usize {
    match role {
        Role::BlockAct => 5,
        Role::HeadAct => 1,
        _ => 2,
    }
}

/// Packed shape (as stored, trailing unused dims 0) of a tensor in a file of precision `p`.
pub fn packed_shape(arch: &Arch, p: Precision, id: TensorId) -> [u32; 4] {
    if p == Precision::Int8 {
        if let Some(shape) = packed_shape_i8(arch, id) {
            return shape;
        }
    }
    packed_shape_f32(arch, id)
}

/// `(N, K)` of an int8 GEMM-shaped weight (patch convs: K = k·k·cin).
pub fn gemm_dims(arch: &Arch, id: TensorId) -> Option<(usize, usize)> {
    use Role::*;
    let s = id.stage as usize;
    let c = arch.dims[s.min(MAX_STAGES - 1)];
    let prev = if s == 0 {
        arch.in_chans
    } else {
        arch.dims[s - 1]
    };
    let h = MLP_RATIO * c;
    match id.role {
        StemConvW => Some((arch.dims[0], STEM_PATCH * STEM_PATCH * arch.in_chans)),
        DownConvW => Some((c, DOWN_PATCH * DOWN_PATCH * prev)),
        Fc1W => Some((h, c)),
        Fc2W => Some((c, h)),
        HeadFcW => Some((arch.num_classes, arch.last_dim())),
        _ => None,
    }
}

fn packed_shape_i8(arch: &Arch, id: TensorId) -> Option<[u32; 4]> {
    use crate::ops::pointwise_i8::{KR, NR};
    use Role::*;
    let s = id.stage as usize;
    let c = arch.dims[s.min(MAX_STAGES - 1)];
    let v = |n: usize| Some([n as u32, 0, 0, 0]);
    if let Some((n, k)) = gemm_dims(arch, id) {
        return Some([
            n.div_ceil(NR) as u32,
            k.div_ceil(KR) as u32,
            NR as u32,
            KR as u32,
        ]);
    }
    match id.role {
        StemAct | DownAct | BlockAct | HeadAct => Some([act_pairs(id.role) as u32, 2, 0, 0]),
        StemDeq => v(arch.dims[0]),
        DwDeq | DownRq => v(c),
        Fc1Rq => v(MLP_RATIO * c),
        GeluLut => v(256),
        ResRq => v(c + 1),
        HeadDeq => v(arch.num_classes),
        _ => None,
    }
}

fn packed_shape_f32(arch: &Arch, id: TensorId) -> [u32; 4] {
    use Role::*;
    let s = id.stage as usize;
    let c = arch.dims[s.min(MAX_STAGES - 1)];
    let prev = if s == 0 {
        arch.in_chans
    } else {
        arch.dims[s - 1]
    };
    let h = MLP_RATIO * c;
    let panels = |n: usize| n.div_ceil(PANEL);
    let v = |n: usize| [n as u32, 0, 0, 0];
    match id.role {
        StemConvW => [
            STEM_PATCH as u32,
            STEM_PATCH as u32,
            arch.in_chans as u32,
            arch.dims[0] as u32,
        ],
        StemConvB | StemNormW | StemNormB => v(arch.dims[0]),
        DownNormW | DownNormB => v(prev),
        DownConvW => [DOWN_PATCH as u32, DOWN_PATCH as u32, prev as u32, c as u32],
        DownConvB => v(c),
        DwConvW => [DW_KERNEL as u32, DW_KERNEL as u32, c as u32, 0],
        DwConvB | NormW | NormB | Fc2B => v(c),
        Fc1W => [panels(h) as u32, c as u32, PANEL as u32, 0],
        Fc1B | GrnW | GrnB => v(h),
        Fc2W => [panels(c) as u32, h as u32, PANEL as u32, 0],
        HeadNormW | HeadNormB => v(arch.last_dim()),
        HeadFcW => [
            panels(arch.num_classes) as u32,
            arch.last_dim() as u32,
            PANEL as u32,
            0,
        ],
        HeadFcB | HeadDeq => v(arch.num_classes),
        // int8-only roles (shapes from `packed_shape_i8`).
        StemAct | DownAct | BlockAct | HeadAct | StemDeq | DownRq | DwDeq | Fc1Rq | GeluLut
        | ResRq => [0; 4],
    }
}

/// Number of elements of a shape with trailing zeros meaning "unused".
pub fn shape_elems(shape: &[u32; 4]) -> u64 {
    shape
        .iter()
        .take_while(|&&d| d != 0)
        .map(|&d| d as u64)
        .product()
}

/// Number of dimensions of a shape with trailing zeros meaning "unused".
pub fn shape_ndim(shape: &[u32; 4]) -> usize {
    shape.iter().take_while(|&&d| d != 0).count()
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, as zlib's `crc32`) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Recomputes and stores the CRC of a model file in place (writers, and fuzzers that want
/// their mutations to reach the deeper checks). Does nothing if the buffer is shorter than a header.
pub fn seal(file: &mut [u8]) {
    if file.len() >= HEADER_LEN {
        let c = crc32(&file[CRC_START..]);
        file[field::CRC..field::CRC + 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// Byte offsets of header fields (all little-endian).
pub mod field {
    /// `[u8; 8]` magic.
    pub const MAGIC: usize = 0;
    /// `u32` version.
    pub const VERSION: usize = 8;
    /// `u32` CRC-32 of bytes 16..file_len.
    pub const CRC: usize = 12;
    /// `u64` total file length.
    pub const FILE_LEN: usize = 16;
    /// `u32` header length (160).
    pub const HEADER_LEN: usize = 24;
    /// `u32` flags ([`super::FLAG_INT8`]; 0 in version 1).
    pub const FLAGS: usize = 28;
    /// `u32` input channels.
    pub const IN_CHANS: usize = 32;
    /// `u32` input height.
    pub const INPUT_H: usize = 36;
    /// `u32` input width.
    pub const INPUT_W: usize = 40;
    /// `u32` classes.
    pub const NUM_CLASSES: usize = 44;
    /// `f32` LayerNorm eps.
    pub const LN_EPS: usize = 48;
    /// `f32` GRN eps.
    pub const GRN_EPS: usize = 52;
    /// `u32` number of stages.
    pub const NUM_STAGES: usize = 56;
    /// `[u32; 8]` depths.
    pub const DEPTHS: usize = 60;
    /// `[u32; 8]` dims.
    pub const DIMS: usize = 92;
    /// `u32` tensor count.
    pub const TENSOR_COUNT: usize = 124;
    /// `u64` table offset.
    pub const TABLE_OFFSET: usize = 128;
    /// `u64` payload offset.
    pub const PAYLOAD_OFFSET: usize = 136;
    /// `u64` payload length.
    pub const PAYLOAD_LEN: usize = 144;
    /// `[u8; 8]` reserved, zero.
    pub const RESERVED: usize = 152;
}

/// Byte offsets inside a tensor-table entry.
pub mod entry {
    /// `u16` role tag.
    pub const ROLE: usize = 0;
    /// `u16` stage.
    pub const STAGE: usize = 2;
    /// `u32` block.
    pub const BLOCK: usize = 4;
    /// `u8` dtype tag.
    pub const DTYPE: usize = 8;
    /// `u8` layout tag.
    pub const LAYOUT: usize = 9;
    /// `u8` number of dims.
    pub const NDIM: usize = 10;
    /// `u8` reserved, zero.
    pub const RESERVED: usize = 11;
    /// `[u32; 4]` packed shape, trailing zeros.
    pub const SHAPE: usize = 12;
    /// `u32` reserved, `NO_QUANT` (quantization parameters are tensors of their own).
    pub const QUANT: usize = 28;
    /// `u64` absolute byte offset.
    pub const OFFSET: usize = 32;
    /// `u64` byte length.
    pub const NBYTES: usize = 40;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn tensor_ids_follow_count_and_bases() {
        let a = Arch::named("atto", 1000, 224, 224).unwrap();
        let f = Precision::F32;
        assert_eq!(tensor_ids(&a, f).count(), tensor_count(&a, f));
        assert_eq!(tensor_count(&a, f), 4 + 3 * 4 + 12 * 10 + 4); // 140 as in timm's state_dict
        for s in 0..4 {
            let id = tensor_ids(&a, f).nth(stage_base(&a, f, s)).unwrap();
            assert_eq!(id.stage as usize, s);
            assert_eq!(
                id.role,
                if s == 0 {
                    Role::DwConvW
                } else {
                    Role::DownNormW
                }
            );
        }
        let total: u64 = tensor_ids(&a, f)
            .map(|id| {
                let sh = packed_shape(&a, f, id);
                shape_elems(&sh)
            })
            .sum();
        assert_eq!(total, a.param_count()); // atto's widths are multiples of 8: no panel padding
        for id in tensor_ids(&a, f) {
            assert_eq!(Role::from_tag(id.role as u16), Some(id.role));
        }
    }

    #[test]
    fn int8_tensor_list_and_sizes() {
        let a = Arch::named("atto", 1000, 224, 224).unwrap();
        let q = Precision::Int8;
        assert_eq!(tensor_ids(&a, q).count(), tensor_count(&a, q));
        assert_eq!(tensor_count(&a, q), 6 + 3 * 6 + 12 * 15 + 6);
        for s in 0..4 {
            let id = tensor_ids(&a, q).nth(stage_base(&a, q, s)).unwrap();
            let first = if s == 0 {
                Role::BlockAct
            } else {
                Role::DownAct
            };
            assert_eq!((id.role, id.stage as usize), (first, s));
        }
        // Weights are one byte per parameter: the payload is ≈ the parameter count.
        let bytes: u64 = tensor_ids(&a, q)
            .map(|id| shape_elems(&packed_shape(&a, q, id)) * id.role.dtype(q).size() as u64)
            .sum();
        let params = a.param_count();
        assert!(
            bytes > params && bytes < params * 11 / 10,
            "{bytes} vs {params}"
        );
        for id in tensor_ids(&a, q) {
            assert_eq!(Role::from_tag(id.role as u16), Some(id.role));
            assert_ne!(shape_elems(&packed_shape(&a, q, id)), 0, "{:?}", id.role);
        }
    }
}
