use super::*;
use ::safetensors::{Dtype, tensor::TensorView};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("forge-st-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// (name, dtype, shape, bytes)
type Spec = (&'static str, Dtype, Vec<usize>, Vec<u8>);

fn specs() -> Vec<Spec> {
    vec![
        ("model.embed_tokens.weight", Dtype::BF16, vec![8, 4], pattern(64, 1)),
        ("model.norm.weight", Dtype::F32, vec![4], pattern(16, 2)),
        ("lm_head.weight", Dtype::F16, vec![2, 3, 4], pattern(48, 3)),
    ]
}

fn serialize(specs: &[Spec]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> =
        specs.iter().map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap())).collect();
    ::safetensors::serialize(views, None).unwrap()
}

fn check(dir: &SafetensorsDir, specs: &[Spec]) {
    assert_eq!(dir.tensors.len(), specs.len());
    for (name, dtype, shape, bytes) in specs {
        let t = dir.tensor(name).unwrap();
        let want = match dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            _ => DType::BF16,
        };
        assert_eq!((t.dtype, &t.shape), (want, shape));
        assert_eq!(dir.tensor_bytes(t), &bytes[..], "{name}");
    }
}

#[test]
fn single_file() {
    let d = TempDir::new("single");
    d.write("config.json", br#"{"model_type": "llama", "hidden_size": 4}"#);
    d.write("model.safetensors", &serialize(&specs()));
    let dir = SafetensorsDir::open(&d.0).unwrap();
    assert_eq!(dir.config["model_type"], "llama");
    check(&dir, &specs());
    assert!(dir.tensors.iter().all(|t| t.file == 0));
    assert!(dir.tensors.windows(2).all(|w| w[0].offset + w[0].n_bytes <= w[1].offset), "file order");
}

#[test]
fn sharded() {
    let d = TempDir::new("sharded");
    let all = specs();
    let (a, b) = all.split_at(1);
    d.write("config.json", b"{}");
    d.write("model-00001-of-00002.safetensors", &serialize(a));
    d.write("model-00002-of-00002.safetensors", &serialize(b));
    let index = r#"{"metadata": {"total_size": 128}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors"}}"#;
    d.write("model.safetensors.index.json", index.as_bytes());
    let dir = SafetensorsDir::open(&d.0).unwrap();
    check(&dir, &all);
    assert_eq!(dir.tensor("model.norm.weight").unwrap().file, 1);

    // The index names a tensor its shard lacks.
    d.write("model.safetensors.index.json", index.replace("lm_head.weight", "ghost").as_bytes());
    let e = SafetensorsDir::open(&d.0).unwrap_err();
    assert!(matches!(e, ForgeError::Malformed { .. }) && e.to_string().contains("ghost"), "{e}");

    // The index names a shard that is not there.
    d.write("model.safetensors.index.json", index.replace("00002-of", "00003-of").as_bytes());
    assert!(matches!(SafetensorsDir::open(&d.0), Err(ForgeError::Io { .. })));

    // The index tries to leave the directory.
    d.write("model.safetensors.index.json", index.replace("model-00001", "../model-00001").as_bytes());
    assert!(matches!(SafetensorsDir::open(&d.0), Err(ForgeError::Malformed { .. })));

    d.write("model.safetensors.index.json", br#"{"weight_map": 3}"#);
    assert!(matches!(SafetensorsDir::open(&d.0), Err(ForgeError::Malformed { .. })));
}

#[test]
fn missing_files() {
    let d = TempDir::new("missing");
    assert!(matches!(SafetensorsDir::open(&d.0), Err(ForgeError::Io { .. })), "no config.json");
    d.write("config.json", b"{");
    assert!(matches!(SafetensorsDir::open(&d.0), Err(ForgeError::Malformed { format: "config.json", .. })));
    d.write("config.json", b"{}");
    assert!(matches!(SafetensorsDir::open(&d.0), Err(ForgeError::Io { .. })), "no model.safetensors");
}

fn parse(b: Vec<u8>) -> Result<Vec<SafetensorsInfo>> {
    SafetensorsDir::parse_file(FileBytes::from_vec(b))
}

/// A file with header `json` and `data_len` bytes of data.
fn with_header(json: &str, data_len: usize) -> Vec<u8> {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b.resize(b.len() + data_len, 0);
    b
}

#[test]
fn hand_written_header_with_metadata() {
    let h = r#"{"__metadata__": {"format": "pt"}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
               "a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}, "e": {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]}}"#;
    let t = parse(with_header(h, 16)).unwrap();
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "e"]);
    assert_eq!(t[0].offset, 8 + h.len());
}

#[test]
fn malformed_headers() {
    let good = serialize(&specs());
    assert!(parse(good.clone()).is_ok());
    for len in 0..good.len() {
        assert!(parse(good[..len].to_vec()).is_err(), "prefix of {len} bytes parsed");
    }
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(parse(huge), Err(ForgeError::TooLarge { .. })));
    let mut past_end = good.clone();
    past_end[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert!(matches!(parse(past_end), Err(ForgeError::Truncated { .. })));

    let cases: [(&str, usize, &str); 11] = [
        ("not json", 0, "Malformed"),
        ("[1, 2]", 0, "Malformed"),
        (r#"{"a": {"dtype": "F32", "shape": [2]}}"#, 8, "Malformed"),
        (r#"{"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}"#, 8, "UnsupportedDType"),
        (r#"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}"#, 8, "Malformed"),
        (r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, 8, "Malformed"),
        (r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}"#, 8, "Malformed"),
        (r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#, 8, "Truncated"),
        (r#"{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}"#, 8, "BadShape"),
        (
            r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
            16,
            "Malformed",
        ),
        (r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]}}"#, 8, "Malformed"),
    ];
    for (json, data, kind) in cases {
        let e = parse(with_header(json, data)).expect_err(json);
        assert!(format!("{e:?}").starts_with(kind), "{json}: {e:?}");
    }
    let e = parse(with_header(cases[3].0, 8)).unwrap_err().to_string();
    assert!(e.contains("I64") && e.contains("`a`"), "{e}");
}
