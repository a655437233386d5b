//! Tokenizer tests on small synthetic vocabularies built as GGUF metadata by hand.

use super::pretokenize::bytes_to_chars;
use super::*;
use crate::formats::gguf::{MetaValue, Metadata};

mod spm;

fn strs(v: &[String]) -> MetaValue {
    MetaValue::Array(v.iter().map(|s| MetaValue::Str(s.clone())).collect())
}

/// A byte-level vocabulary: three control tokens, all 256 byte chars, then `merges` in order.
fn gpt2_meta(pre: &str, merges: &[&str]) -> Metadata {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    let mut types = vec![3, 3, 3];
    tokens.extend(bytes_to_chars().iter().map(|c| c.to_string()));
    types.extend(std::iter::repeat_n(1, 256));
    for m in merges {
        let merged = m.replace(' ', "");
        if !tokens.contains(&merged) {
            tokens.push(merged);
            types.push(1);
        }
    }
    let mut m = Metadata::new();
    m.insert("tokenizer.ggml.model", MetaValue::Str("gpt2".into()));
    m.insert("tokenizer.ggml.pre", MetaValue::Str(pre.into()));
    m.insert("tokenizer.ggml.tokens", strs(&tokens));
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()));
    m.insert("tokenizer.ggml.merges", strs(&merges.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
    m.insert("tokenizer.ggml.bos_token_id", MetaValue::U32(1));
    m.insert("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
    m
}

const HELLO_MERGES: &[&str] =
    &["h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "12 3"];

fn id_of(t: &Tokenizer, text: &str) -> u32 {
    (0..t.vocab_size() as u32).find(|&i| t.token_text(i).as_deref() == Some(text)).expect(text)
}

#[test]
fn byte_level_bpe_merges_in_rank_order() {
    let t = Tokenizer::from_gguf(&gpt2_meta("gpt2", HELLO_MERGES)).unwrap();
    let ids = t.encode("hello world", false, false).unwrap();
    assert_eq!(ids, [id_of(&t, "hello"), id_of(&t, "Ġworld")]);
    assert_eq!(t.decode(&ids).unwrap(), "hello world");
    // gpt-2 keeps digit runs together; smollm splits every digit first.
    assert_eq!(t.encode("123", false, false).unwrap(), [id_of(&t, "123")]);
    let s = Tokenizer::from_gguf(&gpt2_meta("smollm", HELLO_MERGES)).unwrap();
    assert_eq!(s.encode("123", false, false).unwrap(), [id_of(&s, "1"), id_of(&s, "2"), id_of(&s, "3")]);
}

#[test]
fn every_supported_pre_tokenizer_builds_and_roundtrips() {
    for pre in ["default", "llama-bpe", "qwen2", "gpt2", "smollm", "falcon", "dbrx"] {
        let t = Tokenizer::from_gguf(&gpt2_meta(pre, HELLO_MERGES)).unwrap();
        for s in ["hello world", "It's 12345 o'clock!\n\n  x", "héllo 😀 мир"] {
            let ids = t.encode(s, false, false).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), s, "pre {pre}");
        }
    }
}

#[test]
fn unknown_pre_tokenizer_lists_the_supported_ones() {
    let e = Tokenizer::from_gguf(&gpt2_meta("nonesuch", &[])).unwrap_err().to_string();
    assert!(e.contains("nonesuch") && e.contains("smollm") && e.contains("llama-bpe"), "{e}");
}

#[test]
fn special_tokens_only_with_parse_special() {
    let t = Tokenizer::from_gguf(&gpt2_meta("smollm", HELLO_MERGES)).unwrap();
    let text = "<|im_start|>hello<|im_end|>";
    let ids = t.encode(text, false, true).unwrap();
    assert_eq!(ids, [1, id_of(&t, "hello"), 2]);
    let plain = t.encode(text, false, false).unwrap();
    assert!(!plain.contains(&1) && !plain.contains(&2), "{plain:?}");
    assert_eq!(t.decode(&plain).unwrap(), text);
    // Control tokens render as nothing.
    assert_eq!(t.decode(&ids).unwrap(), "hello");
    // Stop ids: eos, plus end-of-turn lookalikes.
    assert_eq!(t.stop_ids(), [0, 2]);
    // BOS: the model does not ask for it (gpt2 default), so add_bos=true adds nothing.
    assert_eq!(t.encode("hello", true, false).unwrap(), [id_of(&t, "hello")]);
    let mut m = gpt2_meta("smollm", HELLO_MERGES);
    m.insert("tokenizer.ggml.add_bos_token", MetaValue::Bool(true));
    let b = Tokenizer::from_gguf(&m).unwrap();
    assert_eq!(b.encode("hello", true, false).unwrap(), [1, id_of(&b, "hello")]);
    assert_eq!(b.encode("hello", false, false).unwrap(), [id_of(&b, "hello")]);
}

#[test]
fn out_of_range_ids_are_errors() {
    let t = Tokenizer::from_gguf(&gpt2_meta("gpt2", &[])).unwrap();
    assert!(matches!(t.decode(&[1_000_000]), Err(ForgeError::Tokenizer { .. })));
    assert!(TokenStream::new(&t).push(1_000_000).is_err());
    assert_eq!(t.token_text(1_000_000), None);
}

/// A SentencePiece vocabulary: `<unk> <s> </s>`, 256 byte tokens, then `(piece, score)`.
fn llama_meta(pieces: &[(&str, f32)]) -> Metadata {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    let mut m = Metadata::new();
    m.insert("tokenizer.ggml.model", MetaValue::Str("llama".into()));
    m.insert("tokenizer.ggml.tokens", strs(&tokens));
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()));
    m.insert("tokenizer.ggml.scores", MetaValue::Array(scores.into_iter().map(MetaValue::F32).collect()));
    m.insert("tokenizer.ggml.bos_token_id", MetaValue::U32(1));
    m.insert("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
    m.insert("tokenizer.ggml.unknown_token_id", MetaValue::U32(0));
    m
}

