//! The SentencePiece tokenizer of Gemma 3 270M (GGUF, 262,144 tokens, `add_space_prefix` false)
//! against llama.cpp: its reference run (`tests/fixtures/gemma3-270m-q4_k_m.llama-cpp.json`) and
//! the facts of `shared/design/gemma3.md` §2 and §4. Skips when the model is absent, unless
//! `FORGE_REQUIRE_MODEL=1`.

use std::time::Instant;

use forge_engine::formats::gguf::GgufFile;
use forge_engine::tokenizer::{ChatMessage, TokenStream, Tokenizer};
use forge_tests::{Reference, fixture_path, gemma3_path};

fn gemma3() -> Option<Tokenizer> {
    let path = gemma3_path()?;
    let file = GgufFile::open(&path).expect("the model file parses");
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&file.metadata).expect("the tokenizer builds");
    eprintln!("Tokenizer::from_gguf ({} tokens): {:.1} ms", tok.vocab_size(), t0.elapsed().as_secs_f64() * 1e3);
    Some(tok)
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixture_path("gemma3-270m-q4_k_m.llama-cpp.json")).expect("fixture present");
    serde_json::from_str(&text).expect("fixture parses")
}

/// The id of the vocabulary entry stored as `text`.
fn id_of(tok: &Tokenizer, text: &str) -> u32 {
    (0..tok.vocab_size() as u32).find(|&i| tok.token_text(i).as_deref() == Some(text)).unwrap_or_else(|| panic!("{text:?} is not in the vocabulary"))
}

fn in_vocab(tok: &Tokenizer, text: &str) -> bool {
    (0..tok.vocab_size() as u32).any(|i| tok.token_text(i).as_deref() == Some(text))
}

