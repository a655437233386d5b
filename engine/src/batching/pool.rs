//! The KV cache as a pool of fixed-size blocks (vLLM's PagedAttention, Kwon et al., 2023), with
//! prefix caching: a block filled with prompt tokens is registered under its [`BlockKey`] — its
//! tokens and the registered block before it — and a later prompt that starts with the same
//! tokens takes that block instead of recomputing it (a shared system prompt is prefilled once).
//! A block's reference count says how many sequences hold it; a registered block nobody holds
//! stays cached until its space is needed (least recently released first).
//!
//! Keys are compared whole, never by a hash alone, so a hash collision cannot hand a sequence
//! keys and values computed for other tokens. Each registration gets a [`PrefixId`] that is never
//! reused, and a key names its parent by that id: a key therefore names its whole prefix, and a
//! block whose parent was evicted can no longer be reached (its space goes when it is the oldest).
//!
//! Block 0 is never handed out: batches padded to a bucketed size write their padding tokens'
//! keys there, so padding can never touch a live sequence.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// The block padding tokens write to.
pub const SCRATCH_BLOCK: u32 = 0;

/// One registration of a cached block; ids count up from 1 and are never reused.
pub type PrefixId = u64;

/// The parent of a prompt's first block.
pub const PROMPT_START: PrefixId = 0;

/// What a cached block holds: its tokens, after the prefix that `parent` names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub parent: PrefixId,
    pub tokens: Vec<u32>,
}

/// The pool; `S` hashes block keys (tests pass one under which every key collides).
#[derive(Debug)]
pub struct BlockPool<S = RandomState> {
    /// Blocks holding nothing anyone may reuse; popped from the end, so low ids go first.
    free: Vec<u32>,
    refs: Vec<u32>,
    /// Key → the block holding it and its registration, and back.
    cached: HashMap<BlockKey, (u32, PrefixId), S>,
    key_of: Vec<Option<BlockKey>>,
    /// Registered blocks nobody holds, by the tick they were released (oldest evicted first).
    idle: BTreeMap<u64, u32>,
    idle_since: Vec<u64>,
    tick: u64,
    last_id: PrefixId,
    /// Blocks that can be handed out (all but the scratch block).
    usable: usize,
}

impl BlockPool {
    pub fn new(n_blocks: usize) -> BlockPool {
        BlockPool::with_hasher(n_blocks, RandomState::new())
    }
}

impl<S: BuildHasher> BlockPool<S> {
    pub fn with_hasher(n_blocks: usize, hasher: S) -> BlockPool<S> {
        BlockPool {
            free: (1..n_blocks as u32).rev().collect(),
            refs: vec![0; n_blocks],
            cached: HashMap::with_hasher(hasher),
            key_of: vec![None; n_blocks],
            idle: BTreeMap::new(),
            idle_since: vec![0; n_blocks],
            tick: 0,
            last_id: PROMPT_START,
            usable: n_blocks.saturating_sub(1),
        }
    }

