//! Tokenizers: text ↔ token ids, chat templates, and streaming detokenization.
//!
//! A [`Tokenizer`] is built from GGUF metadata ([`Tokenizer::from_gguf`], see `gguf.rs`) or from a
//! Hugging Face directory ([`Tokenizer::from_hf_dir`], see `hf.rs`). Either way it is:
//! - a model that encodes plain text (no special tokens in it): a `tokenizers` BPE (byte-level
//!   from GGUF, or whatever `tokenizer.json` holds), or for a GGUF SentencePiece vocabulary
//!   llama.cpp's own merge loop by score (`spm.rs`);
//! - a table of special tokens, split out of the text first, longest first, as llama.cpp's
//!   `tokenizer_st_partition` does: control tokens (`<|im_start|>`) only when `parse_special`,
//!   user-defined tokens always;
//! - the exact bytes each token renders to, so decoding is byte-exact and streaming can hold back
//!   incomplete UTF-8 (`stream.rs`).
//!
//! Decoding follows llama.cpp's `token_to_piece(special = false)`: control and unknown tokens
//! (`<|im_end|>`, `<s>`) render as nothing, user-defined tokens as their text. llama.cpp's
//! `clean_spaces` post-processing (`" ."` → `"."`) is deliberately not applied: it is lossy.
//!
//! **Architecture Invariant:** nothing here reads the network or a hub; files are read only by
//! `from_hf_dir`, and only the ones named there.

mod chat;
mod gguf;
mod hf;
mod pretokenize;
mod spm;
mod stream;

pub use chat::{ChatMessage, ChatTemplate};
pub use stream::TokenStream;

use crate::error::{ForgeError, Result};

/// What a vocabulary entry is, after GGUF `tokenizer.ggml.token_type` (llama.cpp's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Ordinary text (type 1).
    Normal,
    /// `<unk>` (type 2): matched only with `parse_special`, never rendered.
    Unknown,
    /// `<|im_start|>`, `<s>` (type 3): matched only with `parse_special`, never rendered.
    Control,
    /// Always matched in text, rendered as its text (type 4).
    UserDefined,
    /// Reserved slots (type 5) and undefined ones (type 0): never matched, rendered as nothing.
    Unused,
    /// `<0xNN>` byte-fallback tokens (type 6).
    Byte(u8),
}

impl TokenKind {
    pub(crate) fn from_gguf(t: i32, text: &str) -> TokenKind {
        match t {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            6 => parse_byte_token(text).map_or(TokenKind::Unused, TokenKind::Byte),
            _ => TokenKind::Unused,
        }
    }

    fn is_special(self) -> bool {
        matches!(self, TokenKind::Control | TokenKind::Unknown | TokenKind::UserDefined)
    }

    /// Rendered by `decode` (llama.cpp `token_to_piece` with `special = false`).
    fn is_rendered(self) -> bool {
        matches!(self, TokenKind::Normal | TokenKind::UserDefined | TokenKind::Byte(_))
    }
}

/// `<0x0A>` → 10.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Texts that end a turn, as llama.cpp recognises them (`special_eog_ids`), beside the ids the
/// model declares.
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// A special token matched in the text before BPE.
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Control/unknown tokens are matched only with `parse_special`.
    needs_parse_special: bool,
}

/// How a plain-text fragment is prepared for the BPE model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextPrep {
    /// Passed as is (byte-level BPE, or a tokenizer.json that normalizes on its own).
    AsIs,
    /// SentencePiece style: `' '` before each fragment if `space_prefix`, then `' '` → `'▁'`.
    Spm { space_prefix: bool },
}

/// What encodes one fragment of plain text.
pub(crate) enum TextModel {
    /// A `tokenizers` model: byte-level BPE from GGUF, or whatever a `tokenizer.json` holds.
    Hf(Box<tokenizers::Tokenizer>),
    /// SentencePiece BPE from GGUF scores, as llama.cpp runs it (`spm.rs`).
    Spm(spm::Spm),
}