const SPM_PIECES: &[(&str, f32)] = &[
    ("▁", -1.0),
    ("h", -1.0),
    ("e", -1.0),
    ("l", -1.0),
    ("o", -1.0),
    ("he", -2.0),
    ("ll", -3.0),
    ("hell", -4.0),
    ("hello", -5.0),
    ("▁hello", -6.0),
    ("▁h", -10.0),
];

#[test]
fn sentencepiece_merges_by_score_with_prefix_space() {
    let t = Tokenizer::from_gguf(&llama_meta(SPM_PIECES)).unwrap();
    let hello = id_of(&t, "▁hello");
    assert_eq!(t.encode("hello", false, false).unwrap(), [hello]);
    // llama's default is add_bos = true.
    assert_eq!(t.encode("hello", true, false).unwrap(), [1, hello]);
    assert_eq!(t.decode(&[1, hello, hello]).unwrap(), "hello hello");
    // A higher-scoring `▁h` wins the first merge and blocks `he`.
    let mut pieces = SPM_PIECES.to_vec();
    pieces.last_mut().unwrap().1 = -0.5;
    let t2 = Tokenizer::from_gguf(&llama_meta(&pieces)).unwrap();
    let expect: Vec<u32> = ["▁h", "e", "ll", "o"].iter().map(|p| id_of(&t2, p)).collect();
    assert_eq!(t2.encode("hello", false, false).unwrap(), expect);
}

#[test]
fn sentencepiece_byte_fallback() {
    let t = Tokenizer::from_gguf(&llama_meta(SPM_PIECES)).unwrap();
    let ids = t.encode("hello é", false, false).unwrap();
    let expect = [id_of(&t, "▁hello"), id_of(&t, "▁"), id_of(&t, "<0xC3>"), id_of(&t, "<0xA9>")];
    assert_eq!(ids, expect);
    assert_eq!(t.decode(&ids).unwrap(), "hello é");
    // `<s>` in text is a control token: only with parse_special.
    assert_eq!(t.encode("<s>hello", false, true).unwrap(), [1, id_of(&t, "▁hello")]);
    assert_eq!(t.stop_ids(), [2]);
}

