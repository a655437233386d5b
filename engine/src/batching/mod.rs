//! Serving many sequences at once: continuous batching over a paged KV cache.
//!
//! An [`Engine`] runs on its own thread and owns a [`Session`](crate::Session) whose KV cache is a
//! pool of fixed-size blocks ([`pool::BlockPool`]). Each sequence has a block table; every step
//! the [`scheduler`] builds one batched forward over the tokens of all running sequences — one
//! decode token for each sequence that is generating, and a bounded chunk of prompt for sequences
//! still in prefill, so that long prompts never starve running decodes — samples one token per
//! sequence that reached the end of its prompt, and sends each sequence's new text to its sink.
//! Requests join and leave the batch at every step; a sequence's blocks return to the pool the
//! moment it ends or its sink reports that the client has gone.
//!
//! Full blocks of prompt are kept after their sequence ends, keyed by their tokens and the cached
//! block before them (compared whole, not by a hash), so a prompt sharing a prefix with an
//! earlier one (a system prompt, a chat's history) starts after it (`pool.rs`).
//!
//! The engine does no network I/O: a server (`forge serve`) turns HTTP requests into
//! [`Request`]s and [`Event`]s into responses. Admission reserves a sequence's blocks for its
//! whole prompt plus `max_tokens` up front, so a running sequence never waits for memory and
//! nothing is ever preempted; requests that do not fit yet wait in a bounded queue.

pub mod pool;
mod scheduler;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::constrain::Grammar;
use crate::error::{ForgeError, Result};
use crate::generate::FinishReason;
use crate::model::Model;
use crate::sampler::SamplerConfig;
use crate::session::Session;
use crate::tokenizer::Tokenizer;

pub use scheduler::{MAX_TOP_LOGPROBS, Scheduler, pool_tokens};

/// Sizes of the engine, fixed when it starts.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Sequences that may run in one batch.
    pub max_seqs: usize,
    /// Positions one sequence may use (prompt + generated).
    pub ctx: usize,
    /// Requests waiting to be admitted (for a batch slot or KV blocks); more are refused
    /// (`QueueFull`), so a burst costs bounded memory.
    pub max_queue: usize,
    /// Prompt tokens processed per step across all sequences in prefill.
    pub prefill_chunk: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_seqs: 16, ctx: 2048, max_queue: 64, prefill_chunk: 256 }
    }
}

/// One completion to run.
#[derive(Clone)]
pub struct Request {
    /// Prompt token ids (already templated and tokenized), at least one.
    pub prompt: Vec<u32>,
    /// Tokens to generate at most (at least 1, or 0 for a request that only scores its prompt;
    /// prompt + max_tokens must fit `ctx`).
    pub max_tokens: usize,
    pub sampling: SamplerConfig,
    /// Generation ends when the text contains one of these; the stop string is not returned.
    pub stop: Vec<String>,
    /// Report each sampled token's log-probability and, when `Some(k)`, the `k` most likely
    /// alternatives (`None`: no log-probabilities).
    pub logprobs: Option<usize>,
    /// Structured output: the text must match this grammar.
    pub grammar: Option<Arc<Grammar>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("prompt_len", &self.prompt.len()).field("max_tokens", &self.max_tokens).field("sampling", &self.sampling).finish_non_exhaustive()
    }
}

/// One sampled token's log-probability under the model (after penalties and the grammar's mask,
/// before temperature and truncation — OpenAI's convention), with the most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    /// `(id, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values came from the prefix cache (OpenAI's
    /// `prompt_tokens_details.cached_tokens`).
    pub cached_prompt_tokens: usize,
}

/// What a sequence's sink receives, in order: any number of `Delta`s, then one `Done` or `Error`.
#[derive(Clone, Debug)]
pub enum Event {
    /// Tokens sampled in one step and the text they completed. `text` may be empty while a
    /// multi-byte character or a possible stop string is still pending.
    Delta { text: String, tokens: Vec<u32>, logprobs: Vec<TokenLogprob> },
    /// The sequence ended; its KV blocks are already back in the pool.
    Done { finish: FinishReason, usage: Usage },
    /// The sequence failed (a device error, an inconsistent grammar); other sequences go on.
    Error { message: String },
}

