//! The vocabulary as the constraint sees it: each token's bytes, and the set of tokens that can
//! follow a DFA state.
//!
//! Tokens are kept sorted by their bytes, so neighbours share prefixes (`"`, `",`, `", "`): the
//! walk for one token starts where the previous one's shared prefix left the DFA, and once a
//! prefix is dead every token under it is skipped without a single step. For SmolLM2's 49152
//! tokens that is about one DFA step per token instead of one per byte.

use regex_automata::util::primitives::StateID;

use super::automaton::Automaton;
use crate::error::Result;
use crate::tokenizer::Tokenizer;

pub(super) struct Vocab {
    /// `bytes[offsets[id]..offsets[id + 1]]` is what token `id` renders to (empty: control).
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    /// Ids with non-empty bytes, other than stop ids, sorted by bytes.
    sorted: Vec<u32>,
    /// `shared[k]`: length of the prefix `sorted[k]` shares with `sorted[k - 1]` (0 for k = 0).
    shared: Vec<usize>,
    stop_ids: Vec<u32>,
}

impl Vocab {
    pub(super) fn new(tok: &Tokenizer) -> Result<Vocab> {
        let n = tok.vocab_size();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for id in 0..n as u32 {
            bytes.extend_from_slice(tok.render(id)?);
            offsets.push(bytes.len());
        }
        let piece = |id: u32| &bytes[offsets[id as usize]..offsets[id as usize + 1]];
        let stop_ids = tok.stop_ids().to_vec();
        // A stop id is allowed by the stop rule alone, even if it renders as text.
        let mut sorted: Vec<u32> =
            (0..n as u32).filter(|&id| !piece(id).is_empty() && stop_ids.binary_search(&id).is_err()).collect();
        sorted.sort_by(|&a, &b| piece(a).cmp(piece(b)));
        let shared = (0..sorted.len())
            .map(|k| {
                if k == 0 {
                    return 0;
                }
                let (a, b) = (piece(sorted[k - 1]), piece(sorted[k]));
                a.iter().zip(b).take_while(|(x, y)| x == y).count()
            })
            .collect();
        Ok(Vocab { bytes, offsets, sorted, shared, stop_ids })
    }

    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(super) fn piece(&self, id: u32) -> &[u8] {
        &self.bytes[self.offsets[id as usize]..self.offsets[id as usize + 1]]
    }

    pub(super) fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.binary_search(&id).is_ok()
    }

    /// Every token allowed after state `s`: those whose bytes keep the DFA live; the stop ids if
    /// the text is complete here, or if nothing else is allowed (a dead end: the vocabulary has
    /// no token for the byte the grammar needs), so that generation ends instead of stalling.
    pub(super) fn allowed(&self, dfa: &Automaton, s: StateID) -> TokenSet {
        let mut set = TokenSet::new(self.len());
        // path[d]: the state after the first d bytes of the current token.
        let mut path = vec![s];
        // The depth at which the current path died; usize::MAX while live.
        let mut dead_at = usize::MAX;
        for (k, &id) in self.sorted.iter().enumerate() {
            let shared = self.shared[k];
            if dead_at <= shared {
                continue;
            }
            dead_at = usize::MAX;
            path.truncate(shared + 1);
            for &b in &self.piece(id)[shared..] {
                let t = dfa.step(*path.last().expect("path holds the start state"), b);
                if !dfa.is_live(t) {
                    dead_at = path.len();
                    break;
                }
                path.push(t);
            }
            if dead_at == usize::MAX {
                set.insert(id);
            }
        }
        if dfa.is_complete(s) || set.is_empty() {
            for &id in &self.stop_ids {
                set.insert(id);
            }
        }
        set
    }
}

/// A bitset over token ids.
pub(super) struct TokenSet {
    words: Vec<u64>,
    count: usize,
}

impl TokenSet {
    fn new(n: usize) -> TokenSet {
        TokenSet { words: vec![0; n.div_ceil(64)], count: 0 }
    }

    fn insert(&mut self, id: u32) {
        let (w, bit) = (id as usize / 64, 1u64 << (id % 64));
        if self.words[w] & bit == 0 {
            self.words[w] |= bit;
            self.count += 1;
        }
    }

    pub(super) fn contains(&self, id: u32) -> bool {
        self.words.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sets every logit outside the set to -inf; logits past the vocabulary (padded output
    /// rows) are never allowed.
    pub(super) fn apply(&self, logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.contains(i as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}
