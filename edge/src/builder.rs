//! Writing model files (feature `alloc`; used by `quant`). Takes tensors in PyTorch's logical
//! layouts and packs each with its kernel module's packing function, so the file holds exactly
//! what the kernels read.

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::{Arch, DOWN_PATCH, MLP_RATIO, STEM_PATCH};
use crate::format::{self, entry, field, Dtype, Layout, Precision, Role, TensorId};
use crate::ops::requant::Requant;
use crate::ops::{dwconv7x7, patch_conv, pointwise, pointwise_i8};
use crate::Error;
use half::f16;

/// PyTorch (timm) logical shape of a tensor: conv weights OIHW, 1×1 convs and Linear `[out][in]`.
pub fn logical_shape(arch: &Arch, id: TensorId) -> ([usize; 4], usize) {
    use Role::*;
    let s = id.stage as usize;
    let c = arch.dims[s];
    let prev = if s == 0 {
        arch.in_chans
    } else {
        arch.dims[s - 1]
    };
    let hdim = MLP_RATIO * c;
    let v = |n| ([n, 0, 0, 0], 1);
    match id.role {
        StemConvW => ([arch.dims[0], arch.in_chans, STEM_PATCH, STEM_PATCH], 4),
        StemConvB | StemNormW | StemNormB => v(arch.dims[0]),
        DownNormW | DownNormB => v(prev),
        DownConvW => ([c, prev, DOWN_PATCH, DOWN_PATCH], 4),
        DownConvB | DwConvB | NormW | NormB | Fc2B => v(c),
        DwConvW => ([c, 1, dwconv7x7::K, dwconv7x7::K], 4),
        Fc1W => ([hdim, c, 0, 0], 2),
        Fc1B | GrnW | GrnB => v(hdim),
        Fc2W => ([c, hdim, 0, 0], 2),
        HeadNormW | HeadNormB => v(arch.last_dim()),
        HeadFcW => ([arch.num_classes, arch.last_dim(), 0, 0], 2),
        HeadFcB => v(arch.num_classes),
        // int8-only roles are stored as they are given.
        _ => {
            let sh = format::packed_shape(arch, Precision::Int8, id);
            (sh.map(|d| d as usize), format::shape_ndim(&sh))
        }
    }
}

/// Element count of a logical shape.
pub fn logical_len(shape: &([usize; 4], usize)) -> usize {
    shape.0[..shape.1].iter().product()
}

/// Packs one logical f32 tensor into its stored layout.
pub fn pack(arch: &Arch, id: TensorId, logical: &[f32]) -> Vec<f32> {
    let (shape, _) = logical_shape(arch, id);
    let packed = format::packed_shape(arch, Precision::F32, id);
    let mut out = vec![0f32; format::shape_elems(&packed) as usize];
    match id.role.layout(Precision::F32) {
        Layout::Hwio => patch_conv::pack_hwio(logical, shape[0], shape[1], shape[2], &mut out),
        Layout::DepthwiseHwc => dwconv7x7::pack_dw(logical, shape[0], &mut out),
        Layout::Panels8 => pointwise::pack_panels8(logical, shape[0], shape[1], &mut out),
        _ => out.copy_from_slice(logical),
    }
    out
}

/// The inverse of [`pack`]: a stored f32 tensor back in its logical (PyTorch) layout; `None`
/// for tensors of 2^24 elements or more (beyond every size up to ConvNeXt V2 base).
pub fn unpack(arch: &Arch, id: TensorId, packed: &[f32]) -> Option<Vec<f32>> {
    let n = logical_len(&logical_shape(arch, id));
    if n >= 1 << 24 {
        return None;
    }
    // Pack the (1-based) logical indices, exact as f32 below 2^24: where index i + 1 lands is
    // where element i is stored (padding stays 0).
    let index: Vec<f32> = (1..=n).map(|i| i as f32).collect();
    let mut out = vec![0f32; n];
    for (&pos, &v) in pack(arch, id, &index).iter().zip(packed) {
        if pos > 0.0 {
            out[pos as usize - 1] = v;
        }
    }
    Some(out)
}

