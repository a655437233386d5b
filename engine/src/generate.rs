//! The generation loop: prefill the prompt (in chunks), then decode one token at a time until
//! an end-of-generation token, a stop string, or the token limit.

use std::time::Duration;

// std's Instant panics on wasm32-unknown-unknown; web-time is std's on native.
use web_time::Instant;

use crate::error::{ForgeError, Result};
use crate::session::Readout;
use crate::sampler::{Sampler, SamplerConfig, top_k};
use crate::session::{Forward, Session};
use crate::tokenizer::{TokenStream, Tokenizer};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation ends when the text contains one of these (the stop string is not returned).
    pub stop: Vec<String>,
    /// Record the k highest `(id, logit)` pairs at each generated position (0: none).
    pub top_logits: usize,
    /// Prompt tokens per forward pass during prefill.
    pub prefill_chunk: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 128, sampler: SamplerConfig::default(), stop: Vec::new(), top_logits: 0, prefill_chunk: 512 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated ids, including a final end-of-generation token if one was produced.
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    /// Prompt tokens whose keys and values the session's cache still held from its previous
    /// sequence, so not computed again ([`Session::reuse_prefix`]).
    pub reused: usize,
    /// Time to the first generated token (the forward passes over the rest of the prompt).
    pub prefill: Duration,
    /// Time of the forward passes after the first token.
    pub decode: Duration,
    pub top_logits: Vec<Vec<(u32, f32)>>,
}

impl Generation {
    /// Prompt tokens computed per second (those reused from the cache not counted).
    pub fn prefill_tok_s(&self, n_prompt: usize) -> f64 {
        n_prompt.saturating_sub(self.reused) as f64 / self.prefill.as_secs_f64().max(1e-9)
    }

    pub fn decode_tok_s(&self) -> f64 {
        let steps = self.ids.len().saturating_sub(1);
        if steps == 0 { 0.0 } else { steps as f64 / self.decode.as_secs_f64().max(1e-9) }
    }
}

/// Generates a continuation of `prompt` (token ids) from position 0 of `session`, calling
/// `on_text` with each new piece of text as soon as it is complete.
#[cfg(not(target_arch = "wasm32"))]
pub fn generate(session: &mut Session, tok: &Tokenizer, prompt: &[u32], opts: &GenerateOptions, on_text: &mut dyn FnMut(&str)) -> Result<Generation> {
    pollster::block_on(generate_async(session, tok, prompt, opts, on_text))
}

/// [`generate`] without blocking: the one implementation, awaited directly in the browser.
pub async fn generate_async(session: &mut Session, tok: &Tokenizer, prompt: &[u32], opts: &GenerateOptions, on_text: &mut dyn FnMut(&str)) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(ForgeError::InvalidArgument { what: "the prompt is empty".into() });
    }
    // A caller's max_tokens may be anything up to usize::MAX: saturate rather than wrap, so an
    // absurd request is refused as too long instead of passing the check.
    let need = prompt.len().saturating_add(opts.max_tokens);
    if need > session.ctx() {
        return Err(ForgeError::ContextOverflow { need, ctx: session.ctx() });
    }
    // The part of the prompt the cache still holds from the previous sequence is not computed
    // again (always leaving the last token, whose pass gives the first new one).
    let reused = session.reuse_prefix(prompt);
    let greedy = opts.sampler.is_greedy() && opts.top_logits == 0;
    let readout = if greedy { Readout::ArgmaxLast } else { Readout::LogitsLast };
    let mut sampler = Sampler::new(opts.sampler.clone());
    let mut history = prompt.to_vec();
    let mut stream = TokenStream::new(tok);
    let mut out = StopFilter::new(&opts.stop);
    let mut g = Generation { ids: Vec::new(), text: String::new(), finish: FinishReason::Length, reused, prefill: Duration::ZERO, decode: Duration::ZERO, top_logits: Vec::new() };

    let start = Instant::now();
    let chunk = opts.prefill_chunk.max(1);
    let mut result = None;
    let mut done = reused;
    for part in prompt[reused..].chunks(chunk) {
        done += part.len();
        let last = done == prompt.len();
        // Earlier chunks only fill the cache; their readout is the cheapest one.
        result = Some(session.forward_async(part, if last { readout } else { Readout::ArgmaxLast }).await?);
    }
    g.prefill = start.elapsed();
    let mut result = result.expect("prompt is not empty");

    let decode_start = Instant::now();
    while g.ids.len() < opts.max_tokens {
        let id = match &result {
            Forward::Token(id) => *id,
            Forward::Logits { values, .. } => {
                if opts.top_logits > 0 {
                    g.top_logits.push(top_k(values, opts.top_logits));
                }
                sampler.sample(values, &history)
            }
        };
        g.ids.push(id);
        history.push(id);
        if tok.stop_ids().contains(&id) {
            g.finish = FinishReason::Eos;
            break;
        }
        let piece = stream.push(id)?;
        if out.push(&piece, on_text) {
            g.finish = FinishReason::Stop;
            break;
        }
        if g.ids.len() == opts.max_tokens {
            break;
        }
        result = session.forward_async(&[id], readout).await?;
    }
    g.decode = decode_start.elapsed();
    if g.finish != FinishReason::Stop {
        let tail = stream.finish()?;
        out.push(&tail, on_text);
        out.flush(on_text);
    }
    g.text = out.text;
    Ok(g)
}

