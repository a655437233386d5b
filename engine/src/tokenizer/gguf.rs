//! Building a [`Tokenizer`] from GGUF `tokenizer.ggml.*` metadata, as llama.cpp's
//! `llama_vocab::impl::load` reads it.
//!
//! - `model = "gpt2"`: byte-level BPE from `tokens` + `merges` (rank = position), pre-tokenized
//!   by the regexes `pre` names (`pretokenize.rs`).
//! - `model = "llama"`: SentencePiece BPE. GGUF has no merges for it, only `scores`; the merges are
//!   derived as Hugging Face's `SentencePieceExtractor` does: every split of a vocabulary entry into
//!   two entries is a merge, ranked by the entry's score (highest first). llama.cpp's SPM merges the
//!   highest-scoring adjacent pair whose concatenation is a token, which is the same order. Byte
//!   fallback to `<0xNN>`, `' '` → `'▁'`, and a `'▁'` before each text fragment
//!   (`tokenizer.ggml.add_space_prefix`, default true).

use std::collections::HashMap;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::ModelWrapper;

use super::pretokenize::{byte_level_decode, bytes_to_chars, PreTokenizer};
use super::{tok_err, ChatTemplate, Parts, TextPrep, TokenKind, Tokenizer};
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
    let mut kinds: Vec<TokenKind> = match &types {
        Some(t) => t.iter().zip(&tokens).map(|(&t, s)| TokenKind::from_gguf(t, s)).collect(),
        None => vec![TokenKind::Normal; n],
    };

    let vocab = vocab_map(&tokens)?;
    let (bpe, prep, pieces, default_add_bos, strip_first_space) = match model {
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
            (model, TextPrep::AsIs, pieces, pre.add_bos, false)
        }
        "llama" => {
            let scores = meta.opt_f32_array(K_SCORES)?.unwrap_or_else(|| vec![0.0; n]);
            if scores.len() != n {
                return Err(tok_err(format!("{K_SCORES} has {} entries for {n} tokens", scores.len())));
            }
            // Without token types, byte tokens are still recognisable by their text.
            if types.is_none() {
                for (k, t) in kinds.iter_mut().zip(&tokens) {
                    if let Some(b) = super::parse_byte_token(t) {
                        *k = TokenKind::Byte(b);
                    }
                }
            }
            let merges = spm_merges(&tokens, &kinds, &scores, &vocab);
            let unk = meta.opt_u64(K_UNK)?.and_then(|id| tokens.get(id as usize).cloned());
            let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
            if let Some(unk) = unk {
                builder = builder.unk_token(unk);
            }
            let bpe = builder.build().map_err(|e| tok_err(format!("building the BPE model: {e}")))?;
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
            let model = tokenizers::Tokenizer::new(ModelWrapper::BPE(bpe));
            (model, TextPrep::Spm { space_prefix }, pieces, true, space_prefix)
        }
        other => {
            return Err(tok_err(format!(
                "{K_MODEL} = `{other}` is not supported (supported: gpt2 (byte-level BPE), llama (SentencePiece BPE))"
            )));
        }
    };

    // An id outside the vocabulary is ignored with a warning, as llama.cpp does ("bad special
    // token"): real files carry such ids (a pad id equal to the vocabulary size) and still work.
    let id = |key: &str| -> Result<Option<u32>> {
        let v = meta.opt_u64(key)?;
        if let Some(bad) = v.filter(|&v| v as usize >= n) {
            tracing::warn!("{key} = {bad} is outside the vocabulary of {n}; ignored");
        }
        Ok(v.filter(|&v| (v as usize) < n).map(|v| v as u32))
    };
    let bos = id(K_BOS)?;
    let eos = id(K_EOS)?;
    let extra_stops = [id(K_EOT)?, id(K_EOM)?].into_iter().flatten().collect();
    let add_bos = meta.opt_bool(K_ADD_BOS)?.unwrap_or(default_add_bos) && bos.is_some();

    let chat_template = ChatTemplate::of_model(meta.opt_str(K_TEMPLATE)?, &tokens, bos, eos);

    Tokenizer::assemble(Parts {
        model: bpe,
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
    let mut vocab = Vocab::default();
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

/// Merges for a SentencePiece vocabulary: each split of a normal entry into two entries, ranked by
/// the entry's score, highest first (ties: lower id first).
fn spm_merges(
    tokens: &[String],
    kinds: &[TokenKind],
    scores: &[f32],
    vocab: &Vocab,
) -> Vec<(String, String)> {
    let mut ranked: Vec<(f32, u32, u32, String, String)> = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        if kinds[id] != TokenKind::Normal {
            continue;
        }
        for (pos, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(pos);
            if let (Some(&ia), Some(_)) = (vocab.get(a), vocab.get(b)) {
                ranked.push((scores[id], id as u32, ia, a.to_string(), b.to_string()));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    ranked.into_iter().map(|(_, _, _, a, b)| (a, b)).collect()
}
