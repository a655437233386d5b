//! Model files that parse as GGUF but lie about the model: every one must be refused with a
//! typed error before anything large is allocated, never a panic.

use forge_engine::formats::gguf::{GgufFile, MetaValue};
use forge_engine::formats::gguf_write::GgufWriter;
use forge_engine::{DType, ForgeError, Model};
use forge_tests::tiny::{TinyArch, TinyModel, TinySpec, temp_dir};

/// A copy of `src` with metadata values replaced (`None` from `meta` drops the key) and
/// tensors rewritten (`None` from `tensor` drops the tensor).
fn rewrite(
    src: &std::path::Path,
    dst: &std::path::Path,
    meta: impl Fn(&str, &MetaValue) -> Option<MetaValue>,
    add: &[(&str, MetaValue)],
    tensor: impl Fn(&str, DType, &[usize], &[u8]) -> Option<(DType, Vec<usize>, Vec<u8>)>,
) {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata.iter() {
        if let Some(v) = meta(k, v) {
            w.metadata(k, v);
        }
    }
    for (k, v) in add {
        w.metadata(*k, v.clone());
    }
    for t in &f.tensors {
        if let Some((dtype, shape, bytes)) = tensor(&t.name, t.dtype, &t.shape, f.tensor_bytes(t)) {
            w.tensor(t.name.clone(), dtype, &shape, bytes).unwrap();
        }
    }
    w.write(dst).unwrap();
}

fn keep(_: &str, v: &MetaValue) -> Option<MetaValue> {
    Some(v.clone())
}

fn same(_: &str, d: DType, s: &[usize], b: &[u8]) -> Option<(DType, Vec<usize>, Vec<u8>)> {
    Some((d, s.to_vec(), b.to_vec()))
}

fn load_err(
    name: &str,
    meta: impl Fn(&str, &MetaValue) -> Option<MetaValue>,
    add: &[(&str, MetaValue)],
    tensor: impl Fn(&str, DType, &[usize], &[u8]) -> Option<(DType, Vec<usize>, Vec<u8>)>,
) -> ForgeError {
    let dir = temp_dir(&format!("hostile-{name}"));
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir);
    let bad = dir.join("bad.gguf");
    rewrite(&tiny.gguf, &bad, meta, add, tensor);
    let err = Model::load(&bad).expect_err(&format!("{name}: a lying model file must be refused"));
    let _ = std::fs::remove_dir_all(&dir);
    err
}

fn set(key: &'static str, value: MetaValue) -> impl Fn(&str, &MetaValue) -> Option<MetaValue> {
    move |k, v| Some(if k == key { value.clone() } else { v.clone() })
}

#[test]
fn the_unmodified_tiny_model_loads() {
    // The cases below are only meaningful if the file they start from is good.
    let dir = temp_dir("hostile-control");
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir);
    let copy = dir.join("copy.gguf");
    rewrite(&tiny.gguf, &copy, keep, &[], same);
    Model::load(&copy).expect("an unchanged rewrite loads");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn more_layers_than_tensors() {
    let e = load_err("layers", set("llama.block_count", MetaValue::U32(3)), &[], same);
    assert!(matches!(e, ForgeError::MissingTensor { ref name } if name.starts_with("blk.2.")), "{e}");
}

#[test]
fn absurd_layer_count_fails_before_allocating() {
    let e = load_err("layers-huge", set("llama.block_count", MetaValue::U64(1 << 40)), &[], same);
    assert!(matches!(e, ForgeError::TooLarge { .. }), "{e}");
}

#[test]
fn tensor_shape_disagrees_with_hyperparameters() {
    let e = load_err("shape", set("llama.feed_forward_length", MetaValue::U32(768)), &[], same);
    assert!(matches!(e, ForgeError::TensorShape { .. }), "{e}");
}

