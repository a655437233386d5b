//! GGUF reader (versions 2 and 3, little-endian), hardened against hostile files.
//!
//! Layout (ggml `docs/gguf.md`): magic `GGUF`, u32 version, u64 tensor count, u64 metadata
//! count, the metadata key/values, the tensor infos (name, u32 n_dims, n_dims × u64 `ne`
//! innermost-first, u32 ggml type, u64 offset), padding to `general.alignment` (default 32),
//! then the tensor data; each tensor's offset is relative to the start of the data.
//!
//! **Architecture Invariant:** shapes leave this module row-major (outermost first), so `ne` is
//! reversed here: SmolLM2's `token_embd.weight` is `[49152, 576]`.
//!
//! Every count, length and offset read from the file is checked (overflow-checked arithmetic,
//! limits below, and against the bytes that remain) before anything is allocated for it; a bad
//! file gives a typed error, never a panic.

mod metadata;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use metadata::{MetaValue, Metadata};

use super::FileBytes;
use crate::DType;
use crate::error::{ForgeError, Result};

const FORMAT: &str = "GGUF";
pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
pub(crate) const DEFAULT_ALIGNMENT: usize = 32;

/// Limits on what a file may ask of the parser.
pub mod limits {
    /// A metadata string or tensor name.
    pub const STRING: u64 = 1 << 20;
    /// A string value under a `tokenizer.` key (chat templates, embedded tokenizer.json).
    pub const TOKENIZER_STRING: u64 = 16 << 20;
    /// A metadata key (the GGUF spec's own limit).
    pub const KEY: u64 = 65_535;
    /// Elements in one metadata array.
    pub const ARRAY: u64 = 16 << 20;
    /// Elements in all metadata arrays together (bounds memory: each value takes 32 bytes).
    pub const ARRAY_TOTAL: u64 = 32 << 20;
    /// Nesting depth of arrays (an array of arrays is depth 2).
    pub const ARRAY_DEPTH: u32 = 3;
    pub const METADATA_ENTRIES: u64 = 1 << 20;
    pub const TENSORS: u64 = 1 << 20;
    pub const MAX_DIMS: u32 = 4;
    pub const ALIGNMENT: u64 = 1 << 20;
}

// GGUF metadata value type ids.
pub(crate) const T_U8: u32 = 0;
pub(crate) const T_I8: u32 = 1;
pub(crate) const T_U16: u32 = 2;
pub(crate) const T_I16: u32 = 3;
pub(crate) const T_U32: u32 = 4;
pub(crate) const T_I32: u32 = 5;
pub(crate) const T_F32: u32 = 6;
pub(crate) const T_BOOL: u32 = 7;
pub(crate) const T_STRING: u32 = 8;
pub(crate) const T_ARRAY: u32 = 9;
pub(crate) const T_U64: u32 = 10;
pub(crate) const T_I64: u32 = 11;
pub(crate) const T_F64: u32 = 12;

/// One tensor: where its bytes are and how to read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    /// Row-major: the last dimension is contiguous and a whole number of `dtype` blocks.
    pub shape: Vec<usize>,
    /// Absolute byte offset in the file (a multiple of the file's alignment).
    pub offset: usize,
    pub n_bytes: usize,
}

/// A parsed GGUF file. The tensor data stays in the (mapped) file.
#[derive(Debug)]
pub struct GgufFile {
    pub version: u32,
    pub alignment: usize,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    bytes: FileBytes,
    index: HashMap<String, usize>,
}

impl GgufFile {
    pub fn open(path: &std::path::Path) -> Result<GgufFile> {
        Self::from_bytes(FileBytes::open(path)?)
    }

    pub fn from_bytes(bytes: FileBytes) -> Result<GgufFile> {
        let mut r = Reader { b: &bytes, pos: 0, array_budget: limits::ARRAY_TOTAL };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            return Err(ForgeError::BadMagic {
                format: FORMAT,
                what: format!("the file starts with {magic:02x?}, not \"GGUF\""),
            });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(ForgeError::UnsupportedVersion {
                format: FORMAT,
                version: version.into(),
                supported: "2 and 3, little-endian",
            });
        }
        let n_tensors = r.count("tensor count", limits::TENSORS, 8 + 4 + 8 + 4 + 8)?;
        let n_meta = r.count("metadata entry count", limits::METADATA_ENTRIES, 8 + 4 + 1)?;

        let mut metadata = Metadata::new();
        for _ in 0..n_meta {
            let key = r.string("metadata key", limits::KEY)?;
            if metadata.contains(&key) {
                return Err(malformed(format!("metadata key `{key}` appears twice")));
            }
            let ty = r.u32("metadata value type")?;
            let value = r.value(&key, ty, 1)?;
            metadata.insert(key, value);
        }

        let alignment = match metadata.opt_u64("general.alignment")? {
            None => DEFAULT_ALIGNMENT,
            Some(a) if a > limits::ALIGNMENT => {
                return Err(too_large("general.alignment", a, limits::ALIGNMENT));
            }
            Some(a) if !a.is_power_of_two() => {
                return Err(malformed(format!("general.alignment = {a} is not a power of two")));
            }
            Some(a) => a as usize, // ≤ 1 MiB
        };

