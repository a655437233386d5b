//! A request's choices in the engine: one engine request per choice, all sending their events
//! into one channel; following those events for the metrics and the request's log line; and, for
//! a request that is not streamed, collecting them into whole choices. A completion with `echo`
//! (or `max_tokens: 0`) has its prompt scored by the engine, whose log-probabilities come first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use forge::serve_api::ApiError;
use forge::serve_api::response::{LegacyLogprobs, TokenLogprob, TopLogprob, Usage, finite_logprob};
use forge_engine::batching::{self, Event, PromptScoring, Request, Sink, SubmitError};
use forge_engine::constrain::Grammar;
use forge_engine::tokenizer::Tokenizer;
use forge_engine::{FinishReason, SamplerConfig};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::AppState;
use super::metrics::Metrics;

/// Everything the engine needs for one request's choices, and what its response names.
pub(crate) struct Job {
    /// `chatcmpl-…` / `cmpl-…`.
    pub id: String,
    pub endpoint: &'static str,
    /// When the request arrived (time to first token counts from here).
    pub started: Instant,
    /// Unix seconds, the response's `created`.
    pub created: u64,
    /// Each prompt's token ids and completion budget.
    pub prompts: Vec<(Vec<u32>, usize)>,
    /// Choices per prompt; choice `i * n + j` is prompt `i`'s `j`-th.
    pub n: usize,
    /// Choice `k` samples with `seed + k`, so that the choices of one request differ.
    pub sampling: SamplerConfig,
    pub stop: Vec<String>,
    pub logprobs: Option<usize>,
    pub grammar: Option<Arc<Grammar>>,
    /// Completions' `echo`: each prompt's text, which its choices' texts start with.
    pub echo: Option<Vec<String>>,
    /// Log-probabilities name tokens `token_id:ID` (`return_tokens_as_token_ids`).
    pub tokens_as_ids: bool,
}

impl Job {
    pub fn choices(&self) -> usize {
        self.prompts.len() * self.n
    }

    /// Whether the response reports the prompt's log-probabilities (`echo` with `logprobs`).
    pub fn echo_logprobs(&self) -> bool {
        self.echo.is_some() && self.logprobs.is_some()
    }

    /// The text choice `index` starts with: its prompt's, with `echo`.
    pub fn echo_text(&self, index: usize) -> Option<&str> {
        self.echo.as_ref().map(|e| e[index / self.n].as_str())
    }

    /// Choice `index`'s echoed prompt as legacy log-probabilities: the first token without one,
    /// then `scored` (the engine's for the rest). Returns them and where the completion's text
    /// starts.
    pub fn echo_legacy(&self, tok: &Tokenizer, index: usize, scored: &[batching::TokenLogprob]) -> (LegacyLogprobs, usize) {
        let mut legacy = LegacyLogprobs::default();
        let Some(text) = self.echo_text(index) else { return (legacy, 0) };
        if let Some(&first) = self.prompts[index / self.n].0.first() {
            let offset = legacy.push_unscored(token_name(tok, first, self.tokens_as_ids), 0);
            legacy.extend(&token_logprobs(tok, scored, self.tokens_as_ids), offset);
        }
        (legacy, text.len())
    }

    /// Prompt tokens as OpenAI counts them: each prompt once, however many choices it has.
    pub fn prompt_tokens(&self) -> usize {
        self.prompts.iter().map(|(p, _)| p.len()).sum()
    }
}

/// One event of choice `index`, stamped when the engine produced it.
pub(crate) struct Note {
    pub index: usize,
    pub at: Instant,
    pub event: ChoiceEvent,
}

pub(crate) enum ChoiceEvent {
    /// Log-probabilities of the next prompt tokens (of a scored prompt), before any `Engine` event.
    Prompt(Vec<batching::TokenLogprob>),
    Engine(Event),
}

