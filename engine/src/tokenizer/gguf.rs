//! Building a [`Tokenizer`] from GGUF `tokenizer.ggml.*` metadata, as llama.cpp's
//! `llama_vocab::impl::load` reads it.
//!
//! - `model = "gpt2"`: byte-level BPE from `tokens` + `merges` (rank = position), pre-tokenized
//!   by the regexes `pre` names (`pretokenize.rs`).
//! - `model = "llama"`: SentencePiece BPE, which GGUF stores as `tokens` + `scores` (no merges),
//!   run by `spm.rs` exactly as llama.cpp runs it. Byte fallback to `<0xNN>`, `' '` → `'▁'`, and
//!   a `'▁'` before each text fragment (`tokenizer.ggml.add_space_prefix`, default true; Gemma's
//!   is false). Such a vocabulary is held to more than llama.cpp checks: scores for every token,
//!   and BOS/EOS/UNK/EOT/EOM ids inside the vocabulary, or the file is refused.
//!
//! Token types must be llama.cpp's (0–6). Without `tokenizer.chat_template`, a `gemma3` model gets
//! Gemma's turn format ([`chat::GEMMA_TEMPLATE`]).

use std::collections::HashMap;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::ModelWrapper;

use super::chat::GEMMA_TEMPLATE;
use super::pretokenize::{byte_level_decode, bytes_to_chars, PreTokenizer};
use super::spm::Spm;
use super::{tok_err, ChatTemplate, Parts, TextModel, TextPrep, TokenKind, Tokenizer};
use crate::error::Result;
use crate::formats::gguf::Metadata;

const K_MODEL: &str = "tokenizer.ggml.model";
const K_PRE: &str = "tokenizer.ggml.pre";
const K_TOKENS: &str = "tokenizer.ggml.tokens";
const K_TYPES: &str = "tokenizer.ggml.token_type";
const K_SCORES: &str = "tokenizer.ggml.scores";
const K_MERGES: &str = "tokenizer.ggml.merges";
const K_BOS: &str = "tokenizer.ggml.bos_token_id";
const K_EOS: &str = "tokenizer.ggml.eos_token_id";
const K_EOT: &str = "tokenizer.ggml.eot_token_id";
const K_EOM: &str = "tokenizer.ggml.eom_token_id";
const K_UNK: &str = "tokenizer.ggml.unknown_token_id";
const K_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const K_ADD_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const K_TEMPLATE: &str = "tokenizer.chat_template";
const K_ARCH: &str = "general.architecture";

