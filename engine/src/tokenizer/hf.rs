//! Building a [`Tokenizer`] from a Hugging Face model directory.
//!
//! `tokenizer.json` supplies the model, normalizer and pre-tokenizer, used as is for plain text.
//! Its added tokens become our special tokens (`special: true` → control, matched only with
//! `parse_special`; otherwise user-defined, always matched), split out by our own partition so
//! GGUF and HF models behave alike. The bytes each token renders to are derived from the
//! decoder: byte-level (GPT-2, Llama 3, Qwen, SmolLM) or SentencePiece-style (`▁` + `<0xNN>`).
//!
//! Optional files: `tokenizer_config.json` (`bos_token`, `eos_token`, `add_bos_token`,
//! `chat_template`), `chat_template.jinja` (newer exports keep the template there), and
//! `generation_config.json` (`eos_token_id`, one id or a list: extra stop ids).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::pretokenize::{byte_level_decode, bytes_to_chars};
use super::{ChatTemplate, Parts, TextModel, TextPrep, TokenKind, Tokenizer, parse_byte_token, tok_err};
use crate::error::{ForgeError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeStyle {
    ByteLevel,
    /// `strip_first`: the decoder drops the first token's prefix space.
    SentencePiece { strip_first: bool },
}

pub(super) fn build(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ForgeError::io(&path, e))?;
    let json: Json = serde_json::from_str(&text)
        .map_err(|e| tok_err(format!("{}: not valid JSON: {e}", path.display())))?;
    let mut model = tokenizers::Tokenizer::from_bytes(text.as_bytes())
        .map_err(|e| tok_err(format!("{}: {e}", path.display())))?;
    // Special tokens are split out before the model sees the text (see `Tokenizer::partition`).
    model.set_encode_special_tokens(true);

    let base = model.get_vocab(false);
    let added = model.get_added_tokens_decoder();
    let n = base.values().chain(added.keys()).map(|&id| id as usize + 1).max().unwrap_or(0);
    if n == 0 {
        return Err(tok_err(format!("{}: the vocabulary is empty", path.display())));
    }
    let byte_fallback = json["model"]["byte_fallback"].as_bool().unwrap_or(false);
    let mut tokens = vec![String::new(); n];
    let mut kinds = vec![TokenKind::Unused; n];
    for (t, &id) in &base {
        tokens[id as usize] = t.clone();
        kinds[id as usize] = match parse_byte_token(t) {
            Some(b) if byte_fallback => TokenKind::Byte(b),
            _ => TokenKind::Normal,
        };
    }
    for (&id, at) in &added {
        tokens[id as usize] = at.content.clone();
        kinds[id as usize] = if at.special { TokenKind::Control } else { TokenKind::UserDefined };
    }

    let style = decode_style(&json, &path)?;
    let inverse: HashMap<char, u8> = bytes_to_chars().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
    let pieces = tokens
        .iter()
        .zip(&kinds)
        .map(|(t, k)| match (k, style) {
            (TokenKind::Byte(b), _) => vec![*b],
            (TokenKind::Normal, DecodeStyle::ByteLevel) => byte_level_decode(t, &inverse),
            (TokenKind::Normal, DecodeStyle::SentencePiece { .. }) => t.replace('\u{2581}', " ").into_bytes(),
            _ => t.as_bytes().to_vec(),
        })
        .collect();

    let config = read_optional_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
    let special_id = |key: &str| -> Option<u32> {
        let v = &config[key];
        let s = v.as_str().or_else(|| v["content"].as_str())?;
        model.token_to_id(s)
    };
    let bos = special_id("bos_token");
    let eos = special_id("eos_token");
    let add_bos = match config["add_bos_token"].as_bool() {
        Some(b) => b,
        // Without the flag, HF adds BOS when the post-processor template contains it.
        None => bos.is_some_and(|b| {
            let text = &tokens[b as usize];
            json["post_processor"].to_string().contains(&format!("\"{}\"", text.escape_default()))
        }),
    };

    let mut extra_stops = Vec::new();
    if let Some(gen_cfg) = read_optional_json(&dir.join("generation_config.json"))? {
        match &gen_cfg["eos_token_id"] {
            Json::Number(x) => extra_stops.extend(x.as_u64().map(|v| v as u32)),
            Json::Array(a) => extra_stops.extend(a.iter().filter_map(Json::as_u64).map(|v| v as u32)),
            _ => {}
        }
    }
    extra_stops.retain(|&id| (id as usize) < n);

    let source = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(s) => Some(s),
        Err(_) => template_from_config(&config),
    };
    let chat_template = ChatTemplate::of_model(source.as_deref(), &tokens, bos, eos);

    Tokenizer::assemble(Parts {
        model: TextModel::Hf(Box::new(model)),
        prep: TextPrep::AsIs,
        tokens,
        kinds,
        pieces,
        strip_first_space: matches!(style, DecodeStyle::SentencePiece { strip_first: true }),
        bos,
        eos,
        extra_stops,
        add_bos,
        chat_template,
    })
}

fn read_optional_json(path: &Path) -> Result<Option<Json>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| tok_err(format!("{}: not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ForgeError::io(path, e)),
    }
}

/// `chat_template` is a string, or a list of `{name, template}` (the one named `default`).
fn template_from_config(config: &Json) -> Option<String> {
    match &config["chat_template"] {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    }
}

/// The decoder's types, flattened out of `Sequence`s.
fn decoder_types(d: &Json, out: &mut Vec<Json>) {
    match d["type"].as_str() {
        Some("Sequence") => {
            for inner in d["decoders"].as_array().into_iter().flatten() {
                decoder_types(inner, out);
            }
        }
        Some(_) => out.push(d.clone()),
        None => {}
    }
}

fn decode_style(json: &Json, path: &Path) -> Result<DecodeStyle> {
    let mut steps = Vec::new();
    decoder_types(&json["decoder"], &mut steps);
    let has = |t: &str| steps.iter().any(|s| s["type"] == t);
    if has("ByteLevel") || (steps.is_empty() && json["pre_tokenizer"].to_string().contains("\"ByteLevel\"")) {
        return Ok(DecodeStyle::ByteLevel);
    }
    if has("Metaspace") || has("ByteFallback") || has("Replace") {
        let strip_first = steps.iter().any(|s| {
            (s["type"] == "Strip" && s["content"] == " " && s["start"].as_u64().unwrap_or(0) >= 1)
                || (s["type"] == "Metaspace"
                    && (s["add_prefix_space"] == true || matches!(s["prepend_scheme"].as_str(), Some("always" | "first"))))
        });
        return Ok(DecodeStyle::SentencePiece { strip_first });
    }
    Err(tok_err(format!(
        "{}: decoder {} is not supported (supported: ByteLevel, Metaspace, SentencePiece-style Replace/ByteFallback)",
        path.display(),
        json["decoder"]
    )))
}
