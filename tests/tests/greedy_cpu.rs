//! End to end on the CPU backend: the real SmolLM2-135M Q4_1 must tokenize every reference prompt
//! as llama.cpp does and agree with llama.cpp's greedy continuation position by position,
//! teacher-forced (`forge_tests::reference`), through the prefill and decode paths and free-running.

use forge_engine::backend::cpu::CpuBackend;
use forge_engine::tokenizer::ChatMessage;
use forge_engine::{GenerateOptions, Model, Session, generate};
use forge_tests::reference::{Depth, check_backend};
use forge_tests::{llama_cpp_reference, smollm2_path};

#[test]
fn chat_template_renders_llama_cpp_s_input() {
    let Some(path) = smollm2_path() else { return };
    let model = Model::load(&path).expect("model loads");
    let tpl = model.tokenizer.chat_template().expect("SmolLM2 has a chat template");
    for case in llama_cpp_reference().cases.iter().filter(|c| c.mode == "chat") {
        let text = tpl.render(&[ChatMessage { role: "user".into(), content: case.prompt.clone() }], true).expect("template renders");
        assert_eq!(text, case.text_fed, "{}: the chat template rendered differently from llama.cpp's input", case.id);
    }
}

#[test]
fn agrees_with_llama_cpp_on_cpu() {
    let Some(path) = smollm2_path() else { return };
    let model = Model::load(&path).expect("model loads");
    let n = llama_cpp_reference().n_gen;
    check_backend(&model, Box::new(CpuBackend::new()), Depth { prefill: n, decode: n, generate: n });
}

#[test]
fn prompt_longer_than_context_is_a_clear_error() {
    let Some(path) = smollm2_path() else { return };
    let model = Model::load(&path).expect("model loads");
    let mut session = Session::new(&model, Box::new(CpuBackend::new()), 8, &mut |_, _| {}).expect("session");
    let prompt = model.tokenizer.encode("one two three four five six seven eight nine ten", false, false).unwrap();
    let err = generate(&mut session, &model.tokenizer, &prompt, &GenerateOptions { max_tokens: 4, ..Default::default() }, &mut |_| {}).unwrap_err();
    assert!(matches!(err, forge_engine::ForgeError::ContextOverflow { ctx: 8, .. }), "{err}");
    assert!(err.to_string().contains("--ctx"), "the message should say what to do: {err}");
    // prompt + max_tokens must not wrap around to a small number that passes the check (it used
    // to, and generation ran until the context was full).
    let mut produced = String::new();
    let err = generate(&mut session, &model.tokenizer, &prompt[..1], &GenerateOptions { max_tokens: usize::MAX, ..Default::default() }, &mut |t| produced += t).unwrap_err();
    assert!(matches!(err, forge_engine::ForgeError::ContextOverflow { need: usize::MAX, ctx: 8 }), "{err}");
    assert!(produced.is_empty(), "refused before generating, yet produced {produced:?}");
}