/// One tensor of an int8 model file, in its logical layout: GEMM-shaped weights (both
/// pointwise convs, the classifier, and the patch convs) row-major `[N][K]`, patch convs' K
/// ordered `(ky, kx, ci)`; depthwise weights `[C][7][7]` (timm's); everything else as stored
/// (see `edge/FORMAT.md`).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// f32 values.
    F32(Vec<f32>),
    /// fp16 values.
    F16(Vec<f16>),
    /// int8 values.
    I8(Vec<i8>),
    /// int32 values.
    I32(Vec<i32>),
    /// Requantization records.
    Requant(Vec<Requant>),
}

impl TensorData {
    fn dtype(&self) -> Dtype {
        match self {
            TensorData::F32(_) => Dtype::F32,
            TensorData::F16(_) => Dtype::F16,
            TensorData::I8(_) => Dtype::I8,
            TensorData::I32(_) => Dtype::I32,
            TensorData::Requant(_) => Dtype::Requant,
        }
    }

    fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::Requant(v) => v.len(),
        }
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Requant(v) => v
                .iter()
                .flat_map(|r| {
                    let mut b = [0u8; 8];
                    b[..4].copy_from_slice(&r.multiplier.to_le_bytes());
                    b[4] = r.pre_shift;
                    b[5] = r.post_shift;
                    b
                })
                .collect(),
        }
    }
}

/// Logical element count of an int8 model's tensor.
pub fn logical_len_i8(arch: &Arch, id: TensorId) -> usize {
    if let Some((n, k)) = format::gemm_dims(arch, id) {
        return n * k;
    }
    format::shape_elems(&format::packed_shape(arch, Precision::Int8, id)) as usize
}

