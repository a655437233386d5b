//! Incremental detokenization for streaming output.
//!
//! Byte-level and byte-fallback tokens can end in the middle of a UTF-8 character (an emoji is
//! often two or three tokens). [`TokenStream`] keeps the bytes of an incomplete character until
//! the tokens that complete it arrive, so every string it returns is whole text.
//!
//! Unlike [`Tokenizer::decode`], no prefix space is dropped: a stream continues a prompt.

use std::borrow::Borrow;

use super::Tokenizer;
use crate::error::Result;

/// Incremental detokenizer for streaming: push ids, get back only complete UTF-8 text. `T` is
/// `&Tokenizer`, or an `Arc<Tokenizer>` where the stream outlives a borrow (a server's sequence).
#[derive(Debug)]
pub struct TokenStream<T: Borrow<Tokenizer>> {
    tok: T,
    /// Bytes not yet returned: at most an incomplete UTF-8 character.
    pending: Vec<u8>,
}

impl<T: Borrow<Tokenizer>> TokenStream<T> {
    pub fn new(tok: T) -> Self {
        TokenStream { tok, pending: Vec::new() }
    }

    /// The text `id` completes: possibly empty (a partial character, or a control token).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.pending.extend_from_slice(self.tok.borrow().render(id)?);
        Ok(self.take_complete())
    }

    /// Whatever is left, with an unfinished character replaced by U+FFFD.
    pub fn finish(&mut self) -> Result<String> {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        Ok(rest)
    }

    /// Returns the complete characters at the front of `pending`; invalid bytes become U+FFFD,
    /// an incomplete character at the end stays.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    let s = std::str::from_utf8(&self.pending[start..valid]).expect("checked by valid_up_to");
                    out.push_str(s);
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start = valid + bad;
                        }
                        None => {
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}
