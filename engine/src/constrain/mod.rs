//! Structured output enforced while sampling (OpenAI `response_format`).
//!
//! A constraint is a regular language over the bytes of the output: a regex given directly, or
//! one compiled from a JSON schema (`schema.rs`). It becomes a byte-level DFA
//! (regex-automata, `automaton.rs`). Before each sample, [`Matcher::mask`] sets the logit of
//! every token whose bytes would lead the DFA out of the language to -inf; after it,
//! [`Matcher::accept`] moves the DFA over the chosen token's bytes. Tokens are handled as the
//! bytes they render to, so a token may end in the middle of a UTF-8 character or span several
//! JSON tokens (`"},`), exactly as the model produces them.
//!
//! The set of allowed tokens depends only on the DFA state, so it is computed once per state
//! (`vocab.rs`) and cached in the [`Grammar`], which sequences share through an `Arc`. JSON
//! output revisits the same few states (inside a string, after a comma) over and over.
//!
//! **Architecture Invariant:** this module knows bytes and token ids, not models or backends;
//! the generation loop calls `mask` and `accept` around its sampler.

mod automaton;
mod schema;
mod vocab;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regex_automata::util::primitives::StateID;

pub use schema::json_schema_to_regex;

use crate::error::{ForgeError, Result};
use crate::tokenizer::Tokenizer;
use automaton::Automaton;
use vocab::{TokenSet, Vocab};

/// Distinct DFA states whose token sets are kept. One set is a bit per token (6 KiB for a
/// 49152-token vocabulary), so this bounds a grammar's cache at 6 MiB; a generation that
/// wanders through more states than this only recomputes.
const MASK_CACHE_STATES: usize = 1024;

/// Nesting bound for `{"type": "json_object"}`: the object and up to two more levels of
/// containers inside it. Arbitrary nesting is not a regular language, so a DFA needs a bound.
const JSON_OBJECT_DEPTH: usize = 3;

/// A compiled constraint: a byte-level DFA plus per-DFA-state token masks computed lazily.
/// Send + Sync, shared via `Arc` between sequences.
pub struct Grammar {
    dfa: Automaton,
    vocab: Vocab,
    masks: Mutex<HashMap<StateID, Arc<TokenSet>>>,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar").field("vocab_size", &self.vocab.len()).finish_non_exhaustive()
    }
}

impl Grammar {
    /// The whole output must match `pattern` (anchored at both ends).
    pub fn from_regex(pattern: &str, tok: &Tokenizer) -> Result<Arc<Grammar>> {
        Ok(Arc::new(Grammar {
            dfa: Automaton::new(pattern)?,
            vocab: Vocab::new(tok)?,
            masks: Mutex::new(HashMap::new()),
        }))
    }

    /// `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}`.
    pub fn from_json_schema(schema: &serde_json::Value, tok: &Tokenizer) -> Result<Arc<Grammar>> {
        Grammar::from_regex(&json_schema_to_regex(schema)?, tok)
    }

    /// `response_format: {"type": "json_object"}`: any JSON object, nested at most
    /// [`JSON_OBJECT_DEPTH`] containers deep.
    pub fn json_object(tok: &Tokenizer) -> Result<Arc<Grammar>> {
        Grammar::from_regex(&schema::any_object(JSON_OBJECT_DEPTH), tok)
    }

    pub fn matcher(self: &Arc<Self>) -> Matcher {
        Matcher { grammar: Arc::clone(self), state: self.dfa.start() }
    }

    /// The tokens allowed after `state`, from the cache or computed (outside the lock, so
    /// sequences sharing the grammar do not wait on each other's misses).
    fn allowed(&self, state: StateID) -> Arc<TokenSet> {
        if let Some(set) = self.lock().get(&state) {
            return Arc::clone(set);
        }
        let set = Arc::new(self.vocab.allowed(&self.dfa, state));
        let mut masks = self.lock();
        if masks.len() >= MASK_CACHE_STATES {
            masks.clear();
        }
        masks.insert(state, Arc::clone(&set));
        set
    }

    /// The cache holds only finished computations, so a panic elsewhere cannot leave it torn.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StateID, Arc<TokenSet>>> {
        self.masks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One sequence's position in the grammar.
#[derive(Debug, Clone)]
pub struct Matcher {
    grammar: Arc<Grammar>,
    state: StateID,
}

impl Matcher {
    /// Sets the logit of every token that cannot continue a match to -inf. Stop ids stay
    /// allowed only where the text so far is a complete match; other tokens that render as
    /// nothing (control tokens) never are. At a dead end (no token can continue) the stop ids
    /// are allowed, so generation ends.
    pub fn mask(&mut self, logits: &mut [f32]) {
        self.grammar.allowed(self.state).apply(logits);
    }

    /// Advances over a sampled token; an error if `mask` would have excluded it. A stop id
    /// leaves the position as it is.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        let g = &self.grammar;
        if id as usize >= g.vocab.len() {
            return Err(ForgeError::InvalidArgument {
                what: format!("response format: token {id} is outside the vocabulary of {}", g.vocab.len()),
            });
        }
        if !g.allowed(self.state).contains(id) {
            let text = String::from_utf8_lossy(g.vocab.piece(id));
            return Err(ForgeError::InvalidArgument {
                what: format!("response format: token {id} ({text:?}) cannot continue the output here"),
            });
        }
        if !g.vocab.is_stop(id) {
            self.state = g.vocab.piece(id).iter().fold(self.state, |s, &b| g.dfa.step(s, b));
        }
        Ok(())
    }

    /// The text so far is a complete match.
    pub fn is_match(&self) -> bool {
        self.grammar.dfa.is_complete(self.state)
    }

    /// Complete, and no byte can extend it: the caller should finish now (finish_reason
    /// "stop").
    pub fn is_finished(&self) -> bool {
        self.grammar.dfa.is_finished(self.state)
    }
}

#[cfg(test)]
mod tests;
