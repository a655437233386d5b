//! Entry points shared by the fuzz targets (`fuzz/`) and the regression tests that replay their
//! corpus and every crash ever found (`tests/tests/fuzz_regressions.rs`). Each takes arbitrary
//! bytes and must return (with an error or not) without panicking, hanging or allocating more
//! than the input justifies.

use forge_engine::formats::FileBytes;
use forge_engine::formats::gguf::GgufFile;
use forge_engine::formats::safetensors::SafetensorsDir;
use forge_engine::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

/// The fuzz targets, by name (the file names under `fuzz/fuzz_targets/`).
pub const TARGETS: [&str; 3] = ["gguf", "safetensors", "chat_template"];

/// A GGUF file from a stranger: parse it, read every tensor's bytes, and build the model
/// description and the tokenizer from its metadata.
pub fn gguf(data: &[u8]) {
    let Ok(f) = GgufFile::from_bytes(FileBytes::from_vec(data.to_vec())) else { return };
    for t in &f.tensors {
        let b = f.tensor_bytes(t);
        assert_eq!(b.len(), t.n_bytes);
    }
    let _ = forge_engine::models::config_from_gguf(&f.metadata, &|n| f.tensor(n).is_some());
    if let Ok(tok) = Tokenizer::from_gguf(&f.metadata) {
        if let Ok(ids) = tok.encode("Hello <|im_start|> wörld 123", true, true) {
            let _ = tok.decode(&ids);
        }
    }
}

/// One `.safetensors` file from a stranger.
pub fn safetensors(data: &[u8]) {
    let _ = SafetensorsDir::parse_file(FileBytes::from_vec(data.to_vec()));
}

/// A chat template from a stranger, rendered with messages from the same bytes: the first line
/// is the message content, the rest the template.
pub fn chat_template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (content, source) = text.split_once('\n').unwrap_or(("hi", text));
    if let Ok(t) = ChatTemplate::new(source, "<s>", "</s>") {
        let msgs = [ChatMessage::new("system", "be brief"), ChatMessage::new("user", content)];
        let _ = t.render(&msgs, true);
    }
}

/// Runs the named target on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "gguf" => gguf(data),
        "safetensors" => safetensors(data),
        "chat_template" => chat_template(data),
        other => panic!("no fuzz target {other}"),
    }
}
