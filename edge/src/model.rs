//! Parsing and validating a model file. Safe code only: every read is bounds-checked and every
//! failure is a typed [`Error`]; the result borrows the caller's bytes (zero-copy).

use crate::arch::{Arch, MAX_STAGES};
use crate::arena::ArenaPlan;
use crate::format::{self, entry, field, Dtype, Layout, Precision, TensorId};
use crate::ops::grn_f16::GrnF16Quant;
use crate::ops::requant::Requant;
use crate::Error;
use half::f16;

/// A validated model borrowing its file bytes.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    bytes: &'a [u8],
    arch: Arch,
    precision: Precision,
    table_offset: usize,
    stage_base: [usize; MAX_STAGES],
    head_base: usize,
}

fn read_bytes<'a>(b: &'a [u8], at: usize, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
    let end = at.checked_add(n).ok_or(Error::Truncated {
        what,
        needed: u64::MAX,
        available: b.len() as u64,
    })?;
    b.get(at..end).ok_or(Error::Truncated {
        what,
        needed: end as u64,
        available: b.len() as u64,
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<'a> Model<'a> {
    /// Parses and validates a model file: magic, version, length, checksum, header, architecture,
    /// every table entry (role, dtype, layout, shape, bounds, alignment, overlap) and every weight
    /// (finite). `bytes` must start on a 16-byte boundary ([`crate::include_model!`] does that).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        // Magic first, so that a file of another kind is named as such whatever its length.
        if read_bytes(bytes, field::MAGIC, 8, "magic")? != format::MAGIC {
            return Err(Error::BadMagic);
        }
        // Then the fixed header: everything below reads inside these 160 bytes.
        let h = read_bytes(bytes, 0, format::HEADER_LEN, "header")?;
        let version = u32_at(h, field::VERSION);
        if !(format::MIN_VERSION..=format::VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: format::VERSION,
            });
        }
        let file_len = u64_at(h, field::FILE_LEN);
        if file_len != bytes.len() as u64 {
            return Err(Error::LengthMismatch {
                header: file_len,
                actual: bytes.len() as u64,
            });
        }
        let stored = u32_at(h, field::CRC);
        let computed = format::crc32(&bytes[format::CRC_START..]);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        let address_mod_16 = bytes.as_ptr() as usize % 16;
        if address_mod_16 != 0 {
            return Err(Error::BufferMisaligned { address_mod_16 });
        }
        let header_len = u32_at(h, field::HEADER_LEN);
        if header_len as usize != format::HEADER_LEN {
            return Err(Error::BadHeader {
                field: "header_len",
                value: header_len as u64,
            });
        }
        let flags = u32_at(h, field::FLAGS);
        let precision = match (version, flags) {
            (_, 0) => Precision::F32,
            (2.., format::FLAG_INT8) => Precision::Int8,
            _ => {
                return Err(Error::BadHeader {
                    field: "flags",
                    value: flags as u64,
                })
            }
        };
        if h[field::RESERVED..field::RESERVED + 8]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(Error::ReservedNotZero {
                field: "header.reserved",
            });
        }

        let num_stages = u32_at(h, field::NUM_STAGES) as usize;
        if num_stages == 0 || num_stages > MAX_STAGES {
            return Err(Error::BadHeader {
                field: "num_stages",
                value: num_stages as u64,
            });
        }
        let mut depths = [0usize; MAX_STAGES];
        let mut dims = [0usize; MAX_STAGES];
        for i in 0..MAX_STAGES {
            depths[i] = u32_at(h, field::DEPTHS + 4 * i) as usize;
            dims[i] = u32_at(h, field::DIMS + 4 * i) as usize;
        }
        let arch = Arch {
            num_stages,
            depths,
            dims,
            in_chans: u32_at(h, field::IN_CHANS) as usize,
            num_classes: u32_at(h, field::NUM_CLASSES) as usize,
            input_h: u32_at(h, field::INPUT_H) as usize,
            input_w: u32_at(h, field::INPUT_W) as usize,
            ln_eps: f32::from_bits(u32_at(h, field::LN_EPS)),
            grn_eps: f32::from_bits(u32_at(h, field::GRN_EPS)),
        };
        arch.validate()?;
        // The arena size must be representable on this target.
        ArenaPlan::for_model(&arch, precision).ok_or(Error::BadArch {
            reason: "activations too large for this target's address space",
        })?;

        let count = u32_at(h, field::TENSOR_COUNT);
        let expected = format::tensor_count(&arch, precision) as u32;
        if count != expected {
            return Err(Error::TensorCount {
                expected,
                found: count,
            });
        }
        let table_offset = u64_at(h, field::TABLE_OFFSET);
        if table_offset != format::HEADER_LEN as u64 {
            return Err(Error::BadHeader {
                field: "table_offset",
                value: table_offset,
            });
        }
        let table_len = count as usize * format::ENTRY_LEN;
        let table = read_bytes(bytes, format::HEADER_LEN, table_len, "tensor table")?;
        let payload_offset = u64_at(h, field::PAYLOAD_OFFSET);
        let payload_len = u64_at(h, field::PAYLOAD_LEN);
        let table_end = (format::HEADER_LEN + table_len) as u64;
        if payload_offset < table_end || !payload_offset.is_multiple_of(format::TENSOR_ALIGN as u64)
        {
            return Err(Error::BadHeader {
                field: "payload_offset",
                value: payload_offset,
            });
        }
        if payload_offset.checked_add(payload_len) != Some(file_len) {
            return Err(Error::BadHeader {
                field: "payload_len",
                value: payload_len,
            });
        }

        let mut prev_end = payload_offset;
        for (i, id) in format::tensor_ids(&arch, precision).enumerate() {
            let e = &table[i * format::ENTRY_LEN..(i + 1) * format::ENTRY_LEN];
            let index = i as u32;
            let found = (
                u16_at(e, entry::ROLE),
                u16_at(e, entry::STAGE),
                u32_at(e, entry::BLOCK),
            );
            if found != (id.role as u16, id.stage, id.block) {
                return Err(Error::TensorRole {
                    index,
                    expected: (id.role, id.stage, id.block),
                    found,
                });
            }
            let dtype = id.role.dtype(precision);
            if e[entry::DTYPE] != dtype as u8 {
                return Err(Error::UnsupportedDtype {
                    index,
                    tag: e[entry::DTYPE],
                });
            }
            let layout = id.role.layout(precision) as u8;
            if e[entry::LAYOUT] != layout {
                return Err(Error::BadLayout {
                    index,
                    expected: layout,
                    found: e[entry::LAYOUT],
                });
            }
            if e[entry::RESERVED] != 0 {
                return Err(Error::ReservedNotZero {
                    field: "entry.reserved",
                });
            }
            if u32_at(e, entry::QUANT) != format::NO_QUANT {
                return Err(Error::ReservedNotZero {
                    field: "entry.quant_index (must be NO_QUANT)",
                });
            }
            let want = format::packed_shape(&arch, precision, id);
            let mut shape = [0u32; 4];
            for (d, s) in shape.iter_mut().enumerate() {
                *s = u32_at(e, entry::SHAPE + 4 * d);
            }
            if shape != want || e[entry::NDIM] as usize != format::shape_ndim(&want) {
                return Err(Error::TensorShape {
                    index,
                    role: id.role,
                    expected: want,
                    found: shape,
                });
            }
            let offset = u64_at(e, entry::OFFSET);
            let len = u64_at(e, entry::NBYTES);
            if len != format::shape_elems(&want) * dtype.size() as u64 {
                return Err(Error::TensorOutOfBounds { index, offset, len });
            }
            if !offset.is_multiple_of(format::TENSOR_ALIGN as u64) {
                return Err(Error::TensorMisaligned { index, offset });
            }
            if offset < prev_end {
                return Err(Error::TensorOverlap { index });
            }
            let end = offset.checked_add(len).filter(|&end| end <= file_len);
            let Some(end) = end else {
                return Err(Error::TensorOutOfBounds { index, offset, len });
            };
            prev_end = end;
            let data = &bytes[offset as usize..end as usize];
            check_values(data, dtype, id, precision, index, offset)?;
            if id.role == format::Role::BlockAct {
                check_grn_scales(data, id, index, offset)?;
            }
        }

        let mut stage_base = [0usize; MAX_STAGES];
        for (s, base) in stage_base.iter_mut().enumerate().take(num_stages) {
            *base = format::stage_base(&arch, precision, s);
        }
        let head_base = format::tensor_count(&arch, precision) - precision.roles().head.len();
        Ok(Model {
            bytes,
            arch,
            precision,
            table_offset: format::HEADER_LEN,
            stage_base,
            head_base,
        })
    }

    /// The architecture the file describes.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Whether the file holds an f32 or an int8 model.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Size of the model file in bytes.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// The arena plan for this model's input size.
    pub fn arena_plan(&self) -> ArenaPlan {
        // Validated in `parse`: the plan fits in usize.
        ArenaPlan::for_model(&self.arch, self.precision).unwrap_or(ArenaPlan::EMPTY)
    }

    /// Bytes of scratch `run` needs (any alignment of the caller's buffer).
    pub fn arena_len(&self) -> usize {
        self.arena_plan().arena_len()
    }

    /// The arena plan for `workers` workers ([`crate::parallel`]): int8 models give each
    /// worker its own LayerNorm row and patch gather; with several workers both precisions
    /// keep GRN's partial sums of squares per pixel task and a staging block per worker for
    /// the GEMMs cut by output panels. One worker: the plan of `arena_plan`. A plan whose size
    /// overflows `usize` (absurd worker counts) is [`ArenaPlan::EMPTY`].
    pub fn arena_plan_for(&self, workers: usize) -> ArenaPlan {
        ArenaPlan::for_model_workers(&self.arch, self.precision, workers)
            .unwrap_or(ArenaPlan::EMPTY)
    }

    /// The plan `run` uses for `workers` workers, given a caller's arena of `got` bytes:
    /// [`Error::ArenaTooSmall`] (needing `usize::MAX`) if its size overflows `usize`.
    pub(crate) fn run_plan(&self, workers: usize, got: usize) -> Result<ArenaPlan, Error> {
        ArenaPlan::for_model_workers(&self.arch, self.precision, workers).ok_or(
            Error::ArenaTooSmall {
                needed: usize::MAX,
                got,
            },
        )
    }

    /// Bytes of scratch [`Model::run_parallel`] needs with `workers` workers; equals
    /// [`Model::arena_len`] for 1, a little more for several (f32 and int8).
    pub fn arena_len_for(&self, workers: usize) -> usize {
        self.arena_plan_for(workers).arena_len()
    }

    /// The tensor at table index `i` as f32 (validated at parse time).
    pub(crate) fn tensor(&self, i: usize) -> &'a [f32] {
        self.slice(i)
    }

    /// The tensor at table index `i` of an f32 model, as stored (packed layout), for tools
    /// that read weights back; `None` for other dtypes or indices.
    pub fn tensor_f32(&self, i: usize) -> Option<&'a [f32]> {
        let id = self.tensor_id(i)?;
        (id.role.dtype(self.precision) == Dtype::F32).then(|| self.slice(i))
    }

    /// The tensor at table index `i` as `T` (its dtype, validated at parse time).
    pub(crate) fn slice<T: bytemuck::Pod>(&self, i: usize) -> &'a [T] {
        let e = self.table_offset + i * format::ENTRY_LEN;
        let (Some(off), Some(len)) = (
            self.bytes.get(e + entry::OFFSET..e + entry::OFFSET + 8),
            self.bytes.get(e + entry::NBYTES..e + entry::NBYTES + 8),
        ) else {
            return &[];
        };
        let off = u64_at(off, 0) as usize;
        let len = u64_at(len, 0) as usize;
        self.bytes
            .get(off..off.saturating_add(len))
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
            .unwrap_or(&[])
    }

    /// Tensors of the stem: conv weight, conv bias, LN weight, LN bias.
    pub(crate) fn stem(&self) -> [&'a [f32]; 4] {
        core::array::from_fn(|r| self.tensor(r))
    }

    /// Tensors of stage `s`'s downsample (s ≥ 1): LN weight, LN bias, conv weight, conv bias.
    pub(crate) fn downsample(&self, s: usize) -> [&'a [f32]; 4] {
        let base = self.stage_base[s];
        core::array::from_fn(|r| self.tensor(base + r))
    }

    /// Table index of the first tensor of block `b` of stage `s`.
    fn block_base(&self, s: usize, b: usize) -> usize {
        let r = self.precision.roles();
        self.stage_base[s] + if s > 0 { r.down.len() } else { 0 } + b * r.block.len()
    }

    /// Tensors of block `b` of stage `s`, in [`format::BLOCK_ROLES`] order.
    pub(crate) fn block(&self, s: usize, b: usize) -> [&'a [f32]; 10] {
        let base = self.block_base(s, b);
        core::array::from_fn(|r| self.tensor(base + r))
    }

    /// Tensors of the head: LN weight, LN bias, FC weight (packed), FC bias.
    pub(crate) fn head(&self) -> [&'a [f32]; 4] {
        core::array::from_fn(|r| self.tensor(self.head_base + r))
    }

    /// Identity of table entry `i` (for tools that list a file's contents).
    pub fn tensor_id(&self, i: usize) -> Option<TensorId> {
        format::tensor_ids(&self.arch, self.precision).nth(i)
    }

    /// The (scale, zero point) pair `k` of the `*Act` tensor at table index `i`.
    fn pair(&self, i: usize, k: usize) -> QParams {
        let v: &[f32] = self.slice(i);
        match v.get(2 * k..2 * k + 2) {
            Some(&[scale, zero]) => QParams {
                scale,
                zero: zero as i32,
            },
            _ => QParams {
                scale: 1.0,
                zero: 0,
            },
        }
    }

    /// int8 model: the stem's tensors.
    pub(crate) fn stem_i8(&self) -> StemI8<'a> {
        StemI8 {
            input: self.pair(0, format::act::STEM_IN),
            out: self.pair(0, format::act::STEM_OUT),
            conv_w: self.slice(1),
            conv_b: self.slice(2),
            deq: self.slice(3),
            norm_w: self.slice(4),
            norm_b: self.slice(5),
        }
    }

    /// int8 model: stage `s`'s downsample (s ≥ 1).
    pub(crate) fn downsample_i8(&self, s: usize) -> DownI8<'a> {
        let i = self.stage_base[s];
        DownI8 {
            norm_q: self.pair(i, format::act::DOWN_NORM),
            out: self.pair(i, format::act::DOWN_OUT),
            norm_w: self.slice(i + 1),
            norm_b: self.slice(i + 2),
            conv_w: self.slice(i + 3),
            conv_b: self.slice(i + 4),
            rq: self.slice(i + 5),
        }
    }

    /// int8 model: block `b` of stage `s`.
    pub(crate) fn block_i8(&self, s: usize, b: usize) -> BlockI8<'a> {
        let i = self.block_base(s, b);
        let lut: &[i8] = self.slice(i + 9);
        BlockI8 {
            norm_q: self.pair(i, format::act::NORM),
            fc1_q: self.pair(i, format::act::FC1),
            gelu_q: self.pair(i, format::act::GELU),
            grn_q: self.pair(i, format::act::GRN),
            out: self.pair(i, format::act::OUT),
            dw_w: self.slice(i + 1),
            dw_b: self.slice(i + 2),
            dw_deq: self.slice(i + 3),
            norm_w: self.slice(i + 4),
            norm_b: self.slice(i + 5),
            fc1_w: self.slice(i + 6),
            fc1_b: self.slice(i + 7),
            fc1_rq: self.slice(i + 8),
            gelu_lut: lut.try_into().unwrap_or(&[0; 256]),
            grn_w: self.slice(i + 10),
            grn_b: self.slice(i + 11),
            fc2_w: self.slice(i + 12),
            fc2_b: self.slice(i + 13),
            res_rq: self.slice(i + 14),
        }
    }

    /// int8 model: the head.
    pub(crate) fn head_i8(&self) -> HeadI8<'a> {
        let i = self.head_base;
        HeadI8 {
            norm_q: self.pair(i, format::act::HEAD_NORM),
            norm_w: self.slice(i + 1),
            norm_b: self.slice(i + 2),
            fc_w: self.slice(i + 3),
            fc_b: self.slice(i + 4),
            deq: self.slice(i + 5),
        }
    }
}

