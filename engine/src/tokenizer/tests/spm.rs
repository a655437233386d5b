//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`) built by hand: the merge loop
//! of llama.cpp's `llm_tokenizer_spm_session`, special tokens, decoding, the checks a vocabulary
//! is held to, and Gemma's turn format.

use super::{id_of, strs};
use crate::error::ForgeError;
use crate::formats::gguf::{MetaValue, Metadata};
use crate::tokenizer::{ChatMessage, Tokenizer};

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER: i32 = 4;

/// `<pad> <eos> <bos> <unk>` (Gemma's order), the 256 byte tokens, then `(text, score, type)`;
/// no space prefix, as Gemma.
fn vocab(entries: &[(&str, f32, i32)]) -> Metadata {
    let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"].map(String::from).to_vec();
    let mut types = vec![CONTROL, CONTROL, CONTROL, 2];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut scores = vec![0.0f32; tokens.len()];
    for &(text, score, kind) in entries {
        tokens.push(text.to_string());
        scores.push(score);
        types.push(kind);
    }
    let mut m = Metadata::new();
    m.insert("tokenizer.ggml.model", MetaValue::Str("llama".into()));
    m.insert("tokenizer.ggml.tokens", strs(&tokens));
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()));
    m.insert("tokenizer.ggml.scores", MetaValue::Array(scores.into_iter().map(MetaValue::F32).collect()));
    m.insert("tokenizer.ggml.bos_token_id", MetaValue::U32(2));
    m.insert("tokenizer.ggml.eos_token_id", MetaValue::U32(1));
    m.insert("tokenizer.ggml.unknown_token_id", MetaValue::U32(3));
    m.insert("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false));
    m
}

/// `m` without `key`.
fn without(m: &Metadata, key: &str) -> Metadata {
    let mut out = Metadata::new();
    for (k, v) in m.iter().filter(|(k, _)| *k != key) {
        out.insert(k, v.clone());
    }
    out
}

fn ids(t: &Tokenizer, texts: &[&str]) -> Vec<u32> {
    texts.iter().map(|s| id_of(t, s)).collect()
}

