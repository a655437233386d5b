//! SentencePiece BPE as llama.cpp runs it for GGUF `tokenizer.ggml.model = "llama"`
//! (`llm_tokenizer_spm_session::tokenize` in `src/llama-vocab.cpp`).
//!
//! One fragment of plain text (special tokens already split out, `' '` already `'▁'`) is split
//! into UTF-8 characters. Every adjacent pair whose concatenation is a vocabulary entry is queued,
//! keyed by that entry's score: highest first, ties to the leftmost pair. The best pair is merged
//! if both halves are still as they were when it was queued, and the merged symbol's pairs with
//! its new neighbours are queued in turn. Each final symbol is then its vocabulary entry, or (a
//! character the vocabulary lacks) one byte-fallback token `<0xNN>` per UTF-8 byte.
//!
//! Only the scores are needed, no merge list: loading a vocabulary is hashing its entries (a
//! 262,144-entry vocabulary in a few tens of milliseconds), where deriving merges from the
//! scores, as Hugging Face's converter does, pairs every split of every entry.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokenizers::models::bpe::Vocab;

use super::tok_err;
use crate::error::Result;

pub(crate) struct Spm {
    /// Every vocabulary entry's text → its id (llama.cpp's `token_to_id`: any entry may be formed
    /// by a merge, whatever its type). The `tokenizers` crate's map, for its faster hash.
    ids: Vocab,
    scores: Vec<f32>,
    /// `<0xNN>` for each byte (llama.cpp's `byte_to_token`; its second guess, the byte itself as
    /// an entry, can never be asked for: a character not in the vocabulary is no one-byte entry).
    bytes: Vec<Option<u32>>,
    /// Emitted for a byte neither form of which is in the vocabulary.
    unk: Option<u32>,
}

/// A run of the text: a character at first, then the merged entries.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    /// Bytes; 0 once merged into the symbol on its left.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A queued merge of `left` with the symbol after it, `size` bytes in all when queued.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Pair {
    /// The queue pops the greatest: the highest score, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

impl Spm {
    /// `ids` maps each entry's text to its id; `scores` holds every id's score.
    pub(crate) fn new(ids: Vocab, scores: Vec<f32>, unk: Option<u32>) -> Spm {
        debug_assert!(ids.values().all(|&id| (id as usize) < scores.len()));
        let bytes = (0..256).map(|b| ids.get(format!("<0x{b:02X}>").as_str()).copied()).collect();
        Spm { ids, scores, bytes, unk }
    }

    /// Appends the ids of `text`, a fragment already prepared (`'▁'` for spaces).
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: Some(i + 1) })
            .collect();
        let Some(last) = symbols.last_mut() else { return Ok(()) };
        last.next = None;

        let mut queue = BinaryHeap::with_capacity(symbols.len());
        for right in 1..symbols.len() {
            self.queue_pair(text, &symbols, Some(right - 1), Some(right), &mut queue);
        }
        while let Some(pair) = queue.pop() {
            let (l, r) = (symbols[pair.left], symbols[pair.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != pair.size {
                continue;
            }
            symbols[pair.left].len += r.len;
            symbols[pair.right].len = 0;
            symbols[pair.left].next = r.next;
            if let Some(next) = r.next {
                symbols[next].prev = Some(pair.left);
            }
            self.queue_pair(text, &symbols, l.prev, Some(pair.left), &mut queue);
            self.queue_pair(text, &symbols, Some(pair.left), r.next, &mut queue);
        }

        let mut at = Some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        let id = self.bytes[b as usize].or(self.unk).ok_or_else(|| {
                            tok_err(format!(
                                "{piece:?} is not in the vocabulary, which has no byte token <0x{b:02X}> and no unknown token to stand for it"
                            ))
                        })?;
                        out.push(id);
                    }
                }
            }
            at = s.next;
        }
        Ok(())
    }

    /// Queues the merge of `left` and `right` if their text together is a vocabulary entry.
    fn queue_pair(&self, text: &str, symbols: &[Symbol], left: Option<usize>, right: Option<usize>, queue: &mut BinaryHeap<Pair>) {
        let (Some(left), Some(right)) = (left, right) else { return };
        let start = symbols[left].start;
        let size = symbols[left].len + symbols[right].len;
        if let Some(&id) = self.ids.get(&text[start..start + size]) {
            queue.push(Pair { score: self.scores[id as usize], left, right, size });
        }
    }
}
