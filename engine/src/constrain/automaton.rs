//! The byte-level DFA a [`super::Grammar`] runs on, plus what each of its states means for
//! generation: can the text still become a match (live), is it one now (complete), and can it
//! grow any further (finished).
//!
//! regex-automata reports matches one byte late (a DFA state knows a match ended *before* the
//! byte that led to it), so "not the dead state" is not the same as "can still match": after
//! `"a"` for the pattern `a`, the byte `b` leads to a state that only remembers the old match and
//! dies on the next byte. Generation must never enter such a state, so liveness is computed here
//! once, by walking every state reachable from the start.

use std::collections::{HashMap, HashSet};

use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

use crate::error::{ForgeError, Result};

/// Ceiling on the DFA's transition table and on the memory used to build it. A JSON schema with
/// a few dozen properties needs well under a MiB; this only stops hostile or runaway patterns
/// (`\w{1000}`) from eating the server's memory.
const DFA_SIZE_LIMIT: usize = 32 << 20;
const DETERMINIZE_SIZE_LIMIT: usize = 64 << 20;
const NFA_SIZE_LIMIT: usize = 16 << 20;

const LIVE: u8 = 1;
const COMPLETE: u8 = 2;
const FINISHED: u8 = 4;

pub(super) struct Automaton {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// `LIVE | COMPLETE | FINISHED` per state, indexed by `state_index`.
    flags: Vec<u8>,
}

impl Automaton {
    /// The whole text must match `pattern`: anchored at the start by the start state, at the
    /// end because a match only counts when the text ends there (`is_complete`).
    pub(super) fn new(pattern: &str) -> Result<Automaton> {
        let invalid = |e: &dyn std::fmt::Display| ForgeError::InvalidArgument {
            what: format!("response format: cannot compile the pattern: {e}"),
        };
        // MatchKind::All keeps every thread alive after a match: with leftmost-first, a DFA for
        // `a|ab` would drop the `ab` branch once `a` matched, and "ab" could never be generated.
        let config = dense::Config::new()
            .start_kind(StartKind::Anchored)
            .match_kind(MatchKind::All)
            // Minimizing would merge a few states but costs ~30x the build (a 7-property schema:
            // 280 ms instead of 9; json_object: 1 s instead of 50 ms), paid on every request.
            .minimize(false)
            .dfa_size_limit(Some(DFA_SIZE_LIMIT))
            .determinize_size_limit(Some(DETERMINIZE_SIZE_LIMIT));
        let dfa = dense::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new())
            .thompson(
                thompson::Config::new()
                    .nfa_size_limit(Some(NFA_SIZE_LIMIT))
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build(pattern)
            .map_err(|e| invalid(&e))?;
        let start = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)).map_err(|e| invalid(&e))?;
        let mut a = Automaton { dfa, start, flags: Vec::new() };
        a.compute_flags();
        if !a.is_live(a.start) {
            return Err(ForgeError::InvalidArgument {
                what: format!("response format: the pattern matches no text at all: {pattern}"),
            });
        }
        Ok(a)
    }

    pub(super) fn start(&self) -> StateID {
        self.start
    }

    pub(super) fn step(&self, s: StateID, byte: u8) -> StateID {
        self.dfa.next_state(s, byte)
    }

    /// Some continuation of the text (possibly none) is a match.
    pub(super) fn is_live(&self, s: StateID) -> bool {
        self.flag(s, LIVE)
    }

    /// The text that led here is a match as it stands.
    pub(super) fn is_complete(&self, s: StateID) -> bool {
        self.flag(s, COMPLETE)
    }

    /// Complete, and no byte keeps it live.
    pub(super) fn is_finished(&self, s: StateID) -> bool {
        self.flag(s, FINISHED)
    }

    fn flag(&self, s: StateID, bit: u8) -> bool {
        self.flags.get(self.state_index(s)).is_some_and(|f| f & bit != 0)
    }

    /// Dense state ids are premultiplied by the row stride.
    fn state_index(&self, s: StateID) -> usize {
        s.as_usize() >> self.dfa.stride2()
    }

    /// Walks every state reachable from the start (one byte per equivalence class suffices),
    /// marks the complete ones, then propagates liveness backwards to a fixed point.
    fn compute_flags(&mut self) {
        let reps: Vec<u8> = self.dfa.byte_classes().representatives(0..=255).filter_map(|u| u.as_u8()).collect();
        let mut order = vec![self.start];
        let mut seen = HashSet::from([self.start]);
        let mut preds: HashMap<StateID, Vec<StateID>> = HashMap::new();
        let mut k = 0;
        while let Some(&s) = order.get(k) {
            k += 1;
            for &b in &reps {
                let t = self.dfa.next_state(s, b);
                if self.dfa.is_dead_state(t) {
                    continue;
                }
                preds.entry(t).or_default().push(s);
                if seen.insert(t) {
                    order.push(t);
                }
            }
        }

        let mut flags = vec![0u8; order.iter().map(|&s| self.state_index(s) + 1).max().unwrap_or(0)];
        let mut work = Vec::new();
        for &s in &order {
            if self.dfa.is_match_state(self.dfa.next_eoi_state(s)) {
                flags[self.state_index(s)] |= COMPLETE | LIVE;
                work.push(s);
            }
        }
        while let Some(t) = work.pop() {
            for &s in preds.get(&t).into_iter().flatten() {
                let f = &mut flags[self.state_index(s)];
                if *f & LIVE == 0 {
                    *f |= LIVE;
                    work.push(s);
                }
            }
        }
        for &s in &order {
            let i = self.state_index(s);
            let live = |t: StateID| flags.get(self.state_index(t)).is_some_and(|f| f & LIVE != 0);
            if flags[i] & COMPLETE != 0 && !reps.iter().any(|&b| live(self.dfa.next_state(s, b))) {
                flags[i] |= FINISHED;
            }
        }
        self.flags = flags;
    }
}