fn normal(texts: &[(&'static str, f32)]) -> Vec<(&'static str, f32, i32)> {
    texts.iter().map(|&(s, score)| (s, score, NORMAL)).collect()
}

#[test]
fn the_pair_whose_merge_scores_highest_merges_first() {
    let base = [("a", -1.0), ("b", -1.0), ("c", -1.0)];
    // `bc` outscores `ab`: a|bc. No `abc`, so that is final.
    let t = Tokenizer::from_gguf(&vocab(&normal(&[base[0], base[1], base[2], ("ab", -2.0), ("bc", -1.5)]))).unwrap();
    assert_eq!(t.encode("abc", false, false).unwrap(), ids(&t, &["a", "bc"]));
    let t = Tokenizer::from_gguf(&vocab(&normal(&[base[0], base[1], base[2], ("ab", -1.5), ("bc", -2.0)]))).unwrap();
    assert_eq!(t.encode("abc", false, false).unwrap(), ids(&t, &["ab", "c"]));
    // A merged symbol pairs with its new neighbour: ab + c → abc, though no pair of single
    // characters spells it.
    let t = Tokenizer::from_gguf(&vocab(&normal(&[base[0], base[1], base[2], ("ab", -1.5), ("abc", -9.0)]))).unwrap();
    assert_eq!(t.encode("abc", false, false).unwrap(), ids(&t, &["abc"]));
    // Scores decide, not ids or lengths: the later, longer entry with the better score wins.
    let t = Tokenizer::from_gguf(&vocab(&normal(&[("x", -1.0), ("y", -1.0), ("xy", -5.0), ("yxy", -1.0), ("yx", -4.0)]))).unwrap();
    assert_eq!(t.encode("yxy", false, false).unwrap(), ids(&t, &["yxy"]));
}

#[test]
fn ties_go_to_the_leftmost_pair() {
    let t = Tokenizer::from_gguf(&vocab(&normal(&[("a", -1.0), ("aa", -2.0)]))).unwrap();
    assert_eq!(t.encode("aaa", false, false).unwrap(), ids(&t, &["aa", "a"]));
    assert_eq!(t.encode("aaaaa", false, false).unwrap(), ids(&t, &["aa", "aa", "a"]));
}

#[test]
fn runs_of_spaces_merge_by_score() {
    // "a    b" is "a▁▁▁▁b": `▁b` outscores `▁▁`, then the leftmost `▁▁` of the three left.
    let t = Tokenizer::from_gguf(&vocab(&normal(&[("a", -1.0), ("b", -1.0), ("▁", -1.0), ("▁▁", -3.0), ("▁b", -2.0)]))).unwrap();
    let got = t.encode("a    b", false, false).unwrap();
    assert_eq!(got, ids(&t, &["a", "▁▁", "▁", "▁b"]));
    assert_eq!(t.decode(&got).unwrap(), "a    b");
    // Runs stored as user-defined tokens (Gemma: 2…31 spaces) are cut out first, longest first,
    // with real spaces, before any '▁' exists.
    let mut entries = normal(&[("a", -1.0), ("b", -1.0), ("▁", -1.0), ("▁b", -2.0)]);
    entries.extend([("  ", -1000.0, USER), ("   ", -1000.0, USER)]);
    let t = Tokenizer::from_gguf(&vocab(&entries)).unwrap();
    let got = t.encode("a     b b", false, false).unwrap();
    assert_eq!(got, ids(&t, &["a", "   ", "  ", "b", "▁b"]));
    assert_eq!(t.decode(&got).unwrap(), "a     b b");
}

#[test]
fn characters_outside_the_vocabulary_fall_back_to_bytes() {
    let t = Tokenizer::from_gguf(&vocab(&normal(&[("a", -1.0), ("é", -1.0)]))).unwrap();
    let got = t.encode("aé😀", false, false).unwrap();
    assert_eq!(got, ids(&t, &["a", "é", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]));
    assert_eq!(t.decode(&got).unwrap(), "aé😀");
    // Without byte tokens each byte is the unknown token (llama.cpp would throw).
    let mut m = vocab(&normal(&[("a", -1.0)]));
    let MetaValue::Array(tokens) = m.get("tokenizer.ggml.tokens").unwrap().clone() else { unreachable!() };
    let renamed: Vec<MetaValue> = tokens.into_iter().map(|v| match v {
        MetaValue::Str(s) if s.starts_with("<0x") => MetaValue::Str(format!("byte{s}")),
        v => v,
    }).collect();
    m.insert("tokenizer.ggml.tokens", MetaValue::Array(renamed.clone()));
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(vec![MetaValue::I32(NORMAL); renamed.len()]));
    let t = Tokenizer::from_gguf(&m).unwrap();
    assert_eq!(t.encode("aé", false, false).unwrap(), [id_of(&t, "a"), 3, 3]);
    // ... and without an unknown token either, a typed error.
    let t = Tokenizer::from_gguf(&without(&m, "tokenizer.ggml.unknown_token_id")).unwrap();
    let e = t.encode("aé", false, false).unwrap_err();
    assert!(matches!(&e, ForgeError::Tokenizer { what } if what.contains("no byte token <0xC3>")), "{e}");
}

#[test]
fn user_defined_tokens_always_control_tokens_only_with_parse_special() {
    let mut entries = normal(&[("a", -1.0), ("b", -1.0), ("<", -1.0), (">", -1.0), ("▁", -1.0)]);
    entries.extend([("<start_of_turn>", 0.0, CONTROL), ("<h1>", -1000.0, USER), ("\n", -1000.0, USER)]);
    let t = Tokenizer::from_gguf(&vocab(&entries)).unwrap();
    let sot = id_of(&t, "<start_of_turn>");
    let (h1, nl) = (id_of(&t, "<h1>"), id_of(&t, "\n"));
    assert_eq!(t.encode("<start_of_turn>a<h1>b\n", false, true).unwrap(), [sot, id_of(&t, "a"), h1, id_of(&t, "b"), nl]);
    let plain = t.encode("<start_of_turn>a<h1>b\n", false, false).unwrap();
    assert!(!plain.contains(&sot) && plain.contains(&h1) && plain.ends_with(&[nl]), "{plain:?}");
    // Decoding: control tokens print nothing, user-defined ones their text, '▁' a space, bytes
    // their byte.
    assert_eq!(t.decode(&[2, sot, id_of(&t, "a"), id_of(&t, "▁"), h1, id_of(&t, "<0x41>"), 1]).unwrap(), "a <h1>A");
}

#[test]
fn bos_per_add_bos_token_and_never_twice() {
    let t = Tokenizer::from_gguf(&vocab(&normal(&[("a", -1.0)]))).unwrap();
    let a = id_of(&t, "a");
    // SentencePiece vocabularies add BOS unless they say otherwise.
    assert_eq!(t.encode("a", true, true).unwrap(), [2, a]);
    assert_eq!(t.encode("a", false, true).unwrap(), [a]);
    // A text that starts with BOS (a chat template's `{{ bos_token }}`) gets no second one.
    assert_eq!(t.encode("<bos>a", true, true).unwrap(), [2, a]);
    assert_eq!(t.encode("a<bos>", true, true).unwrap(), [2, a, 2]);
    let mut m = vocab(&normal(&[("a", -1.0)]));
    m.insert("tokenizer.ggml.add_bos_token", MetaValue::Bool(false));
    assert_eq!(Tokenizer::from_gguf(&m).unwrap().encode("a", true, true).unwrap(), [a]);
}

#[test]
fn space_prefix_from_metadata() {
    let entries = normal(&[("a", -1.0), ("▁", -1.0), ("▁a", -0.5)]);
    let t = Tokenizer::from_gguf(&vocab(&entries)).unwrap();
    assert_eq!(t.encode("a a", false, false).unwrap(), ids(&t, &["a", "▁a"]));
    assert_eq!(t.decode(&ids(&t, &["▁a"])).unwrap(), " a", "no prefix to strip");
    let mut m = vocab(&entries);
    m.insert("tokenizer.ggml.add_space_prefix", MetaValue::Bool(true));
    let t = Tokenizer::from_gguf(&m).unwrap();
    assert_eq!(t.encode("a a", false, false).unwrap(), ids(&t, &["▁a", "▁a"]));
    assert_eq!(t.decode(&t.encode("a a", true, false).unwrap()).unwrap(), "a a");
}

#[test]
fn end_of_turn_stops_by_its_text() {
    let t = Tokenizer::from_gguf(&vocab(&[("<end_of_turn>", 0.0, CONTROL)])).unwrap();
    assert_eq!(t.stop_ids(), [1, id_of(&t, "<end_of_turn>")]);
}

fn refused(m: &Metadata) -> String {
    match Tokenizer::from_gguf(m) {
        Err(ForgeError::Tokenizer { what }) => what,
        other => panic!("expected a tokenizer error, got {other:?}"),
    }
}

#[test]
fn bad_vocabularies_are_refused_naming_the_key() {
    let good = vocab(&normal(&[("a", -1.0)]));
    let n = 4 + 256 + 1;
    assert!(refused(&without(&good, "tokenizer.ggml.scores")).contains("tokenizer.ggml.scores is missing"));
    let mut m = good.clone();
    m.insert("tokenizer.ggml.scores", MetaValue::Array(vec![MetaValue::F32(0.0); n - 1]));
    assert!(refused(&m).contains(&format!("tokenizer.ggml.scores has {} entries for {n} tokens", n - 1)));
    let mut m = good.clone();
    let mut types = vec![MetaValue::I32(NORMAL); n];
    types[7] = MetaValue::I32(9);
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(types.clone()));
    assert!(refused(&m).contains("tokenizer.ggml.token_type[7] = 9 is not a token type"));
    types[7] = MetaValue::I32(-1);
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(types.clone()));
    assert!(refused(&m).contains("tokenizer.ggml.token_type[7] = -1"));
    types[7] = MetaValue::I32(NORMAL);
    types[n - 1] = MetaValue::I32(6);
    m.insert("tokenizer.ggml.token_type", MetaValue::Array(types));
    assert!(refused(&m).contains("is 6 (byte) but token"));
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"] {
        let mut m = good.clone();
        m.insert(key, MetaValue::U32(n as u32));
        let what = refused(&m);
        assert!(what.contains(&format!("{key} = {n} is outside the vocabulary of {n} tokens")), "{what}");
    }
}

