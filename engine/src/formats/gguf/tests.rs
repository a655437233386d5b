use super::*;

// The real SmolLM2 file is read in forge-tests (`tests/tests/gguf_smollm2.rs`), which finds it
// by the one model-path rule and fails when FORGE_REQUIRE_MODEL=1 and it is missing.

// ---- writer → reader round trip ----

use crate::formats::gguf_write::GgufWriter;

/// Deterministic bytes for tests (splitmix64), so no test depends on an RNG crate's API.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn all_value_types() -> Vec<(&'static str, MetaValue)> {
    use MetaValue::*;
    vec![
        ("t.u8", U8(200)),
        ("t.i8", I8(-100)),
        ("t.u16", U16(60_000)),
        ("t.i16", I16(-30_000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.u64", U64(u64::MAX)),
        ("t.i64", I64(i64::MIN)),
        ("t.f32", F32(1.5e-5)),
        ("t.f64", F64(-2.25e300)),
        ("t.bool", Bool(true)),
        ("t.str", Str("héllo ▁world".into())),
        ("t.empty_str", Str(String::new())),
        ("t.strs", Array(vec![Str("a".into()), Str("".into()), Str("<|im_end|>".into())])),
        ("t.f32s", Array(vec![F32(0.0), F32(-1.0), F32(f32::MAX)])),
        ("t.i32s", Array(vec![I32(1), I32(-1)])),
        ("t.empty", Array(vec![])),
        ("t.nested", Array(vec![Array(vec![U8(1), U8(2)]), Array(vec![U8(3)])])),
        ("t.bools", Array(vec![Bool(false), Bool(true)])),
    ]
}

/// A row-major shape for `dtype` whose rows are two blocks, with `rank` dimensions.
fn shape_for(dtype: DType, rank: usize) -> Vec<usize> {
    let mut s = vec![3, 2, 1][..rank - 1].to_vec();
    s.push(2 * dtype.block_len());
    s
}

fn round_trip(alignment: Option<usize>) {
    let mut mix = Mix(1);
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.set_alignment(a);
    }
    w.metadata("general.architecture", MetaValue::Str("llama".into()));
    for (k, v) in all_value_types() {
        w.metadata(k, v);
    }
    let mut expect = Vec::new();
    for (i, dtype) in DType::WEIGHT_TYPES.into_iter().enumerate() {
        let shape = shape_for(dtype, 1 + i % 4);
        let bytes = mix.bytes(tensor_bytes(dtype, &shape).unwrap());
        let name = format!("blk.{i}.{}", dtype.name());
        w.tensor(&name, dtype, &shape, bytes.clone()).unwrap();
        expect.push((name, dtype, shape, bytes));
    }
    let f = GgufFile::from_bytes(FileBytes::from_vec(w.to_bytes())).unwrap();

    let align = alignment.unwrap_or(32);
    assert_eq!((f.version, f.alignment), (3, align));
    assert_eq!(f.architecture().unwrap(), "llama");
    let mut want: Vec<(String, MetaValue)> = Vec::new();
    if let Some(a) = alignment {
        want.push(("general.alignment".into(), MetaValue::U32(a as u32)));
    }
    want.push(("general.architecture".into(), MetaValue::Str("llama".into())));
    want.extend(all_value_types().into_iter().map(|(k, v)| (k.to_string(), v)));
    let got: Vec<(String, MetaValue)> = f.metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    assert_eq!(got, want);

    assert_eq!(f.tensors.len(), expect.len());
    for (t, (name, dtype, shape, bytes)) in f.tensors.iter().zip(&expect) {
        assert_eq!((&t.name, t.dtype, &t.shape), (name, *dtype, shape));
        assert_eq!(t.offset % align, 0, "{name} misaligned");
        assert_eq!(f.tensor_bytes(t), &bytes[..]);
        assert_eq!(f.tensor(name), Some(t));
    }
}

#[test]
fn round_trip_default_alignment() {
    round_trip(None);
}

#[test]
fn round_trip_alignment_64_and_1() {
    round_trip(Some(64));
    round_trip(Some(1));
}