fn pack_i8(arch: &Arch, id: TensorId, data: TensorData) -> TensorData {
    let packed_len = format::shape_elems(&format::packed_shape(arch, Precision::Int8, id)) as usize;
    match (id.role.layout(Precision::Int8), data) {
        (Layout::PanelsC4, TensorData::I8(w)) => {
            let (n, k) = format::gemm_dims(arch, id).unwrap_or((0, 0));
            let mut out = vec![0i8; packed_len];
            pointwise_i8::pack_c4(&w, n, k, &mut out);
            TensorData::I8(out)
        }
        (Layout::DepthwiseHwc, TensorData::I8(w)) => {
            let mut out = vec![0i8; packed_len];
            dwconv7x7::pack_dw(&w, arch.dims[id.stage as usize], &mut out);
            TensorData::I8(out)
        }
        (_, d) => d,
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn align(n: usize) -> usize {
    n.div_ceil(format::TENSOR_ALIGN) * format::TENSOR_ALIGN
}

/// Header and empty table of a file of `count` tensors.
fn start_file(arch: &Arch, p: Precision) -> Vec<u8> {
    let count = format::tensor_count(arch, p);
    let payload_offset = align(format::HEADER_LEN + count * format::ENTRY_LEN);
    let mut file = vec![0u8; payload_offset];
    let h = &mut file[..format::HEADER_LEN];
    h[field::MAGIC..field::MAGIC + 8].copy_from_slice(&format::MAGIC);
    put_u32(h, field::VERSION, format::VERSION);
    put_u32(h, field::HEADER_LEN, format::HEADER_LEN as u32);
    put_u32(h, field::FLAGS, p.flags());
    put_u32(h, field::IN_CHANS, arch.in_chans as u32);
    put_u32(h, field::INPUT_H, arch.input_h as u32);
    put_u32(h, field::INPUT_W, arch.input_w as u32);
    put_u32(h, field::NUM_CLASSES, arch.num_classes as u32);
    put_u32(h, field::LN_EPS, arch.ln_eps.to_bits());
    put_u32(h, field::GRN_EPS, arch.grn_eps.to_bits());
    put_u32(h, field::NUM_STAGES, arch.num_stages as u32);
    for i in 0..arch.num_stages {
        put_u32(h, field::DEPTHS + 4 * i, arch.depths[i] as u32);
        put_u32(h, field::DIMS + 4 * i, arch.dims[i] as u32);
    }
    put_u32(h, field::TENSOR_COUNT, count as u32);
    put_u64(h, field::TABLE_OFFSET, format::HEADER_LEN as u64);
    put_u64(h, field::PAYLOAD_OFFSET, payload_offset as u64);
    file
}

/// Appends tensor `i` (already packed, little-endian) and fills its table entry.
fn push_tensor(
    file: &mut Vec<u8>,
    arch: &Arch,
    p: Precision,
    i: usize,
    id: TensorId,
    bytes: &[u8],
) {
    let offset = align(file.len());
    file.resize(offset, 0);
    file.extend_from_slice(bytes);
    let pshape = format::packed_shape(arch, p, id);
    let e = &mut file[format::HEADER_LEN + i * format::ENTRY_LEN..][..format::ENTRY_LEN];
    e[entry::ROLE..entry::ROLE + 2].copy_from_slice(&(id.role as u16).to_le_bytes());
    e[entry::STAGE..entry::STAGE + 2].copy_from_slice(&id.stage.to_le_bytes());
    put_u32(e, entry::BLOCK, id.block);
    e[entry::DTYPE] = id.role.dtype(p) as u8;
    e[entry::LAYOUT] = id.role.layout(p) as u8;
    e[entry::NDIM] = format::shape_ndim(&pshape) as u8;
    for (d, &v) in pshape.iter().enumerate() {
        put_u32(e, entry::SHAPE + 4 * d, v);
    }
    put_u32(e, entry::QUANT, format::NO_QUANT);
    put_u64(e, entry::OFFSET, offset as u64);
    put_u64(e, entry::NBYTES, bytes.len() as u64);
}

/// Fills in the lengths and seals.
fn finish_file(mut file: Vec<u8>) -> Vec<u8> {
    let len = file.len();
    let payload_offset = u64::from_le_bytes(
        file[field::PAYLOAD_OFFSET..field::PAYLOAD_OFFSET + 8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    put_u64(&mut file, field::PAYLOAD_LEN, len as u64 - payload_offset);
    put_u64(&mut file, field::FILE_LEN, len as u64);
    format::seal(&mut file);
    file
}

fn shape_error(index: usize, id: TensorId, expected: ([usize; 4], usize), got: usize) -> Error {
    let mut found = [0u32; 4];
    found[0] = got as u32;
    Error::TensorShape {
        index: index as u32,
        role: id.role,
        expected: expected.0.map(|v| v as u32),
        found,
    }
}

/// Builds a sealed f32 model file. `get` returns each tensor in its logical layout; a tensor of
/// the wrong length is refused with [`Error::TensorShape`] (shapes in logical order).
pub fn build<'w>(
    arch: &Arch,
    mut get: impl FnMut(TensorId) -> &'w [f32],
) -> Result<Vec<u8>, Error> {
    arch.validate()?;
    let p = Precision::F32;
    let mut file = start_file(arch, p);
    for (i, id) in format::tensor_ids(arch, p).enumerate() {
        let shape = logical_shape(arch, id);
        let data = get(id);
        if data.len() != logical_len(&shape) {
            return Err(shape_error(i, id, shape, data.len()));
        }
        let packed = pack(arch, id, data);
        let bytes: Vec<u8> = packed.iter().flat_map(|v| v.to_le_bytes()).collect();
        push_tensor(&mut file, arch, p, i, id, &bytes);
    }
    Ok(finish_file(file))
}

/// Builds a sealed int8 model file. `get` returns each tensor of
/// [`format::tensor_ids`]`(arch, Precision::Int8)` in its logical layout ([`TensorData`]); a
/// tensor of the wrong dtype or length is refused ([`Error::UnsupportedDtype`],
/// [`Error::TensorShape`]). Values are not checked here: [`crate::Model::parse`] does that.
pub fn build_int8(
    arch: &Arch,
    mut get: impl FnMut(TensorId) -> TensorData,
) -> Result<Vec<u8>, Error> {
    arch.validate()?;
    let p = Precision::Int8;
    let mut file = start_file(arch, p);
    for (i, id) in format::tensor_ids(arch, p).enumerate() {
        let data = get(id);
        if data.dtype() != id.role.dtype(p) {
            return Err(Error::UnsupportedDtype {
                index: i as u32,
                tag: data.dtype() as u8,
            });
        }
        let want = logical_len_i8(arch, id);
        if data.len() != want {
            return Err(shape_error(i, id, ([want, 0, 0, 0], 1), data.len()));
        }
        let bytes = pack_i8(arch, id, data).to_le_bytes();
        push_tensor(&mut file, arch, p, i, id, &bytes);
    }
    Ok(finish_file(file))
}

/// An owned byte buffer that starts on a 16-byte boundary, as [`crate::Model::parse`] needs
/// (a `Vec<u8>` from the allocator promises only 1).
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into an aligned buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }

    /// The bytes, mutably (tests that damage files).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u128, u8>(&mut self.words)[..self.len]
    }
}
