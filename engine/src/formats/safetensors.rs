//! Hugging Face model directories: `config.json` plus `model.safetensors`, or
//! `model.safetensors.index.json` (whose `weight_map` names each tensor's shard) plus shards.
//!
//! A safetensors file is a u64 little-endian header length N, N bytes of JSON
//! (`{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
//! offsets relative to the end of the header), then the data. Shapes are row-major already.
//!
//! Only F32, F16 and BF16 tensors are accepted. Every header field is checked (sizes against
//! dtype × shape, offsets inside the file, no two tensors overlapping) before it is trusted.
//! Note that the data start (8 + N) need not be 4-byte aligned: consumers copy or read unaligned.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use super::FileBytes;
use crate::DType;
use crate::error::{ForgeError, Result};

const FORMAT: &str = "safetensors";
/// Largest JSON header accepted (the safetensors crate's own limit).
pub const MAX_HEADER: u64 = 100_000_000;
/// Most tensors in one file.
pub const MAX_TENSORS: usize = 1 << 20;

/// One tensor: which file of the directory, and where in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorsInfo {
    pub name: String,
    /// F32, F16 or BF16.
    pub dtype: DType,
    /// Row-major, as stored.
    pub shape: Vec<usize>,
    /// Index of the file (shard) in the directory.
    pub file: usize,
    /// Absolute byte offset in that file.
    pub offset: usize,
    pub n_bytes: usize,
}

/// A parsed model directory. Tensor data stays in the (mapped) files.
#[derive(Debug)]
pub struct SafetensorsDir {
    /// `config.json`.
    pub config: Value,
    /// `generation_config.json`, where the directory has one that parses (it holds only hints).
    pub generation_config: Option<Value>,
    pub tensors: Vec<SafetensorsInfo>,
    files: Vec<FileBytes>,
    index: HashMap<String, usize>,
}

