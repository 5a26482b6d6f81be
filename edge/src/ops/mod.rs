//! One module per operator. Each holds the scalar reference kernel (the specification every
//! optimised kernel is tested against), the packing of its weights where it has any, and tests
//! against an independent naive formula.
//!
//! Naming: `<op>_<dtype>_<isa>`, e.g. `dwconv7x7_f32_scalar`. Activations are NHWC: pixel-major,
//! channels contiguous.

pub mod dwconv7x7;
pub mod dwconv7x7_i8;
pub mod gelu;
pub mod gelu_i8;
pub mod grn;
pub mod grn_f16;
pub mod input;
pub mod layernorm;
pub mod layernorm_i8;
pub mod patch_conv;
pub mod patch_conv_i8;
pub mod pointwise;
pub mod pointwise_i8;
pub mod pool;
pub mod requant;
pub mod residual_i8;

/// A kernel's output rows that need not be contiguous: `rows` rows of `cols` elements,
/// consecutive rows `stride` elements apart (a block of a wider row-major matrix). Made
/// safely from a slice ([`RowsMut::new`]), or by the runtime for each task's block of a
/// matrix whose columns several tasks share (`parallel::for_each_panel`): the view is then
/// the only access to its elements, and no slice ever spans another task's.
pub struct RowsMut<'a, T> {
    ptr: *mut T,
    rows: usize,
    cols: usize,
    stride: usize,
    _rows: core::marker::PhantomData<&'a mut T>,
}

impl<'a, T> RowsMut<'a, T> {
    /// Rows `0..rows` of `data`, each `cols` elements from `i·stride`. Panics if
    /// `cols > stride` or `data` is shorter than `(rows − 1)·stride + cols`.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Self {
        assert!(cols <= stride && (rows == 0 || (rows - 1) * stride + cols <= data.len()));
        RowsMut {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            stride,
            _rows: core::marker::PhantomData,
        }
    }

    /// # Safety
    /// Elements `ptr + i·stride + j` (`i < rows`, `j < cols`, `cols ≤ stride`) are valid for
    /// reads and writes for `'a`, and nothing else accesses them meanwhile.
    pub(crate) unsafe fn from_raw(ptr: *mut T, rows: usize, cols: usize, stride: usize) -> Self {
        RowsMut {
            ptr,
            rows,
            cols,
            stride,
            _rows: core::marker::PhantomData,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements of each row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Elements from one row's start to the next's.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i`'s `cols` elements. Panics if `i ≥ rows`.
    pub fn row(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.rows);
        // SAFETY: row i lies in the view (its invariant), borrowed through `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(i * self.stride), self.cols) }
    }

    /// Row `i` to read. Panics if `i ≥ rows`.
    pub fn row_ref(&self, i: usize) -> &[T] {
        assert!(i < self.rows);
        // SAFETY: as in `row`, shared through `&self`.
        unsafe { core::slice::from_raw_parts(self.ptr.add(i * self.stride), self.cols) }
    }

    /// The rows as one slice, when they are contiguous (`stride == cols`, or one row).
    /// Panics otherwise.
    pub fn contiguous(self) -> &'a mut [T] {
        assert!(
            self.stride == self.cols || self.rows <= 1,
            "rows are not contiguous"
        );
        // SAFETY: rows × cols consecutive elements, all the view's own, for 'a.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.rows * self.cols) }
    }

    /// [`RowsMut::contiguous`], borrowed.
    pub fn contiguous_mut(&mut self) -> &mut [T] {
        assert!(
            self.stride == self.cols || self.rows <= 1,
            "rows are not contiguous"
        );
        // SAFETY: as in `contiguous`, borrowed through `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.rows * self.cols) }
    }

    /// The first element, for kernels that address rows themselves (`i·stride + j`, within
    /// `rows × cols`).
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr
    }
}

impl<T: Copy> RowsMut<'_, T> {
    /// Copies `src` (`rows × cols`, row-major, contiguous) into the rows.
    pub fn copy_from(&mut self, src: &[T]) {
        assert!(src.len() == self.rows * self.cols);
        for (i, row) in src.chunks_exact(self.cols.max(1)).enumerate() {
            self.row(i).copy_from_slice(row);
        }
    }

    /// Copies the rows into `dst` (`rows × cols`, row-major, contiguous).
    pub fn copy_to(&self, dst: &mut [T]) {
        assert!(dst.len() == self.rows * self.cols);
        for (i, row) in dst.chunks_exact_mut(self.cols.max(1)).enumerate() {
            row.copy_from_slice(self.row_ref(i));
        }
    }
}

/// Calls `f(j)` for j = 0, 4, 8, … < `c4` (a multiple of 4), two calls per loop iteration:
/// the elementwise NEON passes' loop, with half the bookkeeping of one vector per iteration.
#[inline(always)]
#[cfg(target_arch = "aarch64")]
pub(crate) fn each_vec4_by2(c4: usize, f: &mut impl FnMut(usize)) {
    let mut j = 0;
    while j + 8 <= c4 {
        f(j);
        f(j + 4);
        j += 8;
    }
    if j < c4 {
        f(j);
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    extern crate std;
    use std::vec::Vec;

    /// A small deterministic generator (xorshift64*) so tests need no dependency.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [-1, 1).
        pub fn f32(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
        pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n).map(|_| self.f32() * scale).collect()
        }
        /// `n` uniformly random int8 values.
        pub fn bytes(&mut self, n: usize) -> Vec<i8> {
            (0..n).map(|_| self.next_u64() as i8).collect()
        }
        /// The int8 elementwise kernels' test shapes `(pixels, channels)`: the Atto extremes,
        /// tiny and odd ones, then 30 random ones (pixels < 21, channels < 71). Used by the
        /// aarch64-only NEON tests.
        #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
        pub fn pixel_channel_shapes(&mut self) -> Vec<(usize, usize)> {
            let mut shapes = std::vec![(1, 1), (3136, 40), (49, 320), (5, 13)];
            for _ in 0..30 {
                let p = 1 + self.next_u64() as usize % 20;
                shapes.push((p, 1 + self.next_u64() as usize % 70));
            }
            shapes
        }
    }

    /// max |a-b| / max(1, |b|) over two slices of equal length.
    pub fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0, f32::max)
    }
}