/// Streams text while holding back anything that may be the start of a stop string.
pub(crate) struct StopFilter {
    stops: Vec<String>,
    pub(crate) text: String,
    emitted: usize,
}

impl StopFilter {
    pub(crate) fn new(stops: &[String]) -> Self {
        StopFilter { stops: stops.to_vec(), text: String::new(), emitted: 0 }
    }

    /// Adds a piece; returns true when a stop string has appeared (the text is cut before it).
    pub(crate) fn push(&mut self, piece: &str, on_text: &mut dyn FnMut(&str)) -> bool {
        self.text.push_str(piece);
        let search_from = self.emitted.saturating_sub(self.stops.iter().map(|s| s.len()).max().unwrap_or(0));
        let search_from = (0..=search_from).rev().find(|&i| self.text.is_char_boundary(i)).unwrap_or(0);
        if let Some(cut) = self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.text[search_from..].find(s.as_str()).map(|i| i + search_from)).min() {
            self.text.truncate(cut);
            self.flush(on_text);
            return true;
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let hold = self.stops.iter().map(|s| (1..s.len()).rev().find(|&n| s.is_char_boundary(n) && self.text.ends_with(&s[..n])).unwrap_or(0)).max().unwrap_or(0);
        let safe = self.text.len() - hold;
        if safe > self.emitted {
            on_text(&self.text[self.emitted..safe]);
            self.emitted = safe;
        }
        false
    }

    pub(crate) fn flush(&mut self, on_text: &mut dyn FnMut(&str)) {
        if self.text.len() > self.emitted {
            on_text(&self.text[self.emitted..]);
            self.emitted = self.text.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GenerateOptions, StopFilter, generate};

    fn run(stops: &[&str], pieces: &[&str]) -> (String, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = StopFilter::new(&stops);
        let mut streamed = String::new();
        let mut stopped = false;
        for p in pieces {
            if f.push(p, &mut |s| streamed.push_str(s)) {
                stopped = true;
                break;
            }
        }
        if !stopped {
            f.flush(&mut |s| streamed.push_str(s));
        }
        (f.text, streamed, stopped)
    }

    /// A prompt sharing a prefix with the previous sequence computes only the rest, and gives the
    /// bits a fresh session gives; a batched pass (which may overwrite any row) ends the reuse.
    #[test]
    fn a_cached_prefix_is_reused_and_changes_no_bit() {
        use crate::backend::cpu::CpuBackend;
        use crate::devices::check::tiny_model;
        use crate::session::{BatchInput, Readout, Session};
        let model = tiny_model(crate::DType::Q8_0, 5).unwrap();
        let opts = GenerateOptions { max_tokens: 6, sampler: crate::SamplerConfig::greedy(), top_logits: 4, ..GenerateOptions::default() };
        let first: Vec<u32> = vec![1, 7, 3, 9, 4, 12, 5];
        let second: Vec<u32> = [&first[..5], &[20, 21]].concat();
        let fresh = |prompt: &[u32]| {
            let mut s = Session::new(&model, Box::new(CpuBackend::new()), 32, &mut |_, _| {}).unwrap();
            generate(&mut s, &model.tokenizer, prompt, &opts, &mut |_| {}).unwrap()
        };
        let mut s = Session::new(&model, Box::new(CpuBackend::new()), 32, &mut |_, _| {}).unwrap();
        let a = generate(&mut s, &model.tokenizer, &first, &opts, &mut |_| {}).unwrap();
        assert_eq!(a.reused, 0);
        let b = generate(&mut s, &model.tokenizer, &second, &opts, &mut |_| {}).unwrap();
        assert_eq!(b.reused, 5, "the first five prompt tokens are in the cache");
        let want = fresh(&second);
        assert_eq!((&b.ids, &b.top_logits), (&want.ids, &want.top_logits));
        // The same prompt again: all but its last token, even past what the last run generated.
        let c = generate(&mut s, &model.tokenizer, &second, &opts, &mut |_| {}).unwrap();
        assert_eq!((c.reused, &c.ids, &c.top_logits), (second.len() - 1, &want.ids, &want.top_logits));
        // Rewound into the middle of the sequence: the rows before it still count.
        s.rewind(3);
        s.forward(&[30], Readout::LogitsLast).unwrap();
        let d = generate(&mut s, &model.tokenizer, &first, &opts, &mut |_| {}).unwrap();
        assert_eq!(d.reused, 3, "row 3 now holds token 30");
        assert_eq!((&d.ids, &d.top_logits), (&a.ids, &a.top_logits));
        let batch = BatchInput { tokens: vec![2], positions: vec![0], slots: vec![0], table: vec![0, 1], table_cols: 2, out_rows: vec![0], argmax: false };
        s.forward_batch(&batch).unwrap();
        let e = generate(&mut s, &model.tokenizer, &first, &opts, &mut |_| {}).unwrap();
        assert_eq!((e.reused, &e.ids), (0, &a.ids));
    }

    #[test]
    fn stop_string_split_over_pieces_is_never_streamed() {
        let (text, streamed, stopped) = run(&["END"], &["hello E", "N", "D more"]);
        assert!(stopped);
        assert_eq!(text, "hello ");
        assert_eq!(streamed, "hello ");
    }

    #[test]
    fn held_back_text_is_released_when_it_is_not_a_stop() {
        let (text, streamed, stopped) = run(&["END"], &["an E", "lephant"]);
        assert!(!stopped);
        assert_eq!(text, "an Elephant");
        assert_eq!(streamed, text);
    }
}
