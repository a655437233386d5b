//! The page's bench mode (`www/app.js`, `?bench=1`): the same deterministic prompt ids as native
//! `forge bench` (native/src/bench.rs), so browser and native rows measure the same work.

/// Deterministic pseudo-random token ids: xorshift64 from `seed`, as native `forge bench` feeds.
pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_deterministic_and_in_the_vocabulary() {
        let a = super::tokens(64, 49152, 2);
        assert_eq!(a, super::tokens(64, 49152, 2));
        assert_ne!(a, super::tokens(64, 49152, 3));
        assert!(a.iter().all(|&t| t < 49152));
    }
}
