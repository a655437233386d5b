//! The KV cache as a pool of fixed-size blocks (vLLM's PagedAttention, Kwon et al., 2023).
//!
//! Block 0 is never handed out: batches padded to a bucketed size write their padding tokens'
//! keys there, so padding can never touch a live sequence.

/// Free blocks of the KV cache.
#[derive(Debug)]
pub struct BlockPool {
    /// Free block ids; popped from the end, so low ids go first.
    free: Vec<u32>,
    /// Blocks that can be handed out (all but the scratch block).
    usable: usize,
}

/// The block padding tokens write to.
pub const SCRATCH_BLOCK: u32 = 0;

impl BlockPool {
    pub fn new(n_blocks: usize) -> BlockPool {
        let usable = n_blocks.saturating_sub(1);
        BlockPool { free: (1..n_blocks as u32).rev().collect(), usable }
    }

    /// `n` blocks, or `None` (and nothing taken) when fewer are free.
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        let keep = self.free.len().checked_sub(n)?;
        Some(self.free.split_off(keep))
    }

    pub fn release(&mut self, blocks: Vec<u32>) {
        debug_assert!(blocks.iter().all(|b| *b != SCRATCH_BLOCK && !self.free.contains(b)), "double free");
        self.free.extend(blocks);
    }

    pub fn n_free(&self) -> usize {
        self.free.len()
    }

    pub fn usable(&self) -> usize {
        self.usable
    }

    pub fn in_use(&self) -> usize {
        self.usable - self.free.len()
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
}