/// Per-tensor quantization of an activation: `real = (q − zero) · scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Step between codes (finite, > 0).
    pub scale: f32,
    /// The code of real 0 (in −128..=127).
    pub zero: i32,
}

/// int8 stem tensors (file order of [`format::STEM_ROLES_I8`]).
pub(crate) struct StemI8<'a> {
    pub input: QParams,
    pub out: QParams,
    pub conv_w: &'a [i8],
    pub conv_b: &'a [i32],
    pub deq: &'a [f32],
    pub norm_w: &'a [f32],
    pub norm_b: &'a [f32],
}

/// int8 downsample tensors.
pub(crate) struct DownI8<'a> {
    pub norm_q: QParams,
    pub out: QParams,
    pub norm_w: &'a [f32],
    pub norm_b: &'a [f32],
    pub conv_w: &'a [i8],
    pub conv_b: &'a [i32],
    pub rq: &'a [Requant],
}

/// int8 block tensors.
pub(crate) struct BlockI8<'a> {
    pub norm_q: QParams,
    pub fc1_q: QParams,
    pub gelu_q: QParams,
    pub grn_q: QParams,
    pub out: QParams,
    pub dw_w: &'a [i8],
    pub dw_b: &'a [i32],
    pub dw_deq: &'a [f32],
    pub norm_w: &'a [f32],
    pub norm_b: &'a [f32],
    pub fc1_w: &'a [i8],
    pub fc1_b: &'a [i32],
    pub fc1_rq: &'a [Requant],
    pub gelu_lut: &'a [i8; 256],
    pub grn_w: &'a [f16],
    pub grn_b: &'a [f16],
    pub fc2_w: &'a [i8],
    pub fc2_b: &'a [i32],
    pub res_rq: &'a [Requant],
}

