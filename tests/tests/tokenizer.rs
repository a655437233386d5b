//! The tokenizer and chat template of SmolLM2-135M-Instruct (GGUF) against llama.cpp's reference
//! run (`tests/fixtures/smollm2-135m-q4_1.llama-cpp.json`). Skips when the model is absent, unless
//! `FORGE_REQUIRE_MODEL=1`.

use forge_engine::formats::gguf::GgufFile;
use forge_engine::tokenizer::{ChatMessage, TokenStream, Tokenizer};
use forge_tests::{llama_cpp_reference, smollm2_path};

fn smollm2() -> Option<Tokenizer> {
    let path = smollm2_path()?;
    let file = GgufFile::open(&path).expect("the model file parses");
    Some(Tokenizer::from_gguf(&file.metadata).expect("the tokenizer builds"))
}

#[test]
fn prompts_encode_as_llama_cpp() {
    let Some(tok) = smollm2() else { return };
    let reference = llama_cpp_reference();
    assert!(!reference.cases.is_empty());
    for case in &reference.cases {
        let ids = tok.encode(&case.text_fed, reference.add_bos, true).unwrap();
        assert_eq!(ids, case.prompt_ids, "{}: {:?}", case.id, case.text_fed);
    }
}

#[test]
fn greedy_ids_decode_as_llama_cpp() {
    let Some(tok) = smollm2() else { return };
    for case in &llama_cpp_reference().cases {
        assert_eq!(tok.decode(&case.greedy_ids).unwrap(), case.greedy_text, "{}", case.id);
        // Streaming gives the same text.
        let mut stream = TokenStream::new(&tok);
        let mut text = String::new();
        for &id in &case.greedy_ids {
            text += &stream.push(id).unwrap();
        }
        text += &stream.finish().unwrap();
        assert_eq!(text, case.greedy_text, "{} (streamed)", case.id);
    }
}

#[test]
fn chat_template_renders_as_llama_cpp() {
    let Some(tok) = smollm2() else { return };
    let template = tok.chat_template().expect("SmolLM2 ships a chat template");
    let chats: Vec<_> = llama_cpp_reference().cases.into_iter().filter(|c| c.mode == "chat").collect();
    assert!(!chats.is_empty());
    for case in &chats {
        let text = template.render(&[ChatMessage::new("user", case.prompt.clone())], true).unwrap();
        assert_eq!(text, case.text_fed, "{}", case.id);
    }
}

#[test]
fn special_ids_and_stops() {
    let Some(tok) = smollm2() else { return };
    let reference = llama_cpp_reference();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.eos_id(), Some(reference.eos_token_id));
    assert!(tok.stop_ids().contains(&reference.eos_token_id));
    let im_end = tok.encode("<|im_end|>", false, true).unwrap();
    assert_eq!(im_end.len(), 1);
    assert!(tok.stop_ids().contains(&im_end[0]));
    assert_eq!(tok.token_text(im_end[0]).as_deref(), Some("<|im_end|>"));
    // Without parse_special the same text is ordinary text.
    assert!(tok.encode("<|im_end|>", false, false).unwrap().len() > 1);
}

#[test]
fn adversarial_strings_roundtrip() {
    let Some(tok) = smollm2() else { return };
    let cases = [
        "",
        " ",
        "     ",
        "\n\n\n",
        "\t \r\n",
        "12345678",
        "3.14159 × 10⁻³",
        "😀👍🏽🇫🇷 family: 👨‍👩‍👧",
        "English, Русский, 日本語, 한국어, العربية, हिन्दी",
        "<|im_start|",
        "<|im_start|>",
        "< |im_end| >",
        "<|notatoken|>",
        "it's we'll I'M they've",
        "def f(x):\n\treturn x  # comment\n",
        "\u{0}\u{1f}\u{7f}\u{feff}",
    ];
    for s in cases {
        let ids = tok.encode(s, false, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), s, "{s:?} → {ids:?}");
        // With special parsing, only real special tokens change anything.
        let special = tok.encode(s, false, true).unwrap();
        if !s.contains("<|im_start|>") {
            assert_eq!(special, ids, "{s:?}");
        }
    }
    assert!(tok.encode("", true, true).unwrap().is_empty(), "SmolLM2 does not add BOS");
}