#[test]
fn stream_holds_back_partial_utf8() {
    let t = Tokenizer::from_gguf(&gpt2_meta("gpt2", &[])).unwrap();
    let ids = t.encode("aé😀", false, false).unwrap();
    assert_eq!(ids.len(), 1 + 2 + 4, "no merges: one token per byte");
    let mut s = TokenStream::new(&t);
    assert_eq!(s.push(ids[0]).unwrap(), "a");
    assert_eq!(s.push(ids[1]).unwrap(), "");
    assert_eq!(s.push(ids[2]).unwrap(), "é");
    let mut out = String::new();
    for &id in &ids[3..] {
        out += &s.push(id).unwrap();
    }
    assert_eq!(out, "😀");
    assert_eq!(s.push(2).unwrap(), "", "control tokens render as nothing");
    assert_eq!(s.push(ids[3]).unwrap(), "");
    assert_eq!(s.finish().unwrap(), "\u{FFFD}");
    assert_eq!(s.finish().unwrap(), "");
}

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[test]
fn chatml_template_renders() {
    let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
    let msgs = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi!")];
    let out = t.render(&msgs, true).unwrap();
    assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
    assert!(!t.render(&msgs, false).unwrap().ends_with("assistant\n"));
}

#[test]
fn template_blocks_are_trimmed_like_hf() {
    let src = "{{ bos_token }}\n{% for m in messages %}\n    {% if m.role == 'user' %}\nU: {{ m.content.strip() }}\n    {% endif %}\n{% endfor %}\n";
    let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
    assert_eq!(t.render(&[ChatMessage::new("user", "  hi  ")], false).unwrap(), "<s>\nU: hi\n");
}

#[test]
fn hostile_templates_fail_typed() {
    let msgs = [ChatMessage::new("user", "x")];
    let run = |src: &str| ChatTemplate::new(src, "", "").unwrap().render(&msgs, true).unwrap_err();
    let e = run("{% for i in range(10**9) %}x{% endfor %}");
    assert!(matches!(e, ForgeError::ChatTemplate { .. }), "{e}");
    let e = run("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
    assert!(e.to_string().contains("ran too long"), "{e}");
    let e = run("{% for i in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}");
    assert!(e.to_string().contains("limit"), "{e}");
    let e = run("{% if messages[0].role == 'user' %}{{ raise_exception('Only assistants here') }}{% endif %}");
    assert!(matches!(&e, ForgeError::ChatTemplate { what } if what.contains("raised an exception: Only assistants here")), "{e}");
    assert!(ChatTemplate::new("{% for %}", "", "").is_err());
}

/// Fuel bounds a render to about 0.1 s: four million loop steps (found by the `chat_template`
/// fuzz target as a 10 s timeout under its instrumented build; 0.6 s in release with the old
/// limit) run out of it, while a chat far longer than any context is served well within it.
#[test]
fn fuel_stops_busy_templates_but_not_long_chats() {
    let msgs = [ChatMessage::new("user", "x")];
    let busy = "{% set ns = namespace(n=0) %}{% for i in range(568) %}{% for j in range(7354) %}{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}{{ ns.n }}";
    let e = ChatTemplate::new(busy, "", "").unwrap().render(&msgs, true).unwrap_err();
    assert!(e.to_string().contains("ran too long"), "{e}");
    let long: Vec<ChatMessage> = (0..5000).map(|i| ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, "a message of a few words")).collect();
    let out = ChatTemplate::new(CHATML, "", "").unwrap().render(&long, true).unwrap();
    assert_eq!(out.matches("<|im_start|>").count(), 5001);
}