/// int8 head tensors.
pub(crate) struct HeadI8<'a> {
    pub norm_q: QParams,
    pub norm_w: &'a [f32],
    pub norm_b: &'a [f32],
    pub fc_w: &'a [i8],
    pub fc_b: &'a [i32],
    pub deq: &'a [f32],
}

/// GRN runs in fp16 on the int8 path: its input scale (GELU's output) and the inverse of its
/// output scale must be normal fp16 values (see [`GrnF16Quant::new`]).
fn check_grn_scales(data: &[u8], tensor: TensorId, index: u32, offset: u64) -> Result<(), Error> {
    let v: &[f32] =
        bytemuck::try_cast_slice(data).map_err(|_| Error::TensorMisaligned { index, offset })?;
    let (g, r) = (2 * format::act::GELU, 2 * format::act::GRN);
    match (v.get(g..g + 2), v.get(r..r + 2)) {
        (Some(&[gs, gz]), Some(&[rs, rz]))
            if GrnF16Quant::new(gs, gz as i32, rs, rz as i32).is_none() =>
        {
            Err(Error::BadQuantParam {
                index,
                tensor,
                element: g,
                reason: "GRN runs in fp16: GELU's output scale and 1 / GRN's output scale must be normal fp16 values (6.1e-5 ..= 65504)",
            })
        }
        _ => Ok(()),
    }
}

