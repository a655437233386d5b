//! Greedy generation with SmolLM2-135M-Instruct (Q4_1) on the wgpu backend, against llama.cpp's
//! reference ids for every case of `tests/fixtures/smollm2-135m-q4_1.llama-cpp.json`.
//! Skips when the model or a wgpu adapter is absent, unless `FORGE_REQUIRE_MODEL=1` /
//! `FORGE_REQUIRE_WGPU=1`. Generates 24 tokens per case: lavapipe (CPU Vulkan) is slow.

use forge_engine::backend::wgpu::WgpuBackend;
use forge_engine::{GenerateOptions, Model, SamplerConfig, Session, generate};
use forge_tests::{check_greedy, llama_cpp_reference, smollm2_path};

const N_GEN: usize = 24;

fn backend() -> Option<WgpuBackend> {
    match WgpuBackend::new() {
        Ok(b) => Some(b),
        Err(e) if std::env::var("FORGE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_WGPU=1 but no wgpu device: {e}"),
        Err(e) => {
            eprintln!("skipping: no wgpu device ({e})");
            None
        }
    }
}

#[test]
fn greedy_ids_match_llama_cpp_on_wgpu() {
    let Some(path) = smollm2_path() else { return };
    let Some(backend) = backend() else { return };
    let model = Model::load(&path).expect("the model loads");
    let reference = llama_cpp_reference();
    let mut session = Session::new(&model, Box::new(backend), 512, &mut |_, _| {}).expect("the session opens");
    let opts = GenerateOptions { max_tokens: N_GEN, sampler: SamplerConfig { temperature: 0.0, ..SamplerConfig::default() }, ..GenerateOptions::default() };
    let mut failures = Vec::new();
    for case in &reference.cases {
        // Raw and chat cases alike: `text_fed` is exactly what llama.cpp was given.
        let prompt = model.tokenizer.encode(&case.text_fed, reference.add_bos, true).expect("the prompt encodes");
        assert_eq!(prompt, case.prompt_ids, "{}: prompt ids", case.id);
        session.reset();
        let g = generate(&mut session, &model.tokenizer, &prompt, &opts, &mut |_| {}).expect("generation runs");
        match check_greedy(case, &g.ids) {
            Ok(n) => eprintln!("{}: {n} ids agree", case.id),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
