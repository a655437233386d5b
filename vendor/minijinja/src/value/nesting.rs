//! Forge's patch: a bound on how deeply values are walked when they are printed, serialized,
//! compared or hashed.
//!
//! A namespace is mutable, so a template can make a value that contains itself
//! (`{% set ns = namespace(n=1) %}{% set ns.n = ns %}{{ ns.n }}`), and it can nest lists
//! thousands deep (`{% set ns.l = [ns.l] %}` in a loop). Walking either recursed without bound
//! and overflowed the stack, which aborts the process (a stack overflow cannot be caught). Every
//! recursive walk over objects now goes through [`Nesting::enter`]; past [`MAX_DEPTH`] levels
//! printing shows `...` (as Python shows a recursive list), serializing fails, comparing
//! and hashing stop descending.

use std::cell::Cell;

/// Levels of objects within objects walked before giving up: far beyond any real chat template's
/// data, and small enough that the walk stays well inside a 1 MiB (wasm) stack.
pub(crate) const MAX_DEPTH: usize = 100;

/// What printing shows in place of a value nested too deeply.
pub(crate) const ELIDED: &str = "...";

pub(crate) const TOO_DEEP: &str = "value nested too deeply (or containing itself) to serialize";

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a walk on this thread hit [`MAX_DEPTH`] since the last call, clearing the flag: a
/// caller that renders untrusted templates turns an elided value into an error of its own.
pub fn take_depth_exceeded() -> bool {
    EXCEEDED.with(|e| e.replace(false))
}

/// One level of an ongoing walk; leaving the level when dropped.
pub(crate) struct Nesting(());

impl Nesting {
    /// Enters one more level, or `None` when [`MAX_DEPTH`] levels are already entered.
    pub(crate) fn enter() -> Option<Nesting> {
        DEPTH.with(|d| {
            let depth = d.get();
            if depth >= MAX_DEPTH {
                EXCEEDED.with(|e| e.set(true));
                return None;
            }
            d.set(depth + 1);
            Some(Nesting(()))
        })
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}