#[test]
fn writer_checks_sizes() {
    let mut w = GgufWriter::new();
    assert!(w.tensor("a", DType::Q4_0, &[2, 32], vec![0; 36]).is_ok());
    assert!(matches!(w.tensor("b", DType::Q4_0, &[2, 32], vec![0; 35]), Err(ForgeError::BadShape { .. })));
    assert!(matches!(w.tensor("c", DType::Q4_0, &[2, 16], vec![0; 18]), Err(ForgeError::BadShape { .. })));
    assert!(matches!(w.tensor("d", DType::F32, &[1, 1, 1, 1, 1], vec![0; 4]), Err(ForgeError::BadShape { .. })));
    assert!(w.tensor("a", DType::Q4_0, &[2, 32], vec![0; 36]).is_err(), "duplicate name");
}

#[test]
fn long_chat_template_is_allowed_but_long_names_are_not() {
    let big = "x".repeat(3 << 20);
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.chat_template", MetaValue::Str(big.clone()));
    let f = GgufFile::from_bytes(FileBytes::from_vec(w.to_bytes())).unwrap();
    assert_eq!(f.metadata.str("tokenizer.chat_template").unwrap().len(), big.len());

    let mut w = GgufWriter::new();
    w.metadata("general.name", MetaValue::Str(big));
    assert!(matches!(parse(w.to_bytes()), Err(ForgeError::TooLarge { .. })));
}

// ---- hostile files ----

fn parse(b: Vec<u8>) -> Result<GgufFile> {
    GgufFile::from_bytes(FileBytes::from_vec(b))
}

/// A small valid file: a few metadata entries of several types and three tensors.
fn small_file() -> Vec<u8> {
    let mut mix = Mix(7);
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", MetaValue::Str("llama".into()))
        .metadata("llama.block_count", MetaValue::U32(1))
        .metadata(
            "tokenizer.ggml.tokens",
            MetaValue::Array(vec![MetaValue::Str("a".into()), MetaValue::Str("b".into())]),
        )
        .metadata("t.nested", MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::I16(1)])]));
    w.tensor("a", DType::F32, &[2, 3], mix.bytes(24)).unwrap();
    w.tensor("b", DType::Q4_1, &[2, 32], mix.bytes(40)).unwrap();
    w.tensor("c", DType::Q6K, &[256], mix.bytes(210)).unwrap();
    w.to_bytes()
}

/// Builds a file by hand, so that any field can hold any value.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_meta: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_meta);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Raw {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A tensor info with `ne` innermost-first, as GGUF stores it.
    fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> &mut Raw {
        self.str(name).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `n` zero bytes of tensor data.
    fn data(&mut self, n: usize) -> Vec<u8> {
        let mut b = self.0.clone();
        b.resize(b.len().next_multiple_of(32) + n, 0);
        b
    }
}

fn err(b: Vec<u8>) -> ForgeError {
    parse(b).expect_err("a bad file must not parse")
}

