//! SmolLM2-135M-Instruct (Q4_1) on the wgpu backend against llama.cpp's reference for every case
//! of `tests/fixtures/smollm2-135m-q4_1.llama-cpp.json`, teacher-forced (`forge_tests::reference`).
//! Skips when the model or a wgpu adapter is absent, unless `FORGE_REQUIRE_MODEL=1` /
//! `FORGE_REQUIRE_WGPU=1`. Every position in one pass; the decode path and free-running
//! generation over the first 16 (lavapipe, a CPU Vulkan, is slow).

use forge_engine::backend::wgpu::WgpuBackend;
use forge_engine::Model;
use forge_tests::reference::{Depth, check_backend};
use forge_tests::{llama_cpp_reference, smollm2_path};

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
fn agrees_with_llama_cpp_on_wgpu() {
    let Some(path) = smollm2_path() else { return };
    let Some(backend) = backend() else { return };
    let model = Model::load(&path).expect("the model loads");
    let n = llama_cpp_reference().n_gen;
    check_backend(&model, Box::new(backend), Depth { prefill: n, decode: 16, generate: 16 });
}