        let mut raw = Vec::with_capacity(n_tensors);
        let mut index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let t = r.tensor_info()?;
            if index.insert(t.0.clone(), i).is_some() {
                return Err(malformed(format!("tensor `{}` appears twice", t.0)));
            }
            raw.push(t);
        }

        let data_start = r.pos.checked_next_multiple_of(alignment).ok_or_else(|| overflow("data start"))?;
        let mut tensors = Vec::with_capacity(n_tensors);
        for (name, dtype, shape, n_bytes, rel) in raw {
            if !rel.is_multiple_of(alignment as u64) {
                return Err(malformed(format!(
                    "tensor `{name}` data offset {rel} is not a multiple of the alignment {alignment}"
                )));
            }
            let offset = usize::try_from(rel)
                .ok()
                .and_then(|rel| data_start.checked_add(rel))
                .ok_or_else(|| overflow(&format!("tensor `{name}` offset")))?;
            let end = offset.checked_add(n_bytes).ok_or_else(|| overflow(&format!("tensor `{name}` end")))?;
            if end > bytes.len() {
                return Err(ForgeError::Truncated {
                    format: FORMAT,
                    what: format!("tensor `{name}` data"),
                    need: end as u64,
                    file_len: bytes.len() as u64,
                });
            }
            tensors.push(TensorInfo { name, dtype, shape, offset, n_bytes });
        }
        check_no_overlap(&tensors)?;

        Ok(GgufFile { version, alignment, metadata, tensors, bytes, index })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t`, which must come from this file (checked at parse time to lie inside it).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.bytes[t.offset..t.offset + t.n_bytes]
    }

    pub fn bytes(&self) -> &FileBytes {
        &self.bytes
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str> {
        self.metadata.str("general.architecture")
    }
}

fn check_no_overlap(tensors: &[TensorInfo]) -> Result<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        if w[0].offset + w[0].n_bytes > w[1].offset {
            return Err(malformed(format!("the data of tensors `{}` and `{}` overlap", w[0].name, w[1].name)));
        }
    }
    Ok(())
}

/// A tensor info as read: name, dtype, row-major shape, byte size, offset relative to the data.
type RawTensor = (String, DType, Vec<usize>, usize, u64);

/// A cursor over the file that reports how far it needed to read when the file ends early.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    /// Metadata array elements still allowed (limits::ARRAY_TOTAL).
    array_budget: u64,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn truncated(&self, what: &str, n: u64) -> ForgeError {
        ForgeError::Truncated {
            format: FORMAT,
            what: what.to_string(),
            need: (self.pos as u64).saturating_add(n),
            file_len: self.b.len() as u64,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what, n as u64));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        Ok(s.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u64 count of items each at least `min_size` bytes: checked against `limit` and against
    /// what is left of the file, so that it is safe to allocate for.
    fn count(&mut self, what: &str, limit: u64, min_size: u64) -> Result<usize> {
        let n = self.u64(what)?;
        if n > limit {
            return Err(too_large(what, n, limit));
        }
        let need = n * min_size; // ≤ 2^24 × 13, cannot overflow
        if need > self.remaining() as u64 {
            return Err(self.truncated(&format!("{what} {n}"), need));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str, limit: u64) -> Result<String> {
        let len = self.u64(what)?;
        if len > limit {
            return Err(too_large(&format!("length of {what}"), len, limit));
        }
        if len > self.remaining() as u64 {
            return Err(self.truncated(what, len));
        }
        let s = self.take(len as usize, what)?;
        String::from_utf8(s.to_vec()).map_err(|e| malformed(format!("{what} is not UTF-8 ({e})")))
    }

    /// A metadata value of GGUF type `ty` under `key`, at array nesting `depth` (1 at top level).
    fn value(&mut self, key: &str, ty: u32, depth: u32) -> Result<MetaValue> {
        let what = || format!("metadata `{key}`");
        Ok(match ty {
            T_U8 => MetaValue::U8(self.array::<1>(&what())?[0]),
            T_I8 => MetaValue::I8(self.array::<1>(&what())?[0] as i8),
            T_U16 => MetaValue::U16(u16::from_le_bytes(self.array(&what())?)),
            T_I16 => MetaValue::I16(i16::from_le_bytes(self.array(&what())?)),
            T_U32 => MetaValue::U32(u32::from_le_bytes(self.array(&what())?)),
            T_I32 => MetaValue::I32(i32::from_le_bytes(self.array(&what())?)),
            T_U64 => MetaValue::U64(u64::from_le_bytes(self.array(&what())?)),
            T_I64 => MetaValue::I64(i64::from_le_bytes(self.array(&what())?)),
            T_F32 => MetaValue::F32(f32::from_le_bytes(self.array(&what())?)),
            T_F64 => MetaValue::F64(f64::from_le_bytes(self.array(&what())?)),
            T_BOOL => match self.array::<1>(&what())?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(malformed(format!("metadata `{key}`: bool byte {b} is neither 0 nor 1"))),
            },
            T_STRING => {
                // Array elements (vocabulary entries) get the ordinary limit.
                let limit =
                    if depth == 1 && key.starts_with("tokenizer.") { limits::TOKENIZER_STRING } else { limits::STRING };
                MetaValue::Str(self.string(&format!("metadata `{key}` string"), limit)?)
            }
            T_ARRAY => {
                if depth >= limits::ARRAY_DEPTH {
                    return Err(too_large(
                        &format!("metadata `{key}` array nesting"),
                        u64::from(depth) + 1,
                        limits::ARRAY_DEPTH.into(),
                    ));
                }
                let elem_ty = self.u32(&what())?;
                let min_size = match elem_ty {
                    T_U8 | T_I8 | T_BOOL => 1,
                    T_U16 | T_I16 => 2,
                    T_U32 | T_I32 | T_F32 => 4,
                    T_U64 | T_I64 | T_F64 | T_STRING => 8,
                    T_ARRAY => 12,
                    t => return Err(malformed(format!("metadata `{key}`: unknown array element type {t}"))),
                };
                let n = self.count(&format!("metadata `{key}` array length"), limits::ARRAY, min_size)?;
                if n as u64 > self.array_budget {
                    return Err(too_large(
                        "metadata array elements in all",
                        limits::ARRAY_TOTAL - self.array_budget + n as u64,
                        limits::ARRAY_TOTAL,
                    ));
                }
                self.array_budget -= n as u64;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(key, elem_ty, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            t => return Err(malformed(format!("metadata `{key}`: unknown value type {t}"))),
        })
    }

    fn tensor_info(&mut self) -> Result<RawTensor> {
        let name = self.string("tensor name", limits::STRING)?;
        let n_dims = self.u32(&format!("tensor `{name}` n_dims"))?;
        if !(1..=limits::MAX_DIMS).contains(&n_dims) {
            return Err(malformed(format!("tensor `{name}` has {n_dims} dimensions (1 to 4 are allowed)")));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = self.u64(&format!("tensor `{name}` dimensions"))?;
            if d == 0 {
                return Err(ForgeError::BadShape { what: format!("tensor `{name}` has a dimension of size 0") });
            }
            let d = usize::try_from(d)
                .map_err(|_| too_large(&format!("tensor `{name}` dimension"), d, usize::MAX as u64))?;
            shape.push(d);
        }
        shape.reverse(); // GGUF `ne` is innermost-first; the engine is row-major
        let type_id = self.u32(&format!("tensor `{name}` type"))?;
        let rel = self.u64(&format!("tensor `{name}` offset"))?;
        let dtype = DType::from_ggml_type(type_id).ok_or_else(|| ForgeError::UnsupportedDType {
            name: name.clone(),
            type_name: format!("{} (ggml type {type_id})", ggml_type_name(type_id)),
        })?;
        let n_bytes = tensor_bytes(dtype, &shape).map_err(|e| match e {
            ForgeError::BadShape { what } => ForgeError::BadShape { what: format!("tensor `{name}`: {what}") },
            e => e,
        })?;
        Ok((name, dtype, shape, n_bytes, rel))
    }
}

/// Bytes of a row-major tensor: whole-block rows, overflow-checked.
pub(crate) fn tensor_bytes(dtype: DType, shape: &[usize]) -> Result<usize> {
    let (&row, outer) = shape.split_last().ok_or_else(|| ForgeError::BadShape { what: "empty shape".into() })?;
    outer
        .iter()
        .try_fold(dtype.row_bytes(row)?, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ForgeError::BadShape { what: format!("{shape:?} × {} overflows", dtype.name()) })
}

/// ggml's name for a type id, for messages about types this engine does not load.
pub fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "f32",
        "f16",
        "q4_0",
        "q4_1",
        "q4_2 (removed)",
        "q4_3 (removed)",
        "q5_0",
        "q5_1",
        "q8_0",
        "q8_1",
        "q2_K",
        "q3_K",
        "q4_K",
        "q5_K",
        "q6_K",
        "q8_K",
        "iq2_xxs",
        "iq2_xs",
        "iq3_xxs",
        "iq1_s",
        "iq4_nl",
        "iq3_s",
        "iq2_s",
        "iq4_xs",
        "i8",
        "i16",
        "i32",
        "i64",
        "f64",
        "iq1_m",
        "bf16",
        "q4_0_4_4 (removed)",
        "q4_0_4_8 (removed)",
        "q4_0_8_8 (removed)",
        "tq1_0",
        "tq2_0",
        "iq4_nl_4_4 (removed)",
        "iq4_nl_4_8 (removed)",
        "iq4_nl_8_8 (removed)",
        "mxfp4",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown type")
}

fn malformed(what: String) -> ForgeError {
    ForgeError::Malformed { format: FORMAT, what }
}

fn too_large(what: &str, value: u64, limit: u64) -> ForgeError {
    ForgeError::TooLarge { format: FORMAT, what: what.to_string(), value, limit }
}

fn overflow(what: &str) -> ForgeError {
    malformed(format!("{what} overflows the address space"))
}
