//! A small byte-level tokenizer whose multi-byte tokens (`{"`, `": `, `true`, `12`, `é`) cross
//! several DFA transitions and JSON tokens, and the shared helpers of the constraint tests.

mod matcher;
mod schema;

use crate::tokenizer::Tokenizer;

/// Multi-character tokens beside the 256 single bytes (all but `~`, so the grammar can reach a
/// byte no token spells).
const WORDS: &[&str] = &[
    "{\"",
    "\":",
    "\": ",
    "\", \"",
    "\",",
    "\"}",
    "},",
    "}]",
    "[{",
    "[\"",
    "\"]",
    ", ",
    ",\n  ",
    "\n  ",
    " {",
    "true",
    "false",
    "null",
    "nu",
    "ll",
    "12",
    "345",
    "0.",
    ".5",
    "e+",
    "-1",
    "name",
    "age",
    "\"name\": \"",
    "cat",
    "é",
    "αβ",
    "ab",
    "c@",
    ".com",
    "\\\"",
    "\\u00",
];

/// The byte a token for `~` would spell: absent from the test vocabulary.
pub(super) const MISSING_BYTE: u8 = b'~';

/// GPT-2's byte → char table (as `tokenizer::pretokenize::bytes_to_chars`, private there).
fn byte_chars() -> Vec<char> {
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b)
            } else {
                next += 1;
                char::from_u32(next - 1).expect("U+0100..U+0143 are chars")
            }
        })
        .collect()
}

/// Ids: 0 `<|im_end|>` (control, the stop id), 1 `<|im_start|>` (control, not a stop), then
/// the bytes, then `WORDS`.
pub(super) fn tokenizer() -> Tokenizer {
    let chars = byte_chars();
    let spell = |s: &[u8]| -> String { s.iter().map(|&b| chars[b as usize]).collect() };
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|im_end|>".into(), 0.into());
    vocab.insert("<|im_start|>".into(), 1.into());
    let texts = (0..=255u8)
        .filter(|&b| b != MISSING_BYTE)
        .map(|b| spell(&[b]))
        .chain(WORDS.iter().map(|w| spell(w.as_bytes())));
    for (i, t) in texts.enumerate() {
        vocab.insert(t, (i + 2).into());
    }
    let added = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let byte_level =
        serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tj = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "<|im_end|>"), added(1, "<|im_start|>")],
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []},
    });
    let dir =
        std::env::temp_dir().join(format!("forge-constrain-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"eos_token": "<|im_end|>"}"#).unwrap();
    let tok = Tokenizer::from_hf_dir(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let tok = tok.unwrap();
    assert_eq!(tok.stop_ids(), [0]);
    tok
}

/// The id of the token that renders exactly `text`.
pub(super) fn id_of(tok: &Tokenizer, text: &str) -> u32 {
    (0..tok.vocab_size() as u32)
        .find(|&id| tok.render(id).unwrap() == text.as_bytes())
        .unwrap_or_else(|| panic!("no token {text:?}"))
}

/// Whether `text` matches `re` in full, by regex-automata's own search (not our DFA walk).
pub(super) fn full_match(re: &str, text: &str) -> bool {
    regex_automata::dfa::regex::Regex::new(&format!(r"\A(?:{re})\z")).expect("the regex compiles").is_match(text)
}