pub(super) fn build(meta: &Metadata) -> Result<Tokenizer> {
    let model = meta.str(K_MODEL)?;
    let tokens: Vec<String> = meta.str_array(K_TOKENS)?.into_iter().map(str::to_owned).collect();
    let n = tokens.len();
    if n == 0 {
        return Err(tok_err(format!("{K_TOKENS} is empty")));
    }
    let types = meta.opt_i32_array(K_TYPES)?;
    if let Some(t) = &types
        && t.len() != n
    {
        return Err(tok_err(format!("{K_TYPES} has {} entries for {n} tokens", t.len())));
    }
    if let Some((i, bad)) = types.iter().flatten().enumerate().find(|(_, t)| !(0..=6).contains(*t)) {
        return Err(tok_err(format!(
            "{K_TYPES}[{i}] = {bad} is not a token type (0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)"
        )));
    }
    let mut kinds: Vec<TokenKind> = match &types {
        Some(t) => t.iter().zip(&tokens).map(|(&t, s)| TokenKind::from_gguf(t, s)).collect(),
        None => vec![TokenKind::Normal; n],
    };

    let vocab = vocab_map(&tokens)?;
    let spm = model == "llama";
    let (text_model, prep, pieces, default_add_bos, strip_first_space) = match model {
        "gpt2" => {
            let pre = PreTokenizer::by_name(meta.opt_str(K_PRE)?.unwrap_or("default"))?;
            let merges = parse_merges(&meta.str_array(K_MERGES)?, &vocab)?;
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .ignore_merges(pre.ignore_merges)
                .build()
                .map_err(|e| tok_err(format!("building the BPE model: {e}")))?;
            let table = bytes_to_chars();
            let inverse: HashMap<char, u8> = table.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
            let pieces = tokens
                .iter()
                .zip(&kinds)
                .map(|(t, k)| match k {
                    TokenKind::Normal => byte_level_decode(t, &inverse),
                    TokenKind::Byte(b) => vec![*b],
                    _ => t.as_bytes().to_vec(),
                })
                .collect();
            let mut model = tokenizers::Tokenizer::new(ModelWrapper::BPE(bpe));
            model.with_pre_tokenizer(Some(pre.build()?));
            (TextModel::Hf(Box::new(model)), TextPrep::AsIs, pieces, pre.add_bos, false)
        }
        "llama" => {
            let scores = meta.opt_f32_array(K_SCORES)?.ok_or_else(|| {
                tok_err(format!("{K_SCORES} is missing: a SentencePiece vocabulary ({K_MODEL} = llama) is merged by score"))
            })?;
            if scores.len() != n {
                return Err(tok_err(format!("{K_SCORES} has {} entries for {n} tokens", scores.len())));
            }
            match &types {
                // A byte token that names no byte would be rendered as nothing.
                Some(t) => {
                    if let Some(i) = (0..n).find(|&i| t[i] == 6 && super::parse_byte_token(&tokens[i]).is_none()) {
                        return Err(tok_err(format!("{K_TYPES}[{i}] is 6 (byte) but token {i} is {:?}, not <0xNN>", tokens[i])));
                    }
                }
                // Without token types, byte tokens are still recognisable by their text.
                None => {
                    for (k, t) in kinds.iter_mut().zip(&tokens) {
                        if let Some(b) = super::parse_byte_token(t) {
                            *k = TokenKind::Byte(b);
                        }
                    }
                }
            }
            let unk = strict_id(meta, K_UNK, n)?;
            let pieces = tokens
                .iter()
                .zip(&kinds)
                .map(|(t, k)| match k {
                    TokenKind::Normal => t.replace('\u{2581}', " ").into_bytes(),
                    TokenKind::Byte(b) => vec![*b],
                    _ => t.as_bytes().to_vec(),
                })
                .collect();
            let space_prefix = meta.opt_bool(K_ADD_PREFIX)?.unwrap_or(true);
            let model = TextModel::Spm(Spm::new(vocab, scores, unk));
            (model, TextPrep::Spm { space_prefix }, pieces, true, space_prefix)
        }
        other => {
            return Err(tok_err(format!(
                "{K_MODEL} = `{other}` is not supported (supported: gpt2 (byte-level BPE), llama (SentencePiece BPE))"
            )));
        }
    };

    // A byte-level vocabulary's id outside the vocabulary is ignored with a warning, as llama.cpp
    // does ("bad special token"): real files carry such ids (a pad id equal to the vocabulary
    // size) and still work. A SentencePiece vocabulary's is refused.
    let id = |key: &str| -> Result<Option<u32>> {
        if spm {
            return strict_id(meta, key, n);
        }
        let v = meta.opt_u64(key)?;
        let inside = |v: u64| usize::try_from(v).is_ok_and(|v| v < n);
        if let Some(bad) = v.filter(|&v| !inside(v)) {
            tracing::warn!("{key} = {bad} is outside the vocabulary of {n}; ignored");
        }
        Ok(v.filter(|&v| inside(v)).map(|v| v as u32))
    };
    let bos = id(K_BOS)?;
    let eos = id(K_EOS)?;
    let extra_stops = [id(K_EOT)?, id(K_EOM)?].into_iter().flatten().collect();
    let add_bos = meta.opt_bool(K_ADD_BOS)?.unwrap_or(default_add_bos) && bos.is_some();

    let source = match meta.opt_str(K_TEMPLATE)? {
        Some(s) => Some(s),
        None if meta.opt_str(K_ARCH)? == Some("gemma3") => Some(GEMMA_TEMPLATE),
        None => None,
    };
    let chat_template = ChatTemplate::of_model(source, &tokens, bos, eos);

    Tokenizer::assemble(Parts {
        model: text_model,
        prep,
        tokens,
        kinds,
        pieces,
        strip_first_space,
        bos,
        eos,
        extra_stops,
        add_bos,
        chat_template,
    })
}

fn vocab_map(tokens: &[String]) -> Result<Vocab> {
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if let Some(prev) = vocab.insert(t.clone(), i as u32) {
            return Err(tok_err(format!("duplicate token in vocabulary: {t:?} has ids {prev} and {i}")));
        }
    }
    Ok(vocab)
}

/// `"Ġ t"` → `("Ġ", "t")`, split at the first space after the first char (llama.cpp). A merge whose
/// parts are not tokens means the merges belong to another vocabulary: an error. Merges whose
/// result is not a token, and repeats, can never fire and are dropped (llama.cpp tolerates them).
fn parse_merges(merges: &[&str], vocab: &Vocab) -> Result<Vec<(String, String)>> {
    let mut seen = std::collections::HashSet::with_capacity(merges.len());
    let mut out = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        let Some(first_len) = m.chars().next().map(char::len_utf8) else { continue };
        let Some(pos) = m[first_len..].find(' ').map(|p| p + first_len) else { continue };
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        if !vocab.contains_key(a) || !vocab.contains_key(b) {
            return Err(tok_err(format!("merge {i} ({m:?}) joins pieces that are not in the vocabulary: the merges and tokens disagree")));
        }
        if !vocab.contains_key(&format!("{a}{b}")) {
            continue;
        }
        if seen.insert((a, b)) {
            out.push((a.to_string(), b.to_string()));
        }
    }
    Ok(out)
}

/// The id under `key`, if present, which must lie inside a vocabulary of `n`.
fn strict_id(meta: &Metadata, key: &str, n: usize) -> Result<Option<u32>> {
    match meta.opt_u64(key)? {
        Some(id) if usize::try_from(id).map_or(true, |id| id >= n) => {
            Err(tok_err(format!("{key} = {id} is outside the vocabulary of {n} tokens")))
        }
        v => Ok(v.map(|id| id as u32)),
    }
}