pub struct Tokenizer {
    /// Encodes one fragment of plain text.
    model: TextModel,
    prep: TextPrep,
    /// id → the vocabulary entry as stored (`Ġthe`, `<|im_end|>`, `<0x0A>`).
    tokens: Vec<String>,
    kinds: Vec<TokenKind>,
    /// id → the bytes the token stands for (for control tokens, their text; see `render`).
    pieces: Vec<Vec<u8>>,
    /// Longest text first.
    specials: Vec<Special>,
    /// `decode` drops one leading space (SentencePiece's prefix space), as llama.cpp and HF do.
    strip_first_space: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    chat_template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("prep", &self.prep)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

/// What the GGUF and HF builders hand to [`Tokenizer::assemble`].
pub(crate) struct Parts {
    pub model: TextModel,
    pub prep: TextPrep,
    pub tokens: Vec<String>,
    pub kinds: Vec<TokenKind>,
    pub pieces: Vec<Vec<u8>>,
    pub strip_first_space: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// `eot`, `eom` and any other ids the model declares as ending generation.
    pub extra_stops: Vec<u32>,
    pub add_bos: bool,
    pub chat_template: Option<ChatTemplate>,
}

impl Tokenizer {
    pub fn from_gguf(meta: &crate::formats::gguf::Metadata) -> Result<Tokenizer> {
        gguf::build(meta)
    }

    /// `tokenizer.json`, plus `tokenizer_config.json` (bos/eos, `add_bos_token`, `chat_template`),
    /// `chat_template.jinja` and `generation_config.json` (`eos_token_id`) when present.
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Tokenizer> {
        hf::build(dir)
    }

    pub(crate) fn assemble(mut p: Parts) -> Result<Tokenizer> {
        let n = p.tokens.len();
        if p.kinds.len() != n || p.pieces.len() != n {
            return Err(tok_err(format!("{} tokens but {} types and {} pieces", n, p.kinds.len(), p.pieces.len())));
        }
        for id in [p.bos, p.eos].into_iter().flatten().chain(p.extra_stops.iter().copied()) {
            if id as usize >= n {
                return Err(tok_err(format!("special token id {id} is outside the vocabulary of {n}")));
            }
        }
        // llama.cpp: tokens that look like end-of-turn markers are control tokens and stop
        // generation, whatever the file says.
        let mut stop_ids: Vec<u32> = p.eos.into_iter().chain(p.extra_stops.iter().copied()).collect();
        for (id, text) in p.tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&text.as_str()) {
                if p.kinds[id] == TokenKind::Normal {
                    p.kinds[id] = TokenKind::Control;
                }
                stop_ids.push(id as u32);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();

        let mut specials: Vec<Special> = p
            .kinds
            .iter()
            .enumerate()
            .filter(|(id, k)| k.is_special() && !p.tokens[*id].is_empty())
            .map(|(id, k)| Special {
                text: p.tokens[id].clone(),
                id: id as u32,
                needs_parse_special: *k != TokenKind::UserDefined,
            })
            .collect();
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));

