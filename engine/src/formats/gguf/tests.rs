use super::*;

/// `$FORGE_MODEL_DIR/<name>`, else `~/.cache/forge/models/<name>`, if it exists.
fn model_path(name: &str) -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("FORGE_MODEL_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/forge/models"),
    };
    let p = dir.join(name);
    p.exists().then_some(p)
}

#[test]
fn real_smollm2_q4_1() {
    let Some(path) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        eprintln!("skipping: SmolLM2-135M-Instruct.Q4_1.gguf not found");
        return;
    };
    let t0 = std::time::Instant::now();
    let f = GgufFile::open(&path).unwrap();
    let took = t0.elapsed();
    assert_eq!(f.tensors.len(), 272);
    let mut types: Vec<DType> = f.tensors.iter().map(|t| t.dtype).collect();
    types.sort();
    types.dedup();
    assert_eq!(types, [DType::F32, DType::Q4_1, DType::Q8_0]);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.metadata.u64("llama.block_count").unwrap(), 30);
    assert_eq!(f.metadata.u64("llama.embedding_length").unwrap(), 576);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.shape, [49152, 576]);
    assert_eq!(f.tensor_bytes(emb).len(), emb.n_bytes);
    assert!(f.tensors.iter().all(|t| t.offset % f.alignment == 0));
    assert_eq!(f.metadata.str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert!(took.as_millis() < 2000, "parsing took {took:?}");
    eprintln!("parsed {} tensors, {} metadata keys in {took:?}", f.tensors.len(), f.metadata.len());
}
