//! Pre-tokenizers for byte-level BPE vocabularies, chosen by GGUF `tokenizer.ggml.pre`, and the
//! GPT-2 byte ↔ char table.
//!
//! The regexes are copied verbatim from llama.cpp `src/llama-vocab.cpp` (`llm_tokenizer_bpe`).
//! llama.cpp applies a pre-tokenizer's regexes in sequence, each one splitting the pieces the
//! previous one produced and keeping unmatched text as pieces of its own; a `Sequence` of
//! `Split(regex, Isolated)` is the same thing in `tokenizers`. The byte-level mapping runs last,
//! without a regex of its own.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use crate::error::{ForgeError, Result};

/// The GPT-2 regex (llama.cpp's form: no trailing `|\s+`, unmatched text stays a piece anyway).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// `LLAMA_VOCAB_PRE_TYPE_LLAMA3` (adapted by llama.cpp from `(?i:'s|...)`).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `LLAMA_VOCAB_PRE_TYPE_QWEN2`: as Llama 3 but single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One family of `tokenizer.ggml.pre` names that share regexes and defaults.
struct PreType {
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    /// llama.cpp sets `add_bos = true` for these (before `tokenizer.ggml.add_bos_token`).
    add_bos: bool,
    /// llama.cpp `ignore_merges`: a piece that is already a token is not merged further.
    ignore_merges: bool,
}

const PRE_TYPES: &[PreType] = &[
    PreType {
        names: &["default"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        add_bos: false,
        ignore_merges: false,
    },
    PreType {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"],
        regexes: &[LLAMA3],
        add_bos: true,
        ignore_merges: true,
    },
    PreType { names: &["dbrx", "smaug-bpe"], regexes: &[LLAMA3], add_bos: false, ignore_merges: false },
    PreType {
        names: &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"],
        regexes: &[r"\p{N}", GPT2],
        add_bos: false,
        ignore_merges: false,
    },
    PreType {
        names: &["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais"],
        regexes: &[GPT2],
        add_bos: false,
        ignore_merges: false,
    },
    PreType {
        names: &["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"],
        regexes: &[QWEN2],
        add_bos: false,
        ignore_merges: false,
    },
    PreType {
        names: &["falcon"],
        regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        add_bos: false,
        ignore_merges: false,
    },
];

/// How a byte-level BPE vocabulary splits text before merging.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreTokenizer {
    regexes: &'static [&'static str],
    pub add_bos: bool,
    pub ignore_merges: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value (a missing one means `default`, as in
    /// llama.cpp).
    pub fn by_name(name: &str) -> Result<PreTokenizer> {
        PRE_TYPES
            .iter()
            .find(|t| t.names.contains(&name))
            .map(|t| PreTokenizer { regexes: t.regexes, add_bos: t.add_bos, ignore_merges: t.ignore_merges })
            .ok_or_else(|| ForgeError::Tokenizer {
                what: format!(
                    "pre-tokenizer `{name}` (tokenizer.ggml.pre) is not supported (supported: {})",
                    supported_names()
                ),
            })
    }

    /// `Split(regex, Isolated)` for each regex in order, then the byte-level mapping.
    pub fn build(&self) -> Result<PreTokenizerWrapper> {
        let mut steps = Vec::with_capacity(self.regexes.len() + 1);
        for re in self.regexes {
            let split = Split::new(SplitPattern::Regex((*re).to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| ForgeError::Tokenizer { what: format!("pre-tokenizer regex {re:?}: {e}") })?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)));
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
    }
}

pub(crate) fn supported_names() -> String {
    PRE_TYPES.iter().flat_map(|t| t.names.iter().copied()).collect::<Vec<_>>().join(", ")
}

/// GPT-2's byte → char table: printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100.. in order, so every byte is a visible char in the vocabulary.
pub(crate) fn bytes_to_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("U+0100..U+0143 are chars");
            next += 1;
            c
        };
    }
    table
}

/// The bytes a byte-level vocabulary entry stands for. A char outside the table (not produced by
/// GPT-2's mapping) is kept as its own UTF-8.
pub(crate) fn byte_level_decode(token: &str, chars_to_bytes: &std::collections::HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match chars_to_bytes.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}