#[test]
fn every_truncation_is_an_error() {
    let b = small_file();
    assert!(parse(b.clone()).is_ok());
    for len in 0..b.len() {
        assert!(parse(b[..len].to_vec()).is_err(), "prefix of {len} bytes parsed");
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut b = small_file();
    b[0] = b'X';
    assert!(matches!(err(b), ForgeError::BadMagic { .. }));
    for v in [0, 1, 4, 0x0300_0000] {
        let mut b = small_file();
        b[4..8].copy_from_slice(&u32::to_le_bytes(v));
        assert!(matches!(err(b), ForgeError::UnsupportedVersion { version, .. } if version == v as u64));
    }
    let mut b = small_file();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert!(parse(b).is_ok(), "v2 has the same layout");
}

/// Each absurd count is refused by its limit before anything of that size is allocated or read.
#[test]
fn absurd_counts_fail_fast() {
    assert!(matches!(err(Raw::new(3, 1 << 60, 0).0), ForgeError::TooLarge { .. }));
    assert!(matches!(err(Raw::new(3, 0, u64::MAX).0), ForgeError::TooLarge { .. }));
    // Under the limits but more than the file could hold.
    assert!(matches!(err(Raw::new(3, 1000, 0).0), ForgeError::Truncated { .. }));
    assert!(matches!(err(Raw::new(3, 0, 1000).0), ForgeError::Truncated { .. }));
    // A key or string length of 2^62.
    assert!(matches!(err(Raw::new(3, 0, 1).u64(1 << 62).data(64)), ForgeError::TooLarge { .. }));
    let long_str = Raw::new(3, 0, 1).str("k").u32(T_STRING).u64(1 << 62).data(64);
    assert!(matches!(err(long_str), ForgeError::TooLarge { .. }));
    let short_str = Raw::new(3, 0, 1).str("k").u32(T_STRING).u64(1000).data(64);
    assert!(matches!(err(short_str), ForgeError::Truncated { .. }));
    // Arrays: huge, under the limit but longer than the file, nested strings too long.
    let huge = Raw::new(3, 0, 1).str("k").u32(T_ARRAY).u32(T_U8).u64(u64::MAX).data(64);
    assert!(matches!(err(huge), ForgeError::TooLarge { .. }));
    let long = Raw::new(3, 0, 1).str("k").u32(T_ARRAY).u32(T_U64).u64(1 << 20).data(64);
    assert!(matches!(err(long), ForgeError::Truncated { .. }));
    let strs = Raw::new(3, 0, 1).str("k").u32(T_ARRAY).u32(T_STRING).u64(2).u64(1 << 40).data(64);
    assert!(matches!(err(strs), ForgeError::TooLarge { .. }));
    let deep = Raw::new(3, 0, 1).str("k").u32(T_ARRAY).u32(T_ARRAY).u64(1).u32(T_ARRAY).u64(1).u32(T_U8).u64(0).data(0);
    assert!(matches!(err(deep), ForgeError::TooLarge { .. }), "nesting depth 3 is the limit");
    // A tensor name of 2^62 bytes.
    assert!(matches!(err(Raw::new(3, 1, 0).u64(1 << 62).data(64)), ForgeError::TooLarge { .. }));
}

#[test]
fn bad_metadata_values() {
    let unknown = Raw::new(3, 0, 1).str("k").u32(13).data(8);
    assert!(matches!(err(unknown), ForgeError::Malformed { .. }));
    let bad_elem = Raw::new(3, 0, 1).str("k").u32(T_ARRAY).u32(99).u64(0).data(0);
    assert!(matches!(err(bad_elem), ForgeError::Malformed { .. }));
    let mut bad_bool = Raw::new(3, 0, 1);
    bad_bool.str("k").u32(T_BOOL).0.push(2);
    assert!(matches!(err(bad_bool.0), ForgeError::Malformed { .. }));
    let mut not_utf8 = Raw::new(3, 0, 1);
    not_utf8.str("k").u32(T_STRING).u64(2).0.extend_from_slice(&[0xC3, 0x28]);
    assert!(matches!(err(not_utf8.0), ForgeError::Malformed { .. }));
    let dup = Raw::new(3, 0, 2).str("k").u32(T_U32).u32(1).str("k").u32(T_U32).u32(2).data(0);
    assert!(matches!(err(dup), ForgeError::Malformed { .. }));
    let wrong_type = Raw::new(3, 0, 1).str("general.alignment").u32(T_STRING).str("32").data(0);
    assert!(matches!(err(wrong_type), ForgeError::MetadataType { .. }));
}

#[test]
fn bad_alignment() {
    for (a, too_large) in [(0u32, false), (3, false), (48, false), (1 << 21, true)] {
        let b = Raw::new(3, 1, 1).str("general.alignment").u32(T_U32).u32(a).tensor("t", &[8], 0, 0).data(32);
        match err(b) {
            ForgeError::TooLarge { .. } if too_large => {}
            ForgeError::Malformed { .. } if !too_large => {}
            e => panic!("alignment {a}: {e}"),
        }
    }
}

#[test]
fn bad_tensor_infos() {
    let ok = Raw::new(3, 1, 0).tensor("t", &[8, 2], 0, 0).data(64);
    assert_eq!(parse(ok).unwrap().tensors[0].shape, [2, 8]);
    let dims5 = Raw::new(3, 1, 0).tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(64);
    assert!(matches!(err(dims5), ForgeError::Malformed { .. }));
    let dims0 = Raw::new(3, 1, 0).tensor("t", &[], 0, 0).data(64);
    assert!(matches!(err(dims0), ForgeError::Malformed { .. }));
    let zero = Raw::new(3, 1, 0).tensor("t", &[8, 0], 0, 0).data(64);
    assert!(matches!(err(zero), ForgeError::BadShape { .. }));
    let product = Raw::new(3, 1, 0).tensor("t", &[1 << 32, 1 << 32, 1 << 32], 0, 0).data(64);
    assert!(matches!(err(product), ForgeError::BadShape { .. }));
    let elem = Raw::new(3, 1, 0).tensor("t", &[u64::MAX], 0, 0).data(64);
    assert!(err(elem).to_string().contains("`t`"));
    let partial_block = Raw::new(3, 1, 0).tensor("t", &[16, 2], 2, 0).data(64);
    assert!(matches!(err(partial_block), ForgeError::BadShape { .. }));
    let dup = Raw::new(3, 2, 0).tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32).data(64);
    assert!(matches!(err(dup), ForgeError::Malformed { .. }));
    let mut not_utf8 = Raw::new(3, 1, 0);
    not_utf8.u64(1).0.push(0xFF);
    not_utf8.u32(1).u64(8).u32(0).u64(0);
    assert!(matches!(err(not_utf8.data(32)), ForgeError::Malformed { .. }));
}