    /// `n` fresh blocks, or `None` (and nothing taken) when fewer are free or evictable.
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        if self.available() < n {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let b = match self.free.pop() {
                Some(b) => b,
                None => self.evict_oldest(),
            };
            self.refs[b as usize] = 1;
            out.push(b);
        }
        Some(out)
    }

    fn evict_oldest(&mut self) -> u32 {
        let (_, b) = self.idle.pop_first().expect("available() counted an idle block");
        if let Some(key) = self.key_of[b as usize].take() {
            self.cached.remove(&key);
        }
        b
    }

    /// The cached block holding `tokens` after prefix `parent`, now also held by the caller, and
    /// the id that names the prefix it ends (the parent of the next block's key).
    pub fn lookup(&mut self, parent: PrefixId, tokens: &[u32]) -> Option<(u32, PrefixId)> {
        let &(b, id) = self.cached.get(&BlockKey { parent, tokens: tokens.to_vec() })?;
        if self.refs[b as usize] == 0 {
            self.idle.remove(&self.idle_since[b as usize]);
        }
        self.refs[b as usize] += 1;
        Some((b, id))
    }

    /// Records that `block` (held by the caller, not registered yet) now holds `tokens` after
    /// prefix `parent`, and returns the id naming the prefix it ends. Where the same key is
    /// already cached in another block, that one is kept and its id returned (the contents are
    /// the same). `None` if `block` is already registered: the caller's chain stops there.
    pub fn register(&mut self, block: u32, parent: PrefixId, tokens: &[u32]) -> Option<PrefixId> {
        let key = BlockKey { parent, tokens: tokens.to_vec() };
        if let Some(&(_, id)) = self.cached.get(&key) {
            return Some(id);
        }
        if self.key_of[block as usize].is_some() {
            return None;
        }
        self.last_id += 1;
        self.key_of[block as usize] = Some(key.clone());
        self.cached.insert(key, (block, self.last_id));
        Some(self.last_id)
    }

    pub fn release(&mut self, blocks: Vec<u32>) {
        for b in blocks {
            let r = &mut self.refs[b as usize];
            debug_assert!(b != SCRATCH_BLOCK && *r > 0, "double free of block {b}");
            *r = r.saturating_sub(1);
            if *r > 0 {
                continue;
            }
            if self.key_of[b as usize].is_some() {
                self.tick += 1;
                self.idle_since[b as usize] = self.tick;
                self.idle.insert(self.tick, b);
            } else {
                self.free.push(b);
            }
        }
    }

    /// Blocks an `alloc` could hand out now (free, or cached and held by nobody).
    pub fn available(&self) -> usize {
        self.free.len() + self.idle.len()
    }

    pub fn usable(&self) -> usize {
        self.usable
    }

    /// Blocks held by running sequences.
    pub fn in_use(&self) -> usize {
        self.usable - self.available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_taken_and_returned_and_scratch_is_never_handed_out() {
        let mut p = BlockPool::new(5);
        assert_eq!(p.usable(), 4);
        let a = p.alloc(3).unwrap();
        assert!(!a.contains(&SCRATCH_BLOCK));
        assert_eq!(p.in_use(), 3);
        assert!(p.alloc(2).is_none(), "only one block is free");
        assert_eq!(p.in_use(), 3, "a failed alloc takes nothing");
        let b = p.alloc(1).unwrap();
        assert!(!b.contains(&SCRATCH_BLOCK) && !a.contains(&b[0]));
        p.release(a);
        p.release(b);
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.alloc(4).map(|v| v.len()), Some(4));
    }

    #[test]
    fn cached_prefixes_are_shared_kept_while_idle_and_evicted_last() {
        let (t1, t2) = ([1; 16], [2; 16]);
        let mut p = BlockPool::new(4);
        let a = p.alloc(2).unwrap();
        let id1 = p.register(a[0], PROMPT_START, &t1).unwrap();
        let id2 = p.register(a[1], id1, &t2).unwrap();
        assert_ne!(id1, id2);
        // A second sequence with the same prefix shares the first block.
        assert_eq!(p.lookup(PROMPT_START, &t1), Some((a[0], id1)));
        assert_eq!(p.in_use(), 2);
        p.release(vec![a[0]]);
        p.release(a.clone());
        assert_eq!(p.in_use(), 0, "idle cached blocks count as available");
        // Still cached after release...
        assert_eq!(p.lookup(id1, &t2), Some((a[1], id2)));
        p.release(vec![a[1]]);
        // ...until their space is needed: the free block goes first, then the oldest idle one.
        let c = p.alloc(2).unwrap();
        assert!(c.contains(&a[0]) && !c.contains(&a[1]), "{c:?} {a:?}");
        assert_eq!(p.lookup(PROMPT_START, &t1), None, "an evicted prefix is forgotten");
        // Its block comes back under a new id, so the old child is never reached through it.
        let id3 = p.register(a[0], PROMPT_START, &t1).unwrap();
        assert!(id3 != id1 && p.lookup(id3, &t2).is_none());
    }

    /// Every key hashes to 0.
    #[derive(Default)]
    struct Collide;
    impl std::hash::Hasher for Collide {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn a_hash_collision_never_shares_a_block_with_other_tokens() {
        let mut p = BlockPool::with_hasher(8, std::hash::BuildHasherDefault::<Collide>::default());
        let a = p.alloc(4).unwrap();
        let x = p.register(a[0], PROMPT_START, &[1; 16]).unwrap();
        let y = p.register(a[1], PROMPT_START, &[2; 16]).unwrap();
        // The same tokens after different prefixes are different blocks too.
        let xz = p.register(a[2], x, &[3; 16]).unwrap();
        let yz = p.register(a[3], y, &[3; 16]).unwrap();
        assert_eq!(p.lookup(PROMPT_START, &[2; 16]), Some((a[1], y)));
        assert_eq!(p.lookup(PROMPT_START, &[1; 16]), Some((a[0], x)));
        assert_eq!(p.lookup(y, &[3; 16]), Some((a[3], yz)));
        assert_eq!(p.lookup(x, &[3; 16]), Some((a[2], xz)));
        assert_eq!(p.lookup(PROMPT_START, &[3; 16]), None);
        assert_eq!(p.lookup(x, &[1; 16]), None);
        // Registering the same key again from another block keeps the first (same contents).
        let b = p.alloc(1).unwrap();
        assert_eq!(p.register(b[0], PROMPT_START, &[1; 16]), Some(x));
    }
}
