//! GGUF writer (version 3, little-endian): builds small models for tests, and files for tools.
//!
//! Shapes are given row-major, as everywhere in the engine, and written innermost-first as GGUF
//! wants. Tensor data is padded to the alignment (32 unless [`GgufWriter::set_alignment`]).

use super::gguf::{self, MetaValue, Metadata};
use crate::DType;
use crate::error::{ForgeError, Result};

#[derive(Debug)]
pub struct GgufWriter {
    alignment: usize,
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug)]
struct PendingTensor {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { alignment: gguf::DEFAULT_ALIGNMENT, metadata: Metadata::new(), tensors: Vec::new() }
    }

    /// Pads tensor data to `a` and records it as `general.alignment` (u32).
    ///
    /// Panics if `a` is not a power of two ≤ 1 MiB (a bug in the caller). A `general.alignment`
    /// set later through [`GgufWriter::metadata`] is written as given but does not change the
    /// padding; tests use that to build bad files.
    pub fn set_alignment(&mut self, a: usize) {
        assert!(
            a.is_power_of_two() && a as u64 <= gguf::limits::ALIGNMENT,
            "alignment {a} is not a power of two ≤ 1 MiB"
        );
        self.alignment = a;
        self.metadata.insert("general.alignment", MetaValue::U32(a as u32));
    }

    /// Adds (or replaces) a metadata entry; entries are written in insertion order.
    pub fn metadata(&mut self, key: impl Into<String>, v: MetaValue) -> &mut Self {
        self.metadata.insert(key, v);
        self
    }

    /// Adds a tensor with a row-major `shape`; `bytes` must hold exactly its data.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        bytes: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        if shape.is_empty() || shape.len() > gguf::limits::MAX_DIMS as usize || shape.contains(&0) {
            return Err(ForgeError::BadShape {
                what: format!("tensor `{name}`: GGUF shapes have 1 to 4 non-zero dimensions, got {shape:?}"),
            });
        }
        let need = gguf::tensor_bytes(dtype, shape)?;
        if bytes.len() != need {
            return Err(ForgeError::BadShape {
                what: format!("tensor `{name}`: {} {shape:?} takes {need} bytes, got {}", dtype.name(), bytes.len()),
            });
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(ForgeError::InvalidArgument { what: format!("tensor `{name}` added twice") });
        }
        self.tensors.push(PendingTensor { name, dtype, shape: shape.to_vec(), bytes });
        Ok(self)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(gguf::MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, v) in self.metadata.iter() {
            put_str(&mut out, key);
            out.extend_from_slice(&type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for &d in t.shape.iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&t.dtype.ggml_type().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + t.bytes.len()).next_multiple_of(self.alignment);
        }
        for t in &self.tensors {
            out.resize(out.len().next_multiple_of(self.alignment), 0);
            out.extend_from_slice(&t.bytes);
        }
        out
    }

    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).map_err(|e| ForgeError::io(path, e))
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => gguf::T_U8,
        MetaValue::I8(_) => gguf::T_I8,
        MetaValue::U16(_) => gguf::T_U16,
        MetaValue::I16(_) => gguf::T_I16,
        MetaValue::U32(_) => gguf::T_U32,
        MetaValue::I32(_) => gguf::T_I32,
        MetaValue::U64(_) => gguf::T_U64,
        MetaValue::I64(_) => gguf::T_I64,
        MetaValue::F32(_) => gguf::T_F32,
        MetaValue::F64(_) => gguf::T_F64,
        MetaValue::Bool(_) => gguf::T_BOOL,
        MetaValue::Str(_) => gguf::T_STRING,
        MetaValue::Array(_) => gguf::T_ARRAY,
    }
}

/// Writes the value's payload (no type id). An array's element type is its first element's
/// (u8 when empty); GGUF arrays are homogeneous, so mixed arrays are written as the first type
/// says and will not read back.
fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::Str(s) => put_str(out, s),
        MetaValue::Array(a) => {
            out.extend_from_slice(&a.first().map_or(gguf::T_U8, type_id).to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for e in a {
                put_value(out, e);
            }
        }
    }
}
