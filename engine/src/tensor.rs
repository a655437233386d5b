//! Tensors in host memory: weights straight out of a (memory-mapped) model file, and the inputs
//! and results of graph executions.

use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::formats::FileBytes;

/// A tensor in host memory, in its stored format. Cloning is cheap (the bytes are shared).
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub dtype: DType,
    /// Row-major; the last dimension is contiguous and holds whole blocks.
    pub shape: Vec<usize>,
    bytes: FileBytes,
    offset: usize,
    len: usize,
}

impl HostTensor {
    /// A view of `len` bytes at `offset` in `bytes`, checked against `dtype` and `shape`.
    pub fn from_file(dtype: DType, shape: Vec<usize>, bytes: FileBytes, offset: usize, len: usize) -> Result<Self> {
        let want = Self::byte_len(dtype, &shape)?;
        if want != len || offset.checked_add(len).is_none_or(|end| end > bytes.len()) {
            return Err(ForgeError::BadShape {
                what: format!("{dtype} tensor {shape:?} needs {want} bytes, has {len} at offset {offset} of {}", bytes.len()),
            });
        }
        Ok(HostTensor { dtype, shape, bytes, offset, len })
    }

    pub fn from_bytes(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self> {
        let len = data.len();
        Self::from_file(dtype, shape, FileBytes::from_vec(data), 0, len)
    }

    pub fn from_f32(shape: Vec<usize>, data: &[f32]) -> Result<Self> {
        Self::from_bytes(DType::F32, shape, bytemuck::cast_slice(data).to_vec())
    }

    pub fn from_u32(shape: Vec<usize>, data: &[u32]) -> Result<Self> {
        Self::from_bytes(DType::U32, shape, bytemuck::cast_slice(data).to_vec())
    }

    /// Bytes a tensor of this type and shape takes, overflow-checked.
    pub fn byte_len(dtype: DType, shape: &[usize]) -> Result<usize> {
        Ok(dtype.tensor_bytes(shape)?)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.offset..self.offset + self.len]
    }

    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32, dequantizing if needed.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let (rows, cols) = crate::graph::rows_cols(&self.shape);
        let mut out = vec![0.0f32; rows * cols];
        if self.dtype == DType::U32 {
            for (o, v) in out.iter_mut().zip(self.to_u32_vec()) {
                *o = v as f32;
            }
            return out;
        }
        let rb = self.dtype.row_bytes(cols).expect("shape checked at construction");
        for (r, dst) in out.chunks_mut(cols.max(1)).enumerate() {
            crate::quant::dequantize_row(self.dtype, &self.as_bytes()[r * rb..(r + 1) * rb], dst);
        }
        out
    }

    /// The values of a `U32` tensor.
    pub fn to_u32_vec(&self) -> Vec<u32> {
        self.u32s().collect()
    }

    /// The values of a `U32` tensor, read in place.
    pub fn u32s(&self) -> impl Iterator<Item = u32> + '_ {
        assert_eq!(self.dtype, DType::U32, "u32s on a {} tensor", self.dtype);
        self.as_bytes().chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}
