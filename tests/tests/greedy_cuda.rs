//! SmolLM2-135M-Instruct (Q4_1) on the CUDA backend against llama.cpp's reference for every case
//! of `tests/fixtures/smollm2-135m-q4_1.llama-cpp.json`, teacher-forced through prefill and decode
//! and free-running (`forge_tests::reference`). Skips when the model or a CUDA device is absent, unless
//! `FORGE_REQUIRE_MODEL=1` / `FORGE_REQUIRE_CUDA=1`.

use forge_engine::backend::cuda::CudaBackend;
use forge_engine::Model;
use forge_tests::reference::{Depth, check_backend};
use forge_tests::{llama_cpp_reference, smollm2_path};

fn backend() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("FORGE_REQUIRE_CUDA").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_CUDA=1 but {e}"),
        Err(e) => {
            eprintln!("skipping: no CUDA device ({e})");
            None
        }
    }
}

#[test]
fn agrees_with_llama_cpp_on_cuda() {
    let Some(path) = smollm2_path() else { return };
    let Some(backend) = backend() else { return };
    let model = Model::load(&path).expect("the model loads");
    let n = llama_cpp_reference().n_gen;
    check_backend(&model, Box::new(backend), Depth { prefill: n, decode: n, generate: n });
}