/// Values that contain themselves or nest thousands deep used to overflow the stack while being
/// printed, compared or serialized, aborting the process (found by the `chat_template` fuzz
/// target; `fuzz/regressions/chat_template/`). Each is now a typed error naming the template.
#[test]
fn self_containing_and_deep_values_fail_typed() {
    let msgs = [ChatMessage::new("user", "x")];
    let run = |src: &str| ChatTemplate::new(src, "", "").unwrap().render(&msgs, true);
    for src in [
        "{% set ns = namespace(n=1) %}{% set ns.n = ns %}{{ ns.n }}",
        "{% set ns = namespace(n=1) %}{% set ns.n = [ns] %}{{ ns ~ '' }}",
        "{% set ns = namespace(n=1) %}{% set ns.n = ns %}{{ ns.n | string | length }}",
        "{% set a = namespace(n=1) %}{% set b = namespace(n=a) %}{% set a.n = b %}{{ [a, b] | sort }}",
        "{% set a = namespace(n=1) %}{% set b = namespace(n=1) %}{% set a.n = a %}{% set b.n = b %}{{ a == b }}",
        "{% set ns = namespace(l=[]) %}{% for i in range(20000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
        "{% set ns = namespace(n=1) %}{% set ns.n = ns %}{{ ns | tojson }}",
    ] {
        match run(src) {
            Err(ForgeError::ChatTemplate { what }) => assert!(!what.is_empty()),
            other => panic!("{src}: expected a chat-template error, got {other:?}"),
        }
    }
    // Nesting a real template uses is untouched, and the bound does not leak into the next render.
    let ok = "{% set ns = namespace(inner=namespace(a=[1, [2, [3]]])) %}{{ ns.inner.a }}";
    assert_eq!(run(ok).unwrap(), "[1, [2, [3]]]");
}

#[test]
fn tojson_and_strftime_match_python() {
    let t = ChatTemplate::new(
        "{{ {'a': [1, 'é', none, true, 2.5]} | tojson }}|{{ [1] | tojson(indent=2) }}|{{ strftime_now('%d %b %Y %j') }}",
        "",
        "",
    )
    .unwrap();
    t.set_clock(Some(1_721_952_000));
    assert_eq!(t.render(&[], false).unwrap(), "{\"a\": [1, \"é\", null, true, 2.5]}|[\n  1\n]|26 Jul 2024 208");
    assert_eq!(chat::strftime(0, "%A %B %e %H:%M:%S %p"), "Thursday January  1 00:00:00 AM");
}

/// A byte-level tokenizer.json directory with one control and one user-defined added token.
fn write_hf_dir(dir: &std::path::Path) {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|im_end|>".into(), 0.into());
    vocab.insert("<tool>".into(), 1.into());
    for (i, c) in bytes_to_chars().iter().enumerate() {
        vocab.insert(c.to_string(), (i + 2).into());
    }
    for (i, m) in HELLO_MERGES.iter().enumerate() {
        vocab.insert(m.replace(' ', ""), (258 + i).into());
    }
    let added = |id: u32, content: &str, special: bool| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": special})
    };
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let tj = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(0, "<|im_end|>", true), added(1, "<tool>", false)],
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": HELLO_MERGES},
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    let cfg = serde_json::json!({"eos_token": {"content": "<|im_end|>"}, "chat_template": CHATML});
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": [0, 1]}"#).unwrap();
}

#[test]
fn hf_dir_tokenizer() {
    let dir = std::env::temp_dir().join(format!("forge-tok-{}", std::process::id()));
    write_hf_dir(&dir);
    let t = Tokenizer::from_hf_dir(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let t = t.unwrap();
    let hello = id_of(&t, "hello");
    assert_eq!(t.encode("hello<|im_end|>", false, true).unwrap(), [hello, 0]);
    assert_ne!(t.encode("hello<|im_end|>", false, false).unwrap().last(), Some(&0));
    // User-defined tokens are matched without parse_special and render as text.
    let ids = t.encode("hello<tool> world", true, false).unwrap();
    assert_eq!(ids, [hello, 1, id_of(&t, "Ġworld")]);
    assert_eq!(t.decode(&ids).unwrap(), "hello<tool> world");
    assert_eq!((t.eos_id(), t.bos_id()), (Some(0), None));
    assert_eq!(t.stop_ids(), [0, 1]);
    let chat = t.chat_template().unwrap().render(&[ChatMessage::new("user", "hi")], true).unwrap();
    assert_eq!(chat, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}