#[test]
fn embedding_rows_disagree_with_vocabulary() {
    // Drop the last vocabulary entry: 255 tokens, 256 embedding rows.
    let e = load_err(
        "vocab",
        |k, v| match (k, v) {
            ("tokenizer.ggml.tokens" | "tokenizer.ggml.token_type", MetaValue::Array(a)) => Some(MetaValue::Array(a[..a.len() - 1].to_vec())),
            _ => Some(v.clone()),
        },
        &[],
        same,
    );
    assert!(matches!(e, ForgeError::TensorShape { .. }), "{e}");
}

#[test]
fn merges_naming_tokens_outside_the_vocabulary() {
    let e = load_err("merges", set("tokenizer.ggml.merges", MetaValue::Array(vec![MetaValue::Str("zz qq".into())])), &[], same);
    assert!(matches!(e, ForgeError::Tokenizer { .. }), "{e}");
}

#[test]
fn special_token_id_outside_the_vocabulary_is_ignored_not_trusted() {
    // llama.cpp warns and ignores such ids (real files have a pad id equal to the vocabulary
    // size); what matters is that the id is never used to index the vocabulary.
    let dir = temp_dir("hostile-bos");
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir);
    let bad = dir.join("bad.gguf");
    rewrite(&tiny.gguf, &bad, keep, &[("tokenizer.ggml.bos_token_id", MetaValue::U32(1 << 20)), ("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))], same);
    let m = Model::load(&bad).expect("loads, ignoring the bad id");
    assert_eq!(m.tokenizer.bos_id(), None);
    assert_eq!(m.tokenizer.encode("hi", true, true).unwrap().len(), 2, "no BOS is added from an ignored id");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn heads_that_do_not_divide() {
    let e = load_err("heads", set("llama.attention.head_count_kv", MetaValue::U32(3)), &[], same);
    assert!(matches!(e, ForgeError::Malformed { .. } | ForgeError::TensorShape { .. }), "{e}");
    let e = load_err("heads0", set("llama.attention.head_count", MetaValue::U32(0)), &[], same);
    assert!(matches!(e, ForgeError::TooLarge { .. }), "{e}");
}

/// Without `attention.key_length`, the head width is the model width over the heads: widths that
/// do not divide (or more heads than columns) are refused with the metadata, naming both numbers,
/// not later as a weight of the wrong shape after the model has been read and uploaded.
#[test]
fn model_width_that_does_not_split_into_heads() {
    for (name, heads) in [("width6", 6), ("width512", 512)] {
        let e = load_err(name, set("llama.attention.head_count", MetaValue::U32(heads)), &[], same);
        assert!(matches!(e, ForgeError::Malformed { .. }), "{name}: {e}");
        assert!(e.to_string().contains(&format!("embedding length 256 does not split into {heads} attention heads")), "{e}");
    }
}

#[test]
fn unknown_architecture_names_the_supported_ones() {
    let e = load_err("arch", set("general.architecture", MetaValue::Str("mamba".into())), &[], same);
    assert!(matches!(e, ForgeError::UnknownArchitecture { .. }), "{e}");
    assert!(e.to_string().contains("llama"), "{e}");
}

#[test]
fn missing_tensor() {
    let e = load_err("missing", keep, &[], |n, d, s, b| (n != "blk.1.ffn_up.weight").then(|| (d, s.to_vec(), b.to_vec())));
    assert!(matches!(e, ForgeError::MissingTensor { ref name } if name == "blk.1.ffn_up.weight"), "{e}");
}

#[test]
fn metadata_of_the_wrong_type() {
    let e = load_err("type", set("llama.embedding_length", MetaValue::Str("wide".into())), &[], same);
    assert!(matches!(e, ForgeError::MetadataType { .. }), "{e}");
}

#[test]
fn chat_template_that_contains_itself_is_an_error_not_an_abort() {
    // Rendering this used to overflow the stack and abort the process (`forge run` exit 134, and
    // `forge serve` on its first chat request).
    let dir = temp_dir("hostile-template");
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir);
    let bad = dir.join("bad.gguf");
    let source = "{% set ns = namespace(n=1) %}{% set ns.n = ns %}{{ ns.n }}";
    rewrite(&tiny.gguf, &bad, |k, v| (k != "tokenizer.chat_template").then(|| v.clone()), &[("tokenizer.chat_template", MetaValue::Str(source.into()))], same);
    let m = Model::load(&bad).expect("the model itself is fine");
    let template = m.tokenizer.chat_template().expect("the template compiles");
    let e = template.render(&[forge_engine::tokenizer::ChatMessage::new("user", "hi")], true).expect_err("a template holding itself cannot render");
    assert!(matches!(e, ForgeError::ChatTemplate { .. }), "{e}");
    assert!(e.to_string().starts_with("chat template:"), "the error names the template: {e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tiny model's vocabulary as SentencePiece (`tokenizer.ggml.model = "llama"`, still 256
/// entries: `<unk> <s> </s>` and byte tokens, no space prefix) with `key` set to `value`, or dropped for `None`.
fn spm_keys(key: &str, value: Option<MetaValue>) -> Vec<(&'static str, MetaValue)> {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    tokens.extend((0..253).map(|b| format!("<0x{b:02X}>")));
    let types = [2, 3, 3].into_iter().chain(std::iter::repeat_n(6, 253));
    let keys = [
        ("tokenizer.ggml.model", MetaValue::Str("llama".into())),
        ("tokenizer.ggml.tokens", MetaValue::Array(tokens.into_iter().map(MetaValue::Str).collect())),
        ("tokenizer.ggml.token_type", MetaValue::Array(types.map(MetaValue::I32).collect())),
        ("tokenizer.ggml.scores", MetaValue::Array(vec![MetaValue::F32(0.0); 256])),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(2)),
        ("tokenizer.ggml.unknown_token_id", MetaValue::U32(0)),
        ("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false)),
    ];
    keys.into_iter()
        .filter_map(|(k, v)| if k == key { value.clone().map(|v| (k, v)) } else { Some((k, v)) })
        .collect()
}

fn no_tokenizer(k: &str, v: &MetaValue) -> Option<MetaValue> {
    (!k.starts_with("tokenizer.")).then(|| v.clone())
}

#[test]
fn sentencepiece_vocabulary_that_lies() {
    // The SentencePiece vocabulary itself is good.
    let dir = temp_dir("hostile-spm-control");
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir);
    let spm = dir.join("spm.gguf");
    rewrite(&tiny.gguf, &spm, no_tokenizer, &spm_keys("", None), same);
    let m = Model::load(&spm).expect("the SentencePiece vocabulary loads");
    assert_eq!(m.tokenizer.encode("\u{1}", true, true).unwrap(), [1, 4]);
    let _ = std::fs::remove_dir_all(&dir);

    let mut bad_types: Vec<MetaValue> = [2, 3, 3].into_iter().chain(std::iter::repeat_n(6, 253)).map(MetaValue::I32).collect();
    bad_types[5] = MetaValue::I32(9);
    let cases = [
        ("spm-no-scores", "tokenizer.ggml.scores", None, "tokenizer.ggml.scores is missing"),
        ("spm-short-scores", "tokenizer.ggml.scores", Some(MetaValue::Array(vec![MetaValue::F32(0.0); 255])), "tokenizer.ggml.scores has 255 entries for 256 tokens"),
        ("spm-type", "tokenizer.ggml.token_type", Some(MetaValue::Array(bad_types)), "tokenizer.ggml.token_type[5] = 9 is not a token type"),
        ("spm-bos", "tokenizer.ggml.bos_token_id", Some(MetaValue::U32(256)), "tokenizer.ggml.bos_token_id = 256 is outside the vocabulary"),
        ("spm-eos", "tokenizer.ggml.eos_token_id", Some(MetaValue::U64(1 << 40)), "tokenizer.ggml.eos_token_id = 1099511627776 is outside"),
        ("spm-unk", "tokenizer.ggml.unknown_token_id", Some(MetaValue::U32(300)), "tokenizer.ggml.unknown_token_id = 300 is outside"),
    ];
    for (name, key, value, says) in cases {
        let e = load_err(name, no_tokenizer, &spm_keys(key, value), same);
        assert!(matches!(e, ForgeError::Tokenizer { .. }), "{name}: {e}");
        assert!(e.to_string().contains(says), "{name}: {e}");
    }
}

/// The tiny llama's metadata under another architecture's keys (`llama.*` → `{arch}.*`), plus
/// `extra`: enough for the config reader, which refuses bad hyperparameters before any tensor is
/// looked up.
fn as_arch(name: &str, arch: &str, extra: &[(&str, MetaValue)]) -> ForgeError {
    let dir = temp_dir(&format!("hostile-{name}"));
    let tiny = TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir);
    let f = GgufFile::open(&tiny.gguf).unwrap();
    let mut renamed: Vec<(String, MetaValue)> = f.metadata.iter().filter_map(|(k, v)| k.strip_prefix("llama.").map(|rest| (format!("{arch}.{rest}"), v.clone()))).collect();
    renamed.push(("general.architecture".into(), MetaValue::Str(arch.into())));
    let add: Vec<(&str, MetaValue)> = renamed.iter().map(|(k, v)| (k.as_str(), v.clone())).chain(extra.iter().cloned()).collect();
    let bad = dir.join("bad.gguf");
    rewrite(&tiny.gguf, &bad, |k, v| (!k.starts_with("llama.") && k != "general.architecture").then(|| v.clone()), &add, same);
    let err = Model::load(&bad).expect_err(&format!("{name}: a lying model file must be refused"));
    let _ = std::fs::remove_dir_all(&dir);
    err
}

#[test]
fn sliding_window_out_of_range_names_the_key() {
    for (name, w) in [("window0", 0u64), ("window-huge", 1 << 40)] {
        let e = as_arch(name, "gemma3", &[("gemma3.attention.sliding_window", MetaValue::U64(w))]);
        assert!(matches!(e, ForgeError::TooLarge { .. }), "{name}: {e}");
        assert!(e.to_string().contains("gemma3.attention.sliding_window"), "{name}: {e}");
    }
}

#[test]
fn rope_keys_out_of_range_name_the_key() {
    for (name, key, value) in [
        ("base-negative", "gemma3.rope.freq_base", MetaValue::F32(-1.0)),
        ("base-nan", "gemma3.rope.freq_base", MetaValue::F32(f32::NAN)),
        ("scale-zero", "gemma3.rope.scaling.factor", MetaValue::F32(0.0)),
        ("scale-inf", "gemma3.rope.scaling.factor", MetaValue::F32(f32::INFINITY)),
    ] {
        let e = as_arch(name, "gemma3", &[(key, value)]);
        assert!(matches!(e, ForgeError::Malformed { .. }), "{name}: {e}");
        assert!(e.to_string().contains(key), "{name}: {e}");
    }
    // The same reader serves the llama family.
    let e = load_err("llama-base", set("llama.rope.freq_base", MetaValue::F32(0.0)), &[], same);
    assert!(e.to_string().contains("llama.rope.freq_base"), "{e}");
    // A scaling type the engine does not implement is refused, not ignored.
    let e = as_arch("scale-yarn", "gemma3", &[("gemma3.rope.scaling.type", MetaValue::Str("yarn".into())), ("gemma3.rope.scaling.factor", MetaValue::F32(4.0))]);
    assert!(matches!(e, ForgeError::UnsupportedModel { .. }), "{e}");
    assert!(e.to_string().contains("gemma3.rope.scaling.type") && e.to_string().contains("yarn"), "{e}");
}

#[test]
fn unknown_family_lists_every_supported_one() {
    let e = as_arch("family", "gemma2", &[]);
    assert!(matches!(e, ForgeError::UnknownArchitecture { .. }), "{e}");
    assert!(e.to_string().contains("gemma2") && e.to_string().contains("gemma3") && e.to_string().contains("qwen2"), "{e}");
}
