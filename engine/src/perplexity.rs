//! Perplexity over a token sequence, in llama.cpp's convention (`llama-perplexity`): the text is
//! cut into chunks of `ctx` tokens, each chunk is evaluated from an empty cache, and only the
//! second half of each chunk is scored (every scored token then has at least ctx/2 tokens of
//! context). With a BOS-adding model, each chunk's first token is replaced by BOS.

use crate::error::{ForgeError, Result};
use crate::session::Readout;
use crate::session::{Forward, Session};

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of the perplexity estimate (delta method over the scored tokens' NLLs).
    pub stderr: f64,
    pub chunks: usize,
    pub scored_tokens: usize,
}

/// Scored rows evaluated per forward pass.
const SCORED_PIECE: usize = 32;

/// `log(softmax(logits)[target])`, computed stably in f64.
fn log_prob(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    logits[target] as f64 - max - sum.ln()
}

/// `progress(done_chunks, total_chunks)` is called after each chunk.
pub fn perplexity(session: &mut Session, tokens: &[u32], ctx: usize, bos: Option<u32>, progress: &mut dyn FnMut(usize, usize)) -> Result<Perplexity> {
    if ctx < 4 || ctx > session.ctx() {
        return Err(ForgeError::InvalidArgument { what: format!("perplexity context {ctx} must be between 4 and the session's {}", session.ctx()) });
    }
    let n_chunks = tokens.len() / ctx;
    if n_chunks == 0 {
        return Err(ForgeError::InvalidArgument { what: format!("the text has {} tokens, fewer than one chunk of {ctx}", tokens.len()) });
    }
    let vocab = session.config().n_vocab;
    let first = ctx / 2;
    let mut nlls = Vec::with_capacity(n_chunks * (ctx - 1 - first));
    for c in 0..n_chunks {
        let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        // The unscored first half in one pass, then the scored rows a piece at a time, so that
        // no more than SCORED_PIECE rows of logits exist at once (Gemma's are 1 MiB each).
        session.forward(&chunk[..first], Readout::LogitsLast)?;
        for start in (first..ctx).step_by(SCORED_PIECE) {
            let end = (start + SCORED_PIECE).min(ctx);
            let Forward::Logits { values, .. } = session.forward(&chunk[start..end], Readout::LogitsAll)? else {
                return Err(ForgeError::Graph { what: "perplexity needs logits".into() });
            };
            // Row j predicts token j+1; llama.cpp scores rows first..ctx-1 against the original text.
            for j in start..end.min(ctx - 1) {
                let target = tokens[c * ctx + j + 1] as usize;
                let r = j - start;
                nlls.push(-log_prob(&values[r * vocab..(r + 1) * vocab], target));
            }
        }
        progress(c + 1, n_chunks);
    }
    let n = nlls.len() as f64;
    let mean = nlls.iter().sum::<f64>() / n;
    let var = nlls.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let ppl = mean.exp();
    Ok(Perplexity { ppl, stderr: ppl * (var / n).sqrt(), chunks: n_chunks, scored_tokens: nlls.len() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_prob_of_uniform_is_minus_log_n() {
        let lp = super::log_prob(&[0.5; 8], 3);
        assert!((lp + 8f64.ln()).abs() < 1e-12);
    }
}
