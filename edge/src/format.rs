//! The model file format, version 1 (see `edge/FORMAT.md`): constants, the canonical tensor
//! order, the packed shape of each tensor, and the CRC-32 that seals a file.

use crate::arch::{Arch, DOWN_PATCH, DW_KERNEL, MAX_STAGES, MLP_RATIO, STEM_PATCH};

/// First eight bytes of every model file.
pub const MAGIC: [u8; 8] = *b"CNXV2EDG";
/// Format version this build writes and reads.
pub const VERSION: u32 = 1;
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

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Dtype {
    /// IEEE-754 binary32, little-endian.
    F32 = 1,
}

/// Dtype tags reserved for the int8 path (not readable by this build yet).
pub mod reserved_dtype {
    /// IEEE-754 binary16.
    pub const F16: u8 = 2;
    /// Signed 8-bit integer.
    pub const I8: u8 = 3;
    /// Signed 32-bit integer.
    pub const I32: u8 = 4;
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
}

/// What a tensor is. The numeric tag is stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl Role {
    /// The role for a stored tag, if any.
    pub fn from_tag(tag: u16) -> Option<Role> {
        STEM_ROLES
            .iter()
            .chain(DOWN_ROLES.iter())
            .chain(BLOCK_ROLES.iter())
            .chain(HEAD_ROLES.iter())
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
        }
    }

    /// The layout this role is stored in.
    pub fn layout(self) -> Layout {
        use Role::*;
        match self {
            StemConvW | DownConvW => Layout::Hwio,
            DwConvW => Layout::DepthwiseHwc,
            Fc1W | Fc2W | HeadFcW => Layout::Panels8,
            _ => Layout::Vector,
        }
    }
}

/// One tensor of a model: its role and where it sits (stage, block; 0 where not applicable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorId {
    /// What it is.
    pub role: Role,
    /// Stage index (stem: 0; head: number of stages − 1).
    pub stage: u16,
    /// Block index inside the stage (0 for stem, downsample and head).
    pub block: u32,
}

/// Iterates over an architecture's tensors in file order: stem; per stage (downsample when
/// stage > 0, then each block); head.
pub fn tensor_ids(arch: &Arch) -> impl Iterator<Item = TensorId> + '_ {
    let last = arch.num_stages.saturating_sub(1) as u16;
    let stem = STEM_ROLES.iter().map(|&role| TensorId {
        role,
        stage: 0,
        block: 0,
    });
    let stages = (0..arch.num_stages.min(MAX_STAGES)).flat_map(move |s| {
        let down = DOWN_ROLES
            .iter()
            .filter(move |_| s > 0)
            .map(move |&role| TensorId {
                role,
                stage: s as u16,
                block: 0,
            });
        let blocks = (0..arch.depths[s]).flat_map(move |b| {
            BLOCK_ROLES.iter().map(move |&role| TensorId {
                role,
                stage: s as u16,
                block: b as u32,
            })
        });
        down.chain(blocks)
    });
    let head = HEAD_ROLES.iter().map(move |&role| TensorId {
        role,
        stage: last,
        block: 0,
    });
    stem.chain(stages).chain(head)
}

/// Number of tensors an architecture has.
pub fn tensor_count(arch: &Arch) -> usize {
    let blocks: usize = arch.depths().iter().sum();
    STEM_ROLES.len()
        + DOWN_ROLES.len() * arch.num_stages.saturating_sub(1)
        + BLOCK_ROLES.len() * blocks
        + HEAD_ROLES.len()
}

/// Table index of the first tensor of stage `s` (its downsample, or its first block).
pub fn stage_base(arch: &Arch, s: usize) -> usize {
    let mut i = STEM_ROLES.len();
    for t in 0..s {
        if t > 0 {
            i += DOWN_ROLES.len();
        }
        i += BLOCK_ROLES.len() * arch.depths[t];
    }
    i
}

/// Packed shape (as stored, trailing unused dims 0) and element count of a tensor.
pub fn packed_shape(arch: &Arch, id: TensorId) -> [u32; 4] {
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
        HeadFcB => v(arch.num_classes),
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
    /// `u32` flags (0 in version 1).
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
    /// `u32` index of quantization parameters (`NO_QUANT` for f32).
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
        assert_eq!(tensor_ids(&a).count(), tensor_count(&a));
        assert_eq!(tensor_count(&a), 4 + 3 * 4 + 12 * 10 + 4); // 140 as in timm's state_dict
        for s in 0..4 {
            let id = tensor_ids(&a).nth(stage_base(&a, s)).unwrap();
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
        let total: u64 = tensor_ids(&a)
            .map(|id| {
                let sh = packed_shape(&a, id);
                shape_elems(&sh)
            })
            .sum();
        assert_eq!(total, a.param_count()); // atto's widths are multiples of 8: no panel padding
        for id in tensor_ids(&a) {
            assert_eq!(Role::from_tag(id.role as u16), Some(id.role));
        }
    }
}