#[test]
fn unsupported_types_are_named() {
    for (id, name) in [(11, "q3_K"), (10, "q2_K"), (99, "unknown")] {
        let b = Raw::new(3, 1, 0).tensor("blk.0.attn_q.weight", &[256], id, 0).data(1024);
        match err(b) {
            e @ ForgeError::UnsupportedDType { .. } => {
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains("blk.0.attn_q.weight"), "{msg}");
            }
            e => panic!("type {id}: {e}"),
        }
    }
}

#[test]
fn bad_offsets() {
    let past_end = Raw::new(3, 1, 0).tensor("t", &[8], 0, 32).data(32);
    assert!(matches!(err(past_end), ForgeError::Truncated { .. }));
    let huge = Raw::new(3, 1, 0).tensor("t", &[8], 0, u64::MAX - 31).data(32);
    assert!(parse(huge).is_err());
    let misaligned = Raw::new(3, 1, 0).tensor("t", &[8], 0, 4).data(64);
    assert!(matches!(err(misaligned), ForgeError::Malformed { .. }));
    let adjacent = Raw::new(3, 2, 0).tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 32).data(64);
    assert!(parse(adjacent).is_ok());
    let overlap = Raw::new(3, 2, 0).tensor("a", &[16], 0, 32).tensor("b", &[16], 0, 0).data(96);
    assert!(matches!(err(overlap), ForgeError::Malformed { .. }), "b's 64 bytes run into a");
    let same = Raw::new(3, 2, 0).tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 0).data(32);
    assert!(matches!(err(same), ForgeError::Malformed { .. }));
}

#[test]
fn random_mutations_never_panic() {
    let base = small_file();
    let mut mix = Mix(42);
    let mut parsed = 0;
    for _ in 0..2000 {
        let mut b = base.clone();
        for _ in 0..1 + mix.below(4) {
            let i = mix.below(b.len());
            b[i] = match mix.below(3) {
                0 => mix.next() as u8,
                1 => b[i] ^ (1 << mix.below(8)),
                _ => 0xFF,
            };
        }
        if mix.below(4) == 0 {
            b.truncate(mix.below(b.len()));
        }
        parsed += usize::from(parse(b).is_ok());
    }
    assert!(parsed < 2000, "some mutations must be caught");
}
