//! Choosing the next token from logits: greedy, or sampled after repetition penalty, top-k,
//! top-p (nucleus, Holtzman et al., 2019), min-p and temperature, in llama.cpp's default order.
//!
//! The random source is ChaCha8 seeded from `seed`, so the same seed and the same logits give
//! the same tokens on every backend and platform.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or less) means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens by this; 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Subtracted from the logit of every token already generated (OpenAI's `presence_penalty`).
    pub presence_penalty: f32,
    /// Subtracted once per earlier occurrence of a generated token (`frequency_penalty`).
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64, presence_penalty: 0.0, frequency_penalty: 0.0, seed: 0 }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig { temperature: 0.0, ..Self::default() }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repeat_penalty == 1.0 && self.presence_penalty == 0.0 && self.frequency_penalty == 0.0
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
}

/// Index of the largest logit; the lowest index wins a tie (as the argmax kernels do).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest `(id, logit)` pairs, largest first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Sampler { cfg, rng }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// A uniform number in [0, 1) with 24 bits of precision.
    fn uniform(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Picks the next token. `history` is the sequence so far (for the penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        self.penalize(&mut logits, history, history);
        self.choose(&logits)
    }

    /// Applies the repetition penalty over the last `repeat_last_n` ids of `history`, and the
    /// presence and frequency penalties over `generated` (OpenAI counts only generated text).
    pub fn penalize(&self, logits: &mut [f32], history: &[u32], generated: &[u32]) {
        let c = &self.cfg;
        if c.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(c.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &id in &history[start..] {
                if let Some(l) = logits.get_mut(id as usize).filter(|_| seen.insert(id)) {
                    *l = if *l > 0.0 { *l / c.repeat_penalty } else { *l * c.repeat_penalty };
                }
            }
        }
        if c.presence_penalty != 0.0 || c.frequency_penalty != 0.0 {
            let mut counts = std::collections::HashMap::new();
            for &id in generated {
                *counts.entry(id).or_insert(0u32) += 1;
            }
            for (id, n) in counts {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l -= c.presence_penalty + c.frequency_penalty * n as f32;
                }
            }
        }
    }

    /// Picks a token from logits that are already penalized (and masked).
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        let c = &self.cfg;
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        let k = if c.top_k == 0 { logits.len() } else { c.top_k };
        let mut cand = top_k(logits, k);
        // Softmax over the candidates (largest first).
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|&(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if c.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs.iter().position(|&p| {
                acc += p;
                acc >= c.top_p
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            cand.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = c.min_p * probs[0];
            let keep = probs.iter().take(cand.len()).take_while(|&&p| p >= floor).count().max(1);
            cand.truncate(keep);
        }
        // Temperature last, over the survivors.
        let weights: Vec<f32> = cand.iter().map(|&(_, l)| ((l - max) / c.temperature).exp()).collect();
        let total: f32 = weights.iter().sum();
        let mut r = self.uniform() * total;
        for (&(id, _), w) in cand.iter().zip(&weights) {
            if r < *w {
                return id;
            }
            r -= w;
        }
        // Rounding left r past the end: the most likely candidate (never a masked-out one).
        cand[0].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_with_lowest_index_on_ties() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig { seed: 42, top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 1.0, ..Default::default() };
        let run = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(&cfg), run(&cfg));
        assert_ne!(run(&cfg), run(&SamplerConfig { seed: 43, ..cfg.clone() }), "a different seed should give a different sequence");
    }

    #[test]
    fn top_k_one_is_greedy() {
        let cfg = SamplerConfig { top_k: 1, temperature: 5.0, ..Default::default() };
        let mut s = Sampler::new(cfg);
        for _ in 0..20 {
            assert_eq!(s.sample(&[1.0, 2.0, 0.5], &[]), 1);
        }
    }

    #[test]
    fn min_p_and_top_p_remove_unlikely_tokens() {
        // Token 0 has ~all the mass; with top_p 0.5 nothing else may ever be drawn.
        let logits = [10.0, 0.0, 0.0, 0.0];
        let mut s = Sampler::new(SamplerConfig { top_k: 0, top_p: 0.5, min_p: 0.0, temperature: 1.0, seed: 1, ..Default::default() });
        assert!((0..200).all(|_| s.sample(&logits, &[]) == 0));
        let mut s = Sampler::new(SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.01, temperature: 1.0, seed: 1, ..Default::default() });
        assert!((0..200).all(|_| s.sample(&logits, &[]) == 0));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // Two tokens with probabilities 0.75 / 0.25.
        let logits = [3f32.ln(), 0.0];
        let mut s = Sampler::new(SamplerConfig { top_k: 0, top_p: 1.0, min_p: 0.0, temperature: 1.0, seed: 7, ..Default::default() });
        let n = 20_000;
        let zeros = (0..n).filter(|_| s.sample(&logits, &[]) == 0).count();
        let frac = zeros as f32 / n as f32;
        assert!((frac - 0.75).abs() < 0.02, "fraction of token 0 was {frac}");
    }

    #[test]
    fn repeat_penalty_demotes_recent_tokens() {
        let mut s = Sampler::new(SamplerConfig { temperature: 0.0, repeat_penalty: 2.0, ..Default::default() });
        assert_eq!(s.sample(&[2.0, 1.5], &[0]), 1);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        assert_eq!(top_k(&[1.0, 5.0, 5.0, 2.0], 3), vec![(1, 5.0), (2, 5.0), (3, 2.0)]);
    }
}
