//! Writing model files (feature `alloc`; used by `quant`). Takes tensors in PyTorch's logical
//! layouts and packs each with its kernel module's packing function, so the file holds exactly
//! what the kernels read.

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::{Arch, DOWN_PATCH, MLP_RATIO, STEM_PATCH};
use crate::format::{self, entry, field, Dtype, Role, TensorId};
use crate::ops::{dwconv7x7, patch_conv, pointwise};
use crate::Error;

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
    }
}

/// Element count of a logical shape.
pub fn logical_len(shape: &([usize; 4], usize)) -> usize {
    shape.0[..shape.1].iter().product()
}

/// Packs one logical tensor into its stored layout.
pub fn pack(arch: &Arch, id: TensorId, logical: &[f32]) -> Vec<f32> {
    use format::Layout::*;
    let (shape, _) = logical_shape(arch, id);
    let packed = format::packed_shape(arch, id);
    let mut out = vec![0f32; format::shape_elems(&packed) as usize];
    match id.role.layout() {
        Vector => out.copy_from_slice(logical),
        Hwio => patch_conv::pack_hwio(logical, shape[0], shape[1], shape[2], &mut out),
        DepthwiseHwc => dwconv7x7::pack_dw(logical, shape[0], &mut out),
        Panels8 => pointwise::pack_panels8(logical, shape[0], shape[1], &mut out),
    }
    out
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Builds a sealed f32 model file. `get` returns each tensor in its logical layout; a tensor of
/// the wrong length is refused with [`Error::TensorShape`] (shapes in logical order).
pub fn build<'w>(
    arch: &Arch,
    mut get: impl FnMut(TensorId) -> &'w [f32],
) -> Result<Vec<u8>, Error> {
    arch.validate()?;
    let count = format::tensor_count(arch);
    let align = |n: usize| n.div_ceil(format::TENSOR_ALIGN) * format::TENSOR_ALIGN;
    let payload_offset = align(format::HEADER_LEN + count * format::ENTRY_LEN);
    let mut file = vec![0u8; payload_offset];
    let h = &mut file[..format::HEADER_LEN];
    h[field::MAGIC..field::MAGIC + 8].copy_from_slice(&format::MAGIC);
    put_u32(h, field::VERSION, format::VERSION);
    put_u32(h, field::HEADER_LEN, format::HEADER_LEN as u32);
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

    for (i, id) in format::tensor_ids(arch).enumerate() {
        let shape = logical_shape(arch, id);
        let data = get(id);
        if data.len() != logical_len(&shape) {
            let as_u32 = |d: [usize; 4]| d.map(|v| v as u32);
            let mut found = [0u32; 4];
            found[0] = data.len() as u32;
            return Err(Error::TensorShape {
                index: i as u32,
                role: id.role,
                expected: as_u32(shape.0),
                found,
            });
        }
        let packed = pack(arch, id, data);
        let offset = align(file.len());
        file.resize(offset, 0);
        file.extend(packed.iter().flat_map(|v| v.to_le_bytes()));
        let pshape = format::packed_shape(arch, id);
        let e = &mut file[format::HEADER_LEN + i * format::ENTRY_LEN..][..format::ENTRY_LEN];
        e[entry::ROLE..entry::ROLE + 2].copy_from_slice(&(id.role as u16).to_le_bytes());
        e[entry::STAGE..entry::STAGE + 2].copy_from_slice(&id.stage.to_le_bytes());
        put_u32(e, entry::BLOCK, id.block);
        e[entry::DTYPE] = Dtype::F32 as u8;
        e[entry::LAYOUT] = id.role.layout() as u8;
        e[entry::NDIM] = format::shape_ndim(&pshape) as u8;
        for (d, &v) in pshape.iter().enumerate() {
            put_u32(e, entry::SHAPE + 4 * d, v);
        }
        put_u32(e, entry::QUANT, format::NO_QUANT);
        put_u64(e, entry::OFFSET, offset as u64);
        put_u64(e, entry::NBYTES, (packed.len() * 4) as u64);
    }
    let len = file.len();
    put_u64(&mut file, field::PAYLOAD_LEN, (len - payload_offset) as u64);
    put_u64(&mut file, field::FILE_LEN, len as u64);
    format::seal(&mut file);
    Ok(file)
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