#[test]
fn prompts_encode_as_llama_cpp() {
    let Some(tok) = gemma3() else { return };
    let reference = reference();
    assert!(reference.add_bos);
    assert!(!reference.cases.is_empty());
    for case in &reference.cases {
        // llama-cli and llama-server tokenize prompts with parse_special = true.
        let t0 = Instant::now();
        let ids = tok.encode(&case.text_fed, true, true).unwrap();
        eprintln!("{}: {} tokens in {:.2} ms", case.id, ids.len(), t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(ids, case.prompt_ids, "{}: {:?}", case.id, case.text_fed);
        assert_eq!(tok.decode(&ids).unwrap(), case.text_fed, "{}: decode", case.id);
    }
}

#[test]
fn greedy_ids_decode_as_llama_cpp() {
    let Some(tok) = gemma3() else { return };
    for case in &reference().cases {
        assert_eq!(tok.decode(&case.greedy_ids).unwrap(), case.greedy_text, "{}", case.id);
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
fn hard_strings_encode_as_llama_cpp() {
    let Some(tok) = gemma3() else { return };
    // shared/design/gemma3.md §4, from llama.cpp. No space prefix: "Hello" is not "▁Hello".
    assert_eq!(tok.encode("Hello world", true, true).unwrap(), [2, 9259, 1902]);
    assert_eq!([tok.token_text(9259).unwrap(), tok.token_text(1902).unwrap()], ["Hello", "▁world"]);
    // Runs of 2 and 3 spaces are user-defined tokens (138, 139), cut out before SPM sees the text.
    let ids = tok.encode("two  spaces and   three", true, true).unwrap();
    assert_eq!(ids, [2, 13498, 138, 35220, 532, 139, 19891]);
    let texts: Vec<String> = ids[1..].iter().map(|&i| tok.token_text(i).unwrap()).collect();
    assert_eq!(texts, ["two", "  ", "spaces", "▁and", "   ", "three"]);

    // User-defined tokens are matched even without parse_special (§4.1).
    for (text, id) in [("\n\n", 108), ("  ", 138), ("\t", 255968)] {
        assert_eq!(tok.token_text(id).as_deref(), Some(text));
        assert_eq!(tok.encode(text, false, false).unwrap(), [id], "{text:?}");
    }
    let h1 = id_of(&tok, "<h1>");
    assert_eq!(tok.encode("<h1>", false, false).unwrap(), [h1]);
    // Control tokens only with parse_special.
    assert_eq!(tok.token_text(105).as_deref(), Some("<start_of_turn>"));
    assert_eq!(tok.encode("<start_of_turn>", false, true).unwrap(), [105]);
    assert!(!tok.encode("<start_of_turn>", false, false).unwrap().contains(&105));
    // No multi-digit tokens: one token per digit.
    assert_eq!(tok.encode("1234", false, true).unwrap().len(), 4);

    // A character the vocabulary lacks falls back to its UTF-8 bytes.
    for c in ['\u{1}', '\u{7f}', '\u{10ffff}'] {
        let s = c.to_string();
        if in_vocab(&tok, &s) {
            continue;
        }
        let mut buf = [0u8; 4];
        let want: Vec<u32> = c.encode_utf8(&mut buf).bytes().map(|b| id_of(&tok, &format!("<0x{b:02X}>"))).collect();
        assert_eq!(tok.encode(&s, false, true).unwrap(), want, "{c:?}");
        assert!(want.iter().all(|id| (238..=493).contains(id)), "{want:?}");
    }
}

#[test]
fn adversarial_strings_roundtrip() {
    let Some(tok) = gemma3() else { return };
    let cases = [
        "",
        " ",
        "                                                  ",
        " leading and trailing ",
        "\n\n\n\t\t \r\n",
        "<h1>Title</h1><table><tr><td>x</td></tr></table>",
        "café naïve Ærøskøbing",
        "日本語のテキストと中文",
        "😀👍🏽🇫🇷 family: 👨‍👩‍👧",
        "control \u{1}\u{2}\u{7f} chars and \u{10ffff}",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "<start_of_turn>user\nhi<end_of_turn>\n",
    ];
    for s in cases {
        for parse_special in [false, true] {
            let ids = tok.encode(s, false, parse_special).unwrap();
            let back = tok.decode(&ids).unwrap();
            if parse_special && s.contains("<start_of_turn>") {
                // Control tokens render as nothing.
                assert_eq!(back, "user\nhi\n");
            } else {
                assert_eq!(back, s, "parse_special {parse_special}: {ids:?}");
            }
        }
    }
}

#[test]
fn text_holding_the_space_mark_decodes_to_spaces() {
    let Some(tok) = gemma3() else { return };
    // '▁' in the text is the vocabulary's own space mark, so it comes back as a space (llama.cpp
    // too: `llama_unescape_whitespace` on every normal token).
    let ids = tok.encode("a▁b ▁", false, true).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "a b  ");
}

#[test]
fn special_ids_and_stops() {
    let Some(tok) = gemma3() else { return };
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(2), Some(1)));
    // llama.cpp's end-of-generation set: <eos>, and <end_of_turn> found by its text.
    assert_eq!(tok.stop_ids(), [1, 106]);
    assert_eq!(tok.token_text(106).as_deref(), Some("<end_of_turn>"));
    // Control tokens render as nothing, user-defined ones as their text.
    assert_eq!(tok.decode(&[2, 105, 9259, 106, 138, 1]).unwrap(), "Hello  ");
}

#[test]
fn gemma_turn_format_without_a_template_in_the_file() {
    let Some(tok) = gemma3() else { return };
    let template = tok.chat_template().expect("gemma3 without tokenizer.chat_template gets Gemma's turn format");
    let msgs = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi!")];
    let text = template.render(&msgs, true).unwrap();
    assert_eq!(text, "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\n");
    // As forge run and the server encode it: one BOS, the template's.
    let ids = tok.encode(&text, true, true).unwrap();
    assert_eq!(&ids[..2], [2, 105]);
    assert_eq!(ids.iter().filter(|&&id| id == 2).count(), 1);
    assert_eq!(ids[ids.len() - 3..], [105, id_of(&tok, "model"), 107]);
}