/// Checks a tensor's values against what its dtype and layout allow.
fn check_values(
    data: &[u8],
    dtype: Dtype,
    tensor: TensorId,
    precision: Precision,
    index: u32,
    offset: u64,
) -> Result<(), Error> {
    let layout = tensor.role.layout(precision);
    let misaligned = Error::TensorMisaligned { index, offset };
    let non_finite = |element: usize| Error::NonFiniteWeight {
        index,
        tensor,
        element,
    };
    let bad = |element: usize, reason: &'static str| Error::BadQuantParam {
        index,
        tensor,
        element,
        reason,
    };
    match dtype {
        Dtype::F32 => {
            let v: &[f32] = bytemuck::try_cast_slice(data).map_err(|_| misaligned)?;
            if let Some(element) = crate::ops::input::first_non_finite(v) {
                return Err(non_finite(element));
            }
            if layout == Layout::QuantPairs {
                for (k, p) in v.chunks_exact(2).enumerate() {
                    if p[0] < f32::MIN_POSITIVE {
                        return Err(bad(2 * k, "activation scale must be > 0 and normal"));
                    }
                    if libm::truncf(p[1]) != p[1] || !(-128.0..=127.0).contains(&p[1]) {
                        return Err(bad(
                            2 * k + 1,
                            "zero point must be an integer in -128..=127",
                        ));
                    }
                }
            }
        }
        Dtype::F16 => {
            let v: &[f16] = bytemuck::try_cast_slice(data).map_err(|_| misaligned)?;
            if let Some(element) = v.iter().position(|v| !v.is_finite()) {
                return Err(non_finite(element));
            }
        }
        Dtype::Requant => {
            let v: &[Requant] = bytemuck::try_cast_slice(data).map_err(|_| misaligned)?;
            if let Some(element) = v.iter().position(|r| !r.is_valid()) {
                return Err(bad(
                    element,
                    "requantization record: multiplier outside [2^30, 2^31), shift out of range or reserved bytes set",
                ));
            }
        }
        Dtype::I8 | Dtype::I32 => {}
    }
    Ok(())
}

#[cfg(target_endian = "big")]
compile_error!(
    "edge reads little-endian model files in place and supports little-endian targets only"
);

/// A model file embedded with the alignment `Model::parse` needs.
#[repr(C, align(64))]
pub struct AlignedModel<B: ?Sized>(pub B);

/// `include_bytes!` with 64-byte alignment: `static M: &[u8] = edge::include_model!("atto.cnx");`
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        static ALIGNED: &$crate::AlignedModel<[u8]> = &$crate::AlignedModel(*include_bytes!($path));
        &ALIGNED.0
    }};
}