/// Called with each event of one sequence; returns `false` when nobody listens any more (the
/// client disconnected), which cancels the sequence and frees its blocks.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// Scoring a request's prompt (the completions API's `echo` with `logprobs`, which evaluation
/// harnesses use for log-likelihoods): each prompt token's log-probability given the tokens
/// before it, under the model alone (no penalties, no grammar). The first token has none.
///
/// Such a prompt is computed whole, never taken from the prefix cache, since every position's
/// logits are read out.
pub struct PromptScoring {
    /// Alternatives reported per position (at most [`MAX_TOP_LOGPROBS`]).
    pub top: usize,
    /// Receives prompt tokens 1.. in order, in one call per prefill chunk, all before the
    /// sequence's first [`Event`]; returns `false` to cancel, as a [`Sink`] does.
    pub sink: Box<dyn FnMut(Vec<TokenLogprob>) -> bool + Send>,
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is busy: {queued} requests are already waiting; retry later")]
    QueueFull { queued: usize },
    #[error("{0}")]
    Invalid(ForgeError),
    #[error("the engine has stopped: {0}")]
    Stopped(String),
}

/// Counters and gauges for `/metrics` and `/health`.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub running: usize,
    pub queued: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_total: usize,
    pub block_size: usize,
    /// Batched forward passes run so far.
    pub steps: u64,
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache instead of computed.
    pub cached_prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Set once the engine thread has died (a bug or an unrecoverable device failure).
    pub failed: Option<String>,
}

enum Command {
    Submit(Box<Request>, Option<PromptScoring>, Sink),
}

/// A running engine: cheap to clone, shared by the server's handlers.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::SyncSender<Command>,
    shared: Arc<Shared>,
}

struct Shared {
    stats: std::sync::Mutex<EngineStats>,
    /// Requests submitted and not yet admitted: counted by `submit` (so a burst sees the bound
    /// before the engine thread catches up), uncounted by the engine on admission.
    queued: AtomicUsize,
    tokenizer: Arc<Tokenizer>,
    config: EngineConfig,
    model_name: String,
    backend: String,
}

impl Engine {
    /// Starts the engine thread over `session` (whose KV cache becomes the block pool).
    /// The model's tokenizer moves into the engine; its weights are no longer needed (the
    /// session holds them on its backend).
    pub fn start(model: Model, session: Session, config: EngineConfig) -> Result<Engine> {
        // The file's (or directory's) stem: what a user passes as `--model` and recognises.
        let model_name = model.source.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let tokenizer = Arc::new(model.tokenizer);
        let sched = Scheduler::new(session, tokenizer.clone(), config.clone())?;
        let shared = Arc::new(Shared { stats: std::sync::Mutex::new(sched.stats()), queued: AtomicUsize::new(0), tokenizer, config: config.clone(), model_name, backend: sched.backend_label() });
        // Submissions beyond the queue bound are refused by `submit`, so this channel stays small.
        let (tx, rx) = mpsc::sync_channel(config.max_queue.max(1) + config.max_seqs);
        let sh = shared.clone();
        std::thread::Builder::new().name("forge-engine".into()).spawn(move || scheduler::run(sched, rx, sh)).map_err(|e| ForgeError::Backend { backend: "engine".into(), what: format!("cannot start the engine thread: {e}") })?;
        Ok(Engine { tx, shared })
    }

    /// Queues a request. Validation (empty prompt, context overflow, ids outside the vocabulary)
    /// happens here, so a bad request never reaches the batch.
    pub fn submit(&self, req: Request, sink: Sink) -> std::result::Result<(), SubmitError> {
        self.submit_scored(req, None, sink)
    }

    /// [`Engine::submit`], with the prompt's log-probabilities reported when `scoring` is given
    /// (then `max_tokens` may be 0: the prompt is only scored).
    pub fn submit_scored(&self, req: Request, scoring: Option<PromptScoring>, sink: Sink) -> std::result::Result<(), SubmitError> {
        scheduler::validate(&req, scoring.as_ref().map(|s| s.top), &self.shared.config, self.shared.tokenizer.vocab_size()).map_err(SubmitError::Invalid)?;
        if let Some(why) = self.stats().failed {
            return Err(SubmitError::Stopped(why));
        }
        let max = self.shared.config.max_queue;
        if self.shared.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| (q < max).then_some(q + 1)).is_err() {
            return Err(SubmitError::QueueFull { queued: max });
        }
        self.tx.try_send(Command::Submit(Box::new(req), scoring, sink)).map_err(|e| {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            match e {
                mpsc::TrySendError::Full(_) => SubmitError::QueueFull { queued: max },
                mpsc::TrySendError::Disconnected(_) => SubmitError::Stopped(self.stats().failed.unwrap_or_else(|| "the engine thread has exited".into())),
            }
        })
    }

    pub fn stats(&self) -> EngineStats {
        let mut st = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        st.queued = self.shared.queued.load(Ordering::SeqCst);
        st
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.shared.tokenizer
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The model's id as `/v1/models` lists it: the file's stem (`SmolLM2-135M-Instruct.Q4_1`).
    pub fn model_name(&self) -> &str {
        &self.shared.model_name
    }

    /// `backend (device)`, for logs and `/health`.
    pub fn backend(&self) -> &str {
        &self.shared.backend
    }
}