        if p.add_bos && p.bos.is_none() {
            return Err(tok_err("the model asks for a BOS token (add_bos_token) but declares none".into()));
        }
        Ok(Tokenizer {
            model: p.model,
            prep: p.prep,
            tokens: p.tokens,
            kinds: p.kinds,
            pieces: p.pieces,
            specials,
            strip_first_space: p.strip_first_space,
            bos: p.bos,
            eos: p.eos,
            add_bos: p.add_bos,
            stop_ids,
            chat_template: p.chat_template,
        })
    }

    /// `parse_special`: recognise special tokens such as `<|im_start|>` in the text (llama.cpp's
    /// `parse_special = true`); user-defined tokens are recognised either way. Adds BOS only if
    /// `add_bos` and the model says `add_bos_token`, and not to a text that already starts with
    /// it (a chat template's `{{ bos_token }}`, parsed as special): llama.cpp's chat path drops
    /// the template's BOS when the vocabulary adds one, so the model sees one BOS either way.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        let frags = self.partition(text, parse_special);
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        let starts_with_bos = matches!(frags.first(), Some(Fragment::Token(id)) if Some(*id) == self.bos);
        if add_bos && self.add_bos && !starts_with_bos {
            ids.extend(self.bos);
        }
        for frag in frags {
            match frag {
                Fragment::Token(id) => ids.push(id),
                Fragment::Text(t) => self.encode_text(t, &mut ids)?,
            }
        }
        Ok(ids)
    }

    /// Splits out special tokens: for each special (longest first), every occurrence in every
    /// remaining text fragment, as llama.cpp does. A special whose first byte is nowhere in the
    /// text is not searched for (Gemma has 6,414 specials, nearly all `<…>`).
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut frags = if text.is_empty() { Vec::new() } else { vec![Fragment::Text(text)] };
        let mut present = [false; 256];
        for &b in text.as_bytes() {
            present[b as usize] = true;
        }
        for sp in &self.specials {
            if sp.needs_parse_special && !parse_special {
                continue;
            }
            if !present[sp.text.as_bytes()[0] as usize] {
                continue;
            }
            if !frags.iter().any(|f| matches!(f, Fragment::Text(t) if t.contains(sp.text.as_str()))) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(t) = f else {
                    next.push(f);
                    continue;
                };
                let mut rest = t;
                while let Some(pos) = rest.find(sp.text.as_str()) {
                    if pos > 0 {
                        next.push(Fragment::Text(&rest[..pos]));
                    }
                    next.push(Fragment::Token(sp.id));
                    rest = &rest[pos + sp.text.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            frags = next;
        }
        frags
    }

    fn encode_text(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let prepared;
        let input = match self.prep {
            TextPrep::AsIs => text,
            TextPrep::Spm { space_prefix } => {
                // llama.cpp prefixes every raw fragment: each one follows a special token or
                // starts the text.
                let mut s = String::with_capacity(text.len() + 4);
                if space_prefix {
                    s.push('\u{2581}');
                }
                s.push_str(&text.replace(' ', "\u{2581}"));
                prepared = s;
                &prepared
            }
        };
        match &self.model {
            TextModel::Spm(spm) => spm.encode(input, out),
            TextModel::Hf(model) => {
                let enc = model
                    .encode_fast(input, false)
                    .map_err(|e| tok_err(format!("encoding {} bytes of text: {e}", text.len())))?;
                out.extend_from_slice(enc.get_ids());
                Ok(())
            }
        }
    }

    /// The text the ids stand for, byte-exact (invalid UTF-8 is replaced by U+FFFD). Control
    /// tokens (`<|im_end|>`, BOS/EOS) render as nothing, user-defined tokens as their text — as
    /// llama.cpp's detokenize with `special = false`. For SentencePiece vocabularies the prefix
    /// space of the first rendered token is dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut first = true;
        for &id in ids {
            let piece = self.render(id)?;
            if piece.is_empty() {
                continue;
            }
            let piece = if first && self.strip_first_space { piece.strip_prefix(b" ").unwrap_or(piece) } else { piece };
            first = false;
            bytes.extend_from_slice(piece);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The bytes `id` contributes to decoded text (empty for control tokens).
    pub(crate) fn render(&self, id: u32) -> Result<&[u8]> {
        let i = id as usize;
        let kind = self.kinds.get(i).ok_or_else(|| {
            tok_err(format!("token id {id} is outside the vocabulary of {}", self.tokens.len()))
        })?;
        Ok(if kind.is_rendered() { &self.pieces[i] } else { &[] })
    }

    /// The raw bytes `id` contributes to text (a byte-level token may hold part of a UTF-8
    /// character; empty for control tokens); `None` outside the vocabulary. OpenAI's logprob
    /// `bytes` field.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.render(id).ok()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// All ids that end generation (eos, eot, `<|im_end|>`, `<|eot_id|>`... as declared by the
    /// model), sorted.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The vocabulary entry as the model stores it (`Ġthe` in a byte-level vocabulary, `▁the` in
    /// a SentencePiece one, `<|im_end|>`); `None` outside the vocabulary. For the text a token
    /// renders to, use `decode(&[id])`.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.tokens.get(id as usize).cloned()
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

pub(crate) fn tok_err(what: String) -> ForgeError {
    ForgeError::Tokenizer { what }
}

#[cfg(test)]
mod tests;