#[test]
fn gemma3_without_a_template_gets_gemma_turns() {
    let mut m = vocab(&[("<start_of_turn>", 0.0, CONTROL), ("<end_of_turn>", 0.0, CONTROL)]);
    assert!(Tokenizer::from_gguf(&m).unwrap().chat_template().is_none(), "no architecture, no template");
    m.insert("general.architecture", MetaValue::Str("gemma3".into()));
    let t = Tokenizer::from_gguf(&m).unwrap();
    let msgs = [
        ChatMessage::new("system", "  Be brief. "),
        ChatMessage::new("user", "Hi!"),
        ChatMessage::new("assistant", "Hello.\n"),
        ChatMessage::new("user", "Bye."),
    ];
    let tpl = t.chat_template().unwrap();
    assert_eq!(
        tpl.render(&msgs, true).unwrap(),
        "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye.<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(tpl.render(&msgs[1..2], false).unwrap(), "<bos><start_of_turn>user\nHi!<end_of_turn>\n");
    // The file's own template wins.
    m.insert("tokenizer.chat_template", MetaValue::Str("{{ messages[0]['content'] }}".into()));
    assert_eq!(Tokenizer::from_gguf(&m).unwrap().chat_template().unwrap().render(&msgs[1..2], true).unwrap(), "Hi!");
}
