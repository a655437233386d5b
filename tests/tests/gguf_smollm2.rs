//! The GGUF reader on the real SmolLM2-135M-Instruct Q4_1 file, found where `forge pull` puts it
//! (`forge_tests::smollm2_path`: the binary's cache rule, `XDG_CACHE_HOME` included); skipped
//! when it is absent, a failure when `FORGE_REQUIRE_MODEL=1`.

use forge_engine::DType;
use forge_engine::formats::gguf::GgufFile;
use forge_tests::smollm2_path;

#[test]
fn real_smollm2_q4_1_parses_with_its_known_structure() {
    let Some(path) = smollm2_path() else { return };
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
    eprintln!("parsed {} tensors, {} metadata keys in {took:?}", f.tensors.len(), f.metadata.len());
}
