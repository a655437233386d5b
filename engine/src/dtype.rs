//! Element types, bit-compatible with GGUF (ggml) storage.
//!
//! Quantized types are stored as blocks exactly as ggml lays them out, so a GGUF tensor's bytes
//! can be handed to any backend unchanged; the ops that read weights dequantize on the fly.
//! Layouts (little-endian), from ggml-common.h:
//! - `Q4_0`: 32 weights = f16 d, 16 bytes of nibbles; w = d * (q - 8)
//! - `Q4_1`: 32 weights = f16 d, f16 m, 16 bytes of nibbles; w = d * q + m
//! - `Q5_0`: 32 weights = f16 d, u32 qh (fifth bits), 16 bytes of nibbles; w = d * (q - 16)
//! - `Q5_1`: 32 weights = f16 d, f16 m, u32 qh, 16 bytes of nibbles; w = d * q + m
//! - `Q8_0`: 32 weights = f16 d, 32 × i8; w = d * q
//! - `Q4_K`: 256 weights = f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
//! - `Q5_K`: 256 weights = f16 d, f16 dmin, 12 bytes scales, 32 bytes high bits, 128 bytes nibbles
//! - `Q6_K`: 256 weights = 128 bytes low nibbles, 64 bytes high 2 bits, 16 × i8 scales, f16 d
//!
//! In every tensor the first dimension (`shape[0]` in GGUF order, the last in row-major
//! notation) is the contiguous one, and a row must hold a whole number of blocks.


/// The element types a tensor may have. Activations are always `F32`; `U32` carries ids and
/// positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    U32,
}

impl DType {
    /// Every storage type a weight may have, in a fixed order (for tests and tables).
    pub const WEIGHT_TYPES: [DType; 11] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
    ];

    /// The types a KV cache may be kept in (`--kv-type`): the rows `ScatterRows` writes and
    /// `Attention` reads as keys and values.
    pub const KV_TYPES: [DType; 3] = [DType::F32, DType::F16, DType::Q8_0];

    /// Elements per block (1 for plain types).
    pub const fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 | DType::U32 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => 32,
            DType::Q4K | DType::Q5K | DType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
        }
    }

    pub const fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes taken by a row of `n` elements; `n` must be a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Result<usize, SizeError> {
        if !n.is_multiple_of(self.block_len()) {
            return Err(SizeError::PartialBlock { dtype: self, n });
        }
        (n / self.block_len()).checked_mul(self.block_bytes()).ok_or(SizeError::Overflow { dtype: self, n })
    }

    /// Bytes taken by `n` elements (a whole number of blocks), overflow-checked.
    pub fn bytes_for(self, n: usize) -> Result<usize, SizeError> {
        self.row_bytes(n)
    }

    /// Bytes taken by a row-major tensor of `shape` (rows of whole blocks), overflow-checked.
    pub fn tensor_bytes(self, shape: &[usize]) -> Result<usize, SizeError> {
        let overflow = || SizeError::TooLarge { dtype: self, shape: shape.to_vec() };
        let cols = shape.last().copied().unwrap_or(1);
        let rows = shape[..shape.len().saturating_sub(1)].iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
        self.row_bytes(cols)?.checked_mul(rows).ok_or_else(overflow)
    }

    /// ggml's type id, as stored in GGUF tensor infos.
    pub const fn ggml_type(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q4K => 12,
            DType::Q5K => 13,
            DType::Q6K => 14,
            DType::U32 => 26, // GGML_TYPE_I32's slot is 26; ids are never stored in files
            DType::BF16 => 30,
        }
    }

    /// The type for a ggml type id, or `None` for a type this engine does not support.
    pub const fn from_ggml_type(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            12 => DType::Q4K,
            13 => DType::Q5K,
            14 => DType::Q6K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// Lower-case name as llama.cpp prints it (`q4_1`, `q4_K`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q8_0 => "q8_0",
            DType::Q4K => "q4_K",
            DType::Q5K => "q5_K",
            DType::Q6K => "q6_K",
            DType::U32 => "u32",
        }
    }

    /// Parses a name as printed by [`DType::name`] (case-insensitive).
    pub fn parse(s: &str) -> Option<DType> {
        let s = s.to_ascii_lowercase();
        [DType::U32].iter().chain(DType::WEIGHT_TYPES.iter()).copied().find(|d| d.name().eq_ignore_ascii_case(&s))
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip() {
        for d in DType::WEIGHT_TYPES {
            assert_eq!(DType::from_ggml_type(d.ggml_type()), Some(d));
            assert_eq!(DType::parse(d.name()), Some(d));
        }
        assert_eq!(DType::from_ggml_type(10), None, "q2_K (ggml type 10) is not supported and must say so");
    }

    #[test]
    fn row_bytes_checks_blocks() {
        assert_eq!(DType::Q4_1.row_bytes(576).unwrap(), 18 * 20);
        assert_eq!(DType::Q6K.row_bytes(512).unwrap(), 2 * 210);
        // Gemma 3 270M's Q5_0 rows: 640 weights = 20 blocks of 22 bytes.
        assert_eq!(DType::Q5_0.row_bytes(640).unwrap(), 20 * 22);
        assert_eq!(DType::Q5_1.row_bytes(64).unwrap(), 2 * 24);
        assert_eq!((DType::Q5_0.ggml_type(), DType::Q5_1.ggml_type()), (6, 7));
        assert!(DType::Q4K.row_bytes(576).is_err());
        assert!(DType::F32.row_bytes(usize::MAX).is_err());
    }
}

/// Why `n` elements of a type have no size in bytes. A leaf of its own, so this module needs
/// nothing from the rest of the crate; [`crate::ForgeError`] takes it as `BadShape`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// Not a whole number of blocks.
    PartialBlock { dtype: DType, n: usize },
    /// More bytes than a `usize` counts.
    Overflow { dtype: DType, n: usize },
    /// A tensor of more bytes than a `usize` counts.
    TooLarge { dtype: DType, shape: Vec<usize> },
}

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeError::PartialBlock { dtype, n } => {
                write!(f, "a {} row of {n} elements is not a whole number of {}-element blocks", dtype.name(), dtype.block_len())
            }
            SizeError::Overflow { dtype, n } => write!(f, "{} row of {n} elements overflows", dtype.name()),
            SizeError::TooLarge { dtype, shape } => write!(f, "{dtype} tensor {shape:?} is too large"),
        }
    }
}

impl std::error::Error for SizeError {}