impl SafetensorsDir {
    pub fn open(dir: &Path) -> Result<SafetensorsDir> {
        let config = read_json(&dir.join("config.json"), "config.json")?;
        let index_path = dir.join("model.safetensors.index.json");
        let (files, tensors) = if index_path.exists() {
            open_sharded(dir, &index_path)?
        } else {
            let bytes = FileBytes::open(&dir.join("model.safetensors"))?;
            let tensors = Self::parse_file(bytes.clone())?;
            (vec![bytes], tensors)
        };
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(malformed(format!("tensor `{}` appears in more than one shard", t.name)));
            }
        }
        let generation_config = dir.join("generation_config.json");
        let generation_config = generation_config.is_file().then(|| read_json(&generation_config, "generation_config.json")).and_then(|r| {
            r.inspect_err(|e| tracing::warn!("ignoring generation_config.json: {e}")).ok()
        });
        Ok(SafetensorsDir { config, tensors, files, index, generation_config })
    }

    pub fn tensor(&self, name: &str) -> Option<&SafetensorsInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t`, which must come from this directory (checked at parse time).
    pub fn tensor_bytes(&self, t: &SafetensorsInfo) -> &[u8] {
        &self.files[t.file][t.offset..t.offset + t.n_bytes]
    }

    /// Parses one `.safetensors` file; every tensor gets file index 0. Tensors come in file order.
    pub fn parse_file(bytes: FileBytes) -> Result<Vec<SafetensorsInfo>> {
        parse_header(&bytes, 0)
    }
}

fn open_sharded(dir: &Path, index_path: &Path) -> Result<(Vec<FileBytes>, Vec<SafetensorsInfo>)> {
    let index = read_json(index_path, "model.safetensors.index.json")?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("model.safetensors.index.json has no `weight_map` object".to_string()))?;
    let mut shard_names: Vec<&str> = Vec::new();
    for (name, shard) in map {
        let shard =
            shard.as_str().ok_or_else(|| malformed(format!("index: `{name}` maps to {shard}, not a file name")))?;
        // The index comes from the same stranger as the files: no paths out of the directory.
        if shard.is_empty() || shard.contains(['/', '\\']) || shard == ".." || shard == "." {
            return Err(malformed(format!("index: shard name {shard:?} is not a plain file name")));
        }
        if !shard_names.contains(&shard) {
            shard_names.push(shard);
        }
    }
    shard_names.sort_unstable();
    let mut files = Vec::with_capacity(shard_names.len());
    let mut tensors = Vec::new();
    for (i, shard) in shard_names.iter().enumerate() {
        let bytes = FileBytes::open(&dir.join(shard))?;
        tensors.extend(parse_header(&bytes, i)?);
        files.push(bytes);
    }
    let present: HashSet<(usize, &str)> = tensors.iter().map(|t| (t.file, t.name.as_str())).collect();
    for (name, shard) in map {
        let shard = shard.as_str().unwrap_or_default();
        let file = shard_names.binary_search(&shard).unwrap_or(usize::MAX);
        if !present.contains(&(file, name.as_str())) {
            return Err(malformed(format!("index maps `{name}` to {shard}, which has no such tensor")));
        }
    }
    Ok((files, tensors))
}

fn read_json(path: &Path, format: &'static str) -> Result<Value> {
    let text = std::fs::read(path).map_err(|e| ForgeError::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| ForgeError::Malformed { format, what: format!("not valid JSON: {e}") })
}

fn parse_header(b: &[u8], file: usize) -> Result<Vec<SafetensorsInfo>> {
    let truncated = |what: &str, need: u64| ForgeError::Truncated {
        format: FORMAT,
        what: what.to_string(),
        need,
        file_len: b.len() as u64,
    };
    let len_bytes: [u8; 8] = b.get(..8).ok_or_else(|| truncated("the header length", 8))?.try_into().expect("8 bytes");
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER {
        return Err(ForgeError::TooLarge {
            format: FORMAT,
            what: "header length".into(),
            value: header_len,
            limit: MAX_HEADER,
        });
    }
    let data_start = 8 + header_len as usize; // ≤ 100 MB + 8
    if data_start > b.len() {
        return Err(truncated("the JSON header", data_start as u64));
    }
    let header: Value = serde_json::from_slice(&b[8..data_start])
        .map_err(|e| malformed(format!("the header is not valid JSON: {e}")))?;
    let header = header.as_object().ok_or_else(|| malformed("the header is not a JSON object".into()))?;
    if header.len() > MAX_TENSORS + 1 {
        return Err(ForgeError::TooLarge {
            format: FORMAT,
            what: "tensor count".into(),
            value: header.len() as u64,
            limit: MAX_TENSORS as u64,
        });
    }
    let data_len = b.len() - data_start;

    let mut tensors = Vec::with_capacity(header.len());
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| entry.get(key).ok_or_else(|| malformed(format!("tensor `{name}` has no `{key}`")));
        let dtype_name =
            field("dtype")?.as_str().ok_or_else(|| malformed(format!("tensor `{name}`: dtype is not a string")))?;
        let dtype = match dtype_name {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            other => return Err(ForgeError::UnsupportedDType { name: name.clone(), type_name: other.to_string() }),
        };
        let shape = usizes(field("shape")?)
            .ok_or_else(|| malformed(format!("tensor `{name}`: shape is not a list of sizes")))?;
        let offsets = usizes(field("data_offsets")?)
            .filter(|o| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| malformed(format!("tensor `{name}`: data_offsets is not [begin, end] with begin ≤ end")))?;
        let n_bytes = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.block_bytes()))
            .ok_or_else(|| ForgeError::BadShape { what: format!("tensor `{name}`: {shape:?} overflows") })?;
        if offsets[1] - offsets[0] != n_bytes {
            return Err(malformed(format!(
                "tensor `{name}`: {dtype_name} {shape:?} takes {n_bytes} bytes but data_offsets span {}",
                offsets[1] - offsets[0]
            )));
        }
        if offsets[1] > data_len {
            return Err(truncated(
                &format!("tensor `{name}` data"),
                (data_start as u64).saturating_add(offsets[1] as u64),
            ));
        }
        tensors.push(SafetensorsInfo {
            name: name.clone(),
            dtype,
            shape,
            file,
            offset: data_start + offsets[0],
            n_bytes,
        });
    }
    tensors.sort_by_key(|t| t.offset);
    let mut prev: Option<&SafetensorsInfo> = None;
    for t in tensors.iter().filter(|t| t.n_bytes > 0) {
        if let Some(p) = prev.filter(|p| p.offset + p.n_bytes > t.offset) {
            return Err(malformed(format!("the data of tensors `{}` and `{}` overlap", p.name, t.name)));
        }
        prev = Some(t);
    }
    Ok(tensors)
}

/// A JSON array of non-negative integers that fit in usize.
fn usizes(v: &Value) -> Option<Vec<usize>> {
    v.as_array()?.iter().map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok())).collect()
}

fn malformed(what: String) -> ForgeError {
    ForgeError::Malformed { format: FORMAT, what }
}

#[cfg(test)]
mod tests;
