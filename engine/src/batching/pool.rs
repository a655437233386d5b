//! The KV cache as a pool of fixed-size blocks (vLLM's PagedAttention, Kwon et al., 2023), with
//! prefix caching: a block filled with prompt tokens is registered under the hash of every token
//! up to its end, and a later prompt that starts with the same tokens takes that block instead of
//! recomputing it (a shared system prompt is prefilled once). A block's reference count says how
//! many sequences hold it; a registered block nobody holds stays cached until its space is needed
//! (least recently released first).
//!
//! Block 0 is never handed out: batches padded to a bucketed size write their padding tokens'
//! keys there, so padding can never touch a live sequence.

use std::collections::{BTreeMap, HashMap};

/// The block padding tokens write to.
pub const SCRATCH_BLOCK: u32 = 0;

/// The chained hash of a block of prompt tokens: it names the block's tokens and every token
/// before them, so equal hashes mean equal prefixes (up to 64-bit collisions).
pub fn block_hash(prev: u64, tokens: &[u32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    prev.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

#[derive(Debug)]
pub struct BlockPool {
    /// Blocks holding nothing anyone may reuse; popped from the end, so low ids go first.
    free: Vec<u32>,
    refs: Vec<u32>,
    /// Prefix hash → the block holding it, and back.
    cached: HashMap<u64, u32>,
    hash_of: Vec<Option<u64>>,
    /// Registered blocks nobody holds, by the tick they were released (oldest evicted first).
    idle: BTreeMap<u64, u32>,
    idle_since: Vec<u64>,
    tick: u64,
    /// Blocks that can be handed out (all but the scratch block).
    usable: usize,
}

impl BlockPool {
    pub fn new(n_blocks: usize) -> BlockPool {
        BlockPool {
            free: (1..n_blocks as u32).rev().collect(),
            refs: vec![0; n_blocks],
            cached: HashMap::new(),
            hash_of: vec![None; n_blocks],
            idle: BTreeMap::new(),
            idle_since: vec![0; n_blocks],
            tick: 0,
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
        if let Some(h) = self.hash_of[b as usize].take() {
            self.cached.remove(&h);
        }
        b
    }

    /// The cached block holding prefix `hash`, now also held by the caller.
    pub fn lookup(&mut self, hash: u64) -> Option<u32> {
        let b = *self.cached.get(&hash)?;
        if self.refs[b as usize] == 0 {
            self.idle.remove(&self.idle_since[b as usize]);
        }
        self.refs[b as usize] += 1;
        Some(b)
    }

    /// Records that `block` (held by the caller) now holds prefix `hash`. A prefix already
    /// cached in another block keeps that one.
    pub fn register(&mut self, block: u32, hash: u64) {
        if self.hash_of[block as usize].is_none() && !self.cached.contains_key(&hash) {
            self.cached.insert(hash, block);
            self.hash_of[block as usize] = Some(hash);
        }
    }

    pub fn release(&mut self, blocks: Vec<u32>) {
        for b in blocks {
            let r = &mut self.refs[b as usize];
            debug_assert!(b != SCRATCH_BLOCK && *r > 0, "double free of block {b}");
            *r = r.saturating_sub(1);
            if *r > 0 {
                continue;
            }
            if self.hash_of[b as usize].is_some() {
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
        let mut p = BlockPool::new(4);
        let a = p.alloc(2).unwrap();
        p.register(a[0], 11);
        p.register(a[1], 22);
        // A second sequence with the same prefix shares the first block.
        assert_eq!(p.lookup(11), Some(a[0]));
        assert_eq!(p.in_use(), 2);
        p.release(vec![a[0]]);
        p.release(a.clone());
        assert_eq!(p.in_use(), 0, "idle cached blocks count as available");
        // Still cached after release...
        assert_eq!(p.lookup(22), Some(a[1]));
        p.release(vec![a[1]]);
        // ...until their space is needed: the free block goes first, then the oldest idle one.
        let c = p.alloc(2).unwrap();
        assert!(c.contains(&a[0]) && !c.contains(&a[1]), "{c:?} {a:?}");
        assert_eq!(p.lookup(11), None, "an evicted prefix is forgotten");
        assert_eq!(p.lookup(22), Some(a[1]));
    }
}
