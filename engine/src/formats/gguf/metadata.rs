//! GGUF metadata: typed values in file order, with getters that say what was wrong.

use std::collections::HashMap;

use crate::error::{ForgeError, Result};

/// One metadata value, as GGUF types it.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::Str(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }

    /// The value as a signed integer, for any integer type (u64 beyond i128 cannot happen).
    fn as_int(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => self.as_int().map(|i| i as f32),
        }
    }

    /// `"u32"`, or `"array of string"` (the element type of the first element) for messages.
    fn describe(&self) -> String {
        match self {
            MetaValue::Array(a) => match a.first() {
                Some(e) => format!("array of {}", e.describe()),
                None => "empty array".to_string(),
            },
            v => v.type_name().to_string(),
        }
    }
}

/// Metadata entries in file order, with an index by key. Keys are unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `v`, replacing (in place) any value already under `key`.
    pub fn insert(&mut self, key: impl Into<String>, v: MetaValue) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = v,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, v));
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| missing(key))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "string", |v| match v {
            MetaValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Any integer type, if non-negative.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| missing(key))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v.as_int() {
            Some(i) => u64::try_from(i).map(Some).map_err(|_| ForgeError::MetadataType {
                key: key.to_string(),
                expected: "a non-negative integer",
                found: format!("{} {i}", v.type_name()),
            }),
            None => Err(wrong(key, "a non-negative integer", v)),
        }
    }

    /// f32, f64 (rounded) or any integer.
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.opt_f32(key)?.ok_or_else(|| missing(key))
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", MetaValue::as_f32)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "bool", |v| match v {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        })
    }

    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.opt_str_array(key)?.ok_or_else(|| missing(key))
    }

    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.typed(key, "array of string", |v| {
            array(v)?
                .iter()
                .map(|e| match e {
                    MetaValue::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect()
        })
    }

    /// An array of f32 or f64 (rounded).
    pub fn opt_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.typed(key, "array of f32", |v| {
            array(v)?
                .iter()
                .map(|e| match *e {
                    MetaValue::F32(x) => Some(x),
                    MetaValue::F64(x) => Some(x as f32),
                    _ => None,
                })
                .collect()
        })
    }

    /// An array of any integer type whose values all fit in i32.
    pub fn opt_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.typed(key, "array of i32", |v| {
            array(v)?.iter().map(|e| e.as_int().and_then(|i| i32::try_from(i).ok())).collect()
        })
    }

    /// `Ok(None)` when absent, `Err(MetadataType)` when `convert` rejects the value.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        convert: impl FnOnce(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).ok_or_else(|| wrong(key, expected, v)),
        }
    }
}

fn array(v: &MetaValue) -> Option<&[MetaValue]> {
    match v {
        MetaValue::Array(a) => Some(a),
        _ => None,
    }
}

fn missing(key: &str) -> ForgeError {
    ForgeError::MissingMetadata { key: key.to_string() }
}

fn wrong(key: &str, expected: &'static str, v: &MetaValue) -> ForgeError {
    ForgeError::MetadataType { key: key.to_string(), expected, found: v.describe() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_convert_and_report() {
        let mut m = Metadata::new();
        m.insert("a.u", MetaValue::U32(7));
        m.insert("a.neg", MetaValue::I32(-1));
        m.insert("a.f", MetaValue::F64(0.5));
        m.insert("a.s", MetaValue::Str("x".into()));
        m.insert("a.strs", MetaValue::Array(vec![MetaValue::Str("p".into()), MetaValue::Str("q".into())]));
        m.insert("a.ints", MetaValue::Array(vec![MetaValue::I32(-3), MetaValue::U8(4)]));
        m.insert("a.b", MetaValue::Bool(true));
        m.insert("a.u", MetaValue::U64(8));
        assert_eq!(m.len(), 7);
        assert_eq!(m.iter().next().unwrap().0, "a.u", "replacing keeps the position");
        assert_eq!(m.u64("a.u").unwrap(), 8);
        assert_eq!(m.f32("a.u").unwrap(), 8.0);
        assert_eq!(m.f32("a.f").unwrap(), 0.5);
        assert_eq!(m.str("a.s").unwrap(), "x");
        assert_eq!(m.str_array("a.strs").unwrap(), ["p", "q"]);
        assert_eq!(m.opt_i32_array("a.ints").unwrap().unwrap(), [-3, 4]);
        assert_eq!(m.opt_bool("a.b").unwrap(), Some(true));
        assert_eq!(m.opt_str("nope").unwrap(), None);
        assert!(matches!(m.u64("nope"), Err(ForgeError::MissingMetadata { .. })));
        assert!(matches!(m.u64("a.neg"), Err(ForgeError::MetadataType { .. })));
        assert!(matches!(m.str("a.u"), Err(ForgeError::MetadataType { .. })));
        assert!(matches!(m.opt_f32_array("a.strs"), Err(ForgeError::MetadataType { .. })));
        let e = m.str_array("a.ints").unwrap_err().to_string();
        assert!(e.contains("array of i32"), "{e}");
    }
}
