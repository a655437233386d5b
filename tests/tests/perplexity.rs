//! Perplexity on the CPU backend must agree with `llama-perplexity -c 512` on the same text and
//! model (tests/fixtures/perplexity-dev.json): within 0.5% with the f16 KV cache llama.cpp uses,
//! within 1% with an f32 or q8_0 cache.

use forge_engine::backend::cpu::CpuBackend;
use forge_engine::perplexity::perplexity;
use forge_engine::session::KvType;
use forge_engine::{Model, Session};
use forge_tests::{fixture_path, smollm2_path};

#[test]
fn perplexity_matches_llama_cpp_within_one_percent() {
    let Some(path) = smollm2_path() else { return };
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture_path("perplexity-dev.json")).unwrap()).unwrap();
    let expected = reference["ppl"].as_f64().unwrap();
    let ctx = reference["ctx"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(fixture_path("perplexity-dev.txt")).unwrap();
    let model = Model::load(&path).unwrap();
    let tokens = model.tokenizer.encode(&text, true, false).unwrap();
    // llama.cpp's figure is with its default f16 cache: ours must be within 0.5% of it (the
    // issue's bound), and the other cache types within 1%.
    for (kv, bound) in [(KvType::F16, 0.005), (KvType::F32, 0.01), (KvType::Q8_0, 0.01)] {
        let mut session = Session::with_kv_type(&model, Box::new(CpuBackend::new()), ctx, kv, &mut |_, _| {}).unwrap();
        let p = perplexity(&mut session, &tokens, ctx, None, &mut |_, _| {}).unwrap();
        eprintln!("{kv} cache: perplexity {:.4} ± {:.4} over {} chunks; llama.cpp {expected}", p.ppl, p.stderr, p.chunks);
        assert_eq!(p.chunks, 4, "llama.cpp scored 4 chunks of {ctx}");
        let rel = (p.ppl - expected).abs() / expected;
        assert!(rel < bound, "{kv} cache: perplexity {} vs llama.cpp {expected}: {:.2}% apart", p.ppl, rel * 100.0);
    }
}