/// Submits every choice of `job`. When one is refused, the error is returned and the receiver
/// dropped, which cancels the ones already submitted at their next event.
pub(crate) fn submit(st: &AppState, job: &Job) -> Result<UnboundedReceiver<Note>, ApiError> {
    let (tx, rx) = unbounded_channel();
    for (i, (prompt, max_tokens)) in job.prompts.iter().enumerate() {
        for j in 0..job.n {
            let index = i * job.n + j;
            let sampling = SamplerConfig { seed: job.sampling.seed.wrapping_add(index as u64), ..job.sampling.clone() };
            let req = Request { prompt: prompt.clone(), max_tokens: *max_tokens, sampling, stop: job.stop.clone(), logprobs: job.logprobs, grammar: job.grammar.clone() };
            // Called on the engine thread; `false` (the response is gone) cancels the sequence.
            let send = {
                let tx = tx.clone();
                move |event: ChoiceEvent| tx.send(Note { index, at: Instant::now(), event }).is_ok()
            };
            // A prompt is scored where its log-probabilities are returned, and where nothing is
            // generated (the engine runs a prompt for nothing else).
            let scoring = (job.echo_logprobs() || *max_tokens == 0).then(|| {
                let send = send.clone();
                PromptScoring { top: job.logprobs.unwrap_or(0), sink: Box::new(move |lps| send(ChoiceEvent::Prompt(lps))) }
            });
            let sink: Sink = Box::new(move |event| send(ChoiceEvent::Engine(event)));
            st.engine.submit_scored(req, scoring, sink).map_err(submit_error)?;
        }
    }
    Ok(rx)
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull { .. } => ApiError::QueueFull(e.to_string()),
        SubmitError::Invalid(err) => ApiError::Invalid(err.to_string()),
        SubmitError::Stopped(_) => ApiError::Unavailable(e.to_string()),
    }
}

pub(crate) fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// How log-probabilities name token `id`: its text, or `token_id:ID` with `as_ids`.
fn token_name(tok: &Tokenizer, id: u32, as_ids: bool) -> String {
    if as_ids { format!("token_id:{id}") } else { String::from_utf8_lossy(tok.token_bytes(id).unwrap_or_default()).into_owned() }
}

/// The engine's log-probabilities in the chat API's form. A token's text is its bytes as UTF-8
/// (U+FFFD where it holds part of a character), or `token_id:ID` with `as_ids`; `bytes` are the
/// raw bytes, so a client can join the pieces of a character split over tokens.
pub(crate) fn token_logprobs(tok: &Tokenizer, lps: &[batching::TokenLogprob], as_ids: bool) -> Vec<TokenLogprob> {
    let piece = |id: u32| (token_name(tok, id, as_ids), tok.token_bytes(id).unwrap_or_default().to_vec());
    lps.iter()
        .map(|lp| {
            let (token, bytes) = piece(lp.id);
            let top_logprobs = lp
                .top
                .iter()
                .map(|&(id, l)| {
                    let (token, bytes) = piece(id);
                    TopLogprob { bytes, token, logprob: finite_logprob(l) }
                })
                .collect();
            TokenLogprob { bytes, token, logprob: finite_logprob(lp.logprob), top_logprobs }
        })
        .collect()
}

/// Follows one request's events: time-to-first-token and inter-token histograms, token counts,
/// and on drop — whether the response completed or its client left — the request's log line.
pub(crate) struct Tracker {
    id: String,
    endpoint: &'static str,
    started: Instant,
    metrics: Arc<Metrics>,
    /// Per choice, when its last token came.
    last: Vec<Option<Instant>>,
    first_token: Option<Duration>,
    prompt_tokens: usize,
    completion_tokens: usize,
    /// Per choice, its prompt tokens served from the prefix cache.
    cached: Vec<usize>,
    n: usize,
    open: usize,
    finish: Option<&'static str>,
    error: Option<String>,
}

impl Tracker {
    pub fn new(st: &AppState, job: &Job) -> Tracker {
        Tracker {
            id: job.id.clone(),
            endpoint: job.endpoint,
            started: job.started,
            metrics: st.metrics.clone(),
            last: vec![None; job.choices()],
            first_token: None,
            prompt_tokens: job.prompt_tokens(),
            completion_tokens: 0,
            cached: vec![0; job.choices()],
            n: job.n,
            open: job.choices(),
            finish: None,
            error: None,
        }
    }

    pub fn observe(&mut self, note: &Note) {
        let ChoiceEvent::Engine(event) = &note.event else { return };
        match event {
            Event::Delta { tokens, .. } if !tokens.is_empty() => match self.last[note.index].replace(note.at) {
                None => {
                    let d = note.at.saturating_duration_since(self.started);
                    self.metrics.ttft.observe(d);
                    self.first_token.get_or_insert(d);
                }
                Some(prev) => self.metrics.itl.observe(note.at.saturating_duration_since(prev)),
            },
            Event::Delta { .. } => {}
            Event::Done { finish, usage } => {
                self.completion_tokens += usage.completion_tokens;
                self.cached[note.index] = usage.cached_prompt_tokens;
                self.finish = Some(finish_reason(*finish));
                self.open = self.open.saturating_sub(1);
            }
            Event::Error { message } => {
                self.error = Some(message.clone());
                self.open = self.open.saturating_sub(1);
            }
        }
    }

    pub fn all_done(&self) -> bool {
        self.open == 0
    }

    /// Usage as OpenAI reports it: each prompt counted once (with its first choice's cache hits),
    /// every choice's completion tokens.
    pub fn usage(&self) -> Usage {
        let cached = self.cached.iter().step_by(self.n.max(1)).sum();
        Usage::new(self.prompt_tokens, self.completion_tokens, cached)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let outcome = match (&self.error, self.open) {
            (Some(e), _) => {
                tracing::warn!(id = %self.id, error = %e, "a sequence failed");
                "error"
            }
            (None, 0) => self.finish.unwrap_or("stop"),
            (None, open) => {
                self.metrics.disconnects.fetch_add(open as u64, std::sync::atomic::Ordering::Relaxed);
                "client disconnected"
            }
        };
        tracing::info!(
            id = %self.id,
            endpoint = self.endpoint,
            outcome,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            cached_tokens = self.usage().prompt_tokens_details.cached_tokens,
            ttft_ms = self.first_token.map(|d| d.as_millis() as u64),
            total_ms = self.started.elapsed().as_millis() as u64,
            "request"
        );
    }
}

/// One choice of a response that is not streamed.
#[derive(Default)]
pub(crate) struct Choice {
    pub text: String,
    /// The engine's log-probabilities of the echoed prompt's tokens after the first.
    pub prompt_logprobs: Vec<batching::TokenLogprob>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: &'static str,
}

/// Waits for every choice to end. Dropped early (the client left), the receiver goes with it and
/// the engine cancels what is still running.
pub(crate) async fn collect(st: &AppState, job: &Job, mut rx: UnboundedReceiver<Note>) -> Result<(Vec<Choice>, Usage), ApiError> {
    let mut tracker = Tracker::new(st, job);
    let mut choices: Vec<Choice> = (0..job.choices()).map(|_| Choice::default()).collect();
    while !tracker.all_done() {
        let note = rx.recv().await.ok_or_else(|| ApiError::Internal("the engine dropped a sequence before it finished".into()))?;
        tracker.observe(&note);
        let c = &mut choices[note.index];
        match note.event {
            ChoiceEvent::Prompt(lps) => {
                if job.echo_logprobs() {
                    c.prompt_logprobs.extend(lps);
                }
            }
            ChoiceEvent::Engine(Event::Delta { text, logprobs, .. }) => {
                c.text.push_str(&text);
                if job.logprobs.is_some() {
                    c.logprobs.extend(token_logprobs(st.engine.tokenizer(), &logprobs, job.tokens_as_ids));
                }
            }
            ChoiceEvent::Engine(Event::Done { finish, .. }) => c.finish = finish_reason(finish),
            ChoiceEvent::Engine(Event::Error { message }) => return Err(ApiError::Internal(format!("generation failed: {message}"))),
        }
    }
    Ok((choices, tracker.usage()))
}
