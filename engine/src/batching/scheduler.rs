//! The engine loop: admit requests while blocks and batch slots allow, run one batched forward
//! per step over every running sequence, sample, stream, retire.
//!
//! A step's batch holds, in order: one token for each sequence that is decoding (its last sampled
//! token), then prompt tokens of sequences still in prefill, oldest first, up to `prefill_chunk`
//! of them in all. A long prompt therefore takes several steps, and the decodes in the same
//! batch advance at every one of them (chunked prefill, as in Sarathi/vLLM).
//!
//! A sequence whose prompt is scored ([`PromptScoring`]) reads out every prompt row, not just the
//! last: row `i` gives prompt token `i + 1`'s log-probability.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, PoisonError};

use super::pool::{BlockPool, PROMPT_START, PrefixId, SCRATCH_BLOCK};
use super::{Command, EngineConfig, EngineStats, Event, PromptScoring, Request, Shared, Sink, TokenLogprob, Usage};
use crate::constrain::Matcher;
use crate::error::{ForgeError, Result};
use crate::generate::{FinishReason, StopFilter};
use crate::sampler::{Sampler, top_k};
use crate::session::{BLOCK_SIZE, BatchInput, BatchOut, Session};
use crate::tokenizer::{TokenStream, Tokenizer};

/// Most alternatives a request may ask log-probabilities for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Refuses what can never run: called before a request is queued. `scoring`: the alternatives
/// per prompt position, when the prompt is scored.
pub(super) fn validate(req: &Request, scoring: Option<usize>, cfg: &EngineConfig, n_vocab: usize) -> Result<()> {
    let bad = |what: String| Err(ForgeError::InvalidArgument { what });
    if req.prompt.is_empty() {
        return bad("the prompt is empty".into());
    }
    if req.max_tokens == 0 && scoring.is_none() {
        return bad("max_tokens must be at least 1 (0 only where the prompt is scored)".into());
    }
    let need = req.prompt.len().saturating_add(req.max_tokens);
    if need > cfg.ctx {
        return Err(ForgeError::ContextOverflow { need, ctx: cfg.ctx });
    }
    if let Some(&id) = req.prompt.iter().find(|&&id| id as usize >= n_vocab) {
        return bad(format!("token id {id} is outside the vocabulary of {n_vocab}"));
    }
    if req.logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) || scoring.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
        return bad(format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"));
    }
    Ok(())
}

/// The KV-cache size in tokens that lets `max_seqs` sequences of `ctx` positions all run at once
/// (plus the scratch block), so admission never has to preempt anyone.
pub fn pool_tokens(cfg: &EngineConfig) -> usize {
    (cfg.max_seqs * cfg.ctx.div_ceil(BLOCK_SIZE) + 1) * BLOCK_SIZE
}

struct Waiting {
    req: Request,
    scoring: Option<PromptScoring>,
    sink: Sink,
}

/// A running sequence.
struct Seq {
    req: Request,
    sink: Sink,
    scoring: Option<PromptScoring>,
    blocks: Vec<u32>,
    /// Prompt then generated ids.
    ids: Vec<u32>,
    /// Ids whose keys and values are in the cache.
    cached: usize,
    /// Prompt tokens that came from the prefix cache.
    reused: usize,
    /// Leading prompt blocks registered in the prefix cache (or taken from it), and the id of the
    /// prefix they end (`None`: the next one cannot be registered, so none after it is).
    registered: usize,
    chain: Option<PrefixId>,
    generated: Vec<u32>,
    sampler: Sampler,
    matcher: Option<Matcher>,
    stream: TokenStream<Arc<Tokenizer>>,
    stop: StopFilter,
    /// A stop string appeared: the text is final, nothing held back may follow it.
    cut: bool,
}

impl Seq {
    fn decoding(&self) -> bool {
        self.cached >= self.req.prompt.len()
    }
}

pub struct Scheduler {
    session: Session,
    tok: Arc<Tokenizer>,
    cfg: EngineConfig,
    pool: BlockPool,
    table_cols: usize,
    waiting: VecDeque<Waiting>,
    running: Vec<Seq>,
    stats: EngineStats,
}

/// What one sequence contributes to a step.
struct Part {
    seq: usize,
    tokens: usize,
    /// Its last token is read out (the prompt is complete after this step).
    read_out: bool,
}

impl Scheduler {
    pub fn new(session: Session, tok: Arc<Tokenizer>, cfg: EngineConfig) -> Result<Scheduler> {
        if cfg.max_seqs == 0 || cfg.ctx == 0 || cfg.prefill_chunk == 0 {
            return Err(ForgeError::InvalidArgument { what: format!("engine sizes must be at least 1: {cfg:?}") });
        }
        let table_cols = cfg.ctx.div_ceil(BLOCK_SIZE);
        let pool = BlockPool::new(session.n_blocks());
        if pool.usable() < table_cols {
            return Err(ForgeError::InvalidArgument {
                what: format!("the KV cache holds {} blocks of {BLOCK_SIZE} but one sequence of {} positions needs {table_cols}; open the session with pool_tokens()", pool.usable(), cfg.ctx),
            });
        }
        let stats = EngineStats { kv_blocks_total: pool.usable(), block_size: BLOCK_SIZE, ..EngineStats::default() };
        Ok(Scheduler { session, tok, cfg, pool, table_cols, waiting: VecDeque::new(), running: Vec::new(), stats })
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats { running: self.running.len(), queued: self.waiting.len(), kv_blocks_used: self.pool.in_use(), ..self.stats.clone() }
    }

    pub fn backend_label(&self) -> String {
        format!("{} ({})", self.session.backend_name(), self.session.device())
    }

    pub fn submit(&mut self, req: Request, scoring: Option<PromptScoring>, sink: Sink) {
        self.waiting.push_back(Waiting { req, scoring, sink });
    }

    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Moves waiting requests into the batch, first come first served: one that does not fit
    /// yet blocks those behind it, so a long request is never starved by short ones. A prompt
    /// whose leading blocks are cached starts after them.
    fn admit(&mut self) -> usize {
        let mut admitted = 0;
        while self.running.len() < self.cfg.max_seqs {
            let Some(w) = self.waiting.front() else { break };
            let prompt = &w.req.prompt;
            let need = (prompt.len() + w.req.max_tokens).div_ceil(BLOCK_SIZE);
            // Blocks wholly before the last prompt token may come from the cache; that token
            // always runs, since its logits give the first generated token. A scored prompt
            // needs every position's logits, so it takes nothing from the cache.
            let reusable = if w.scoring.is_some() { 0 } else { (prompt.len() - 1) / BLOCK_SIZE };
            let (mut blocks, mut chain) = (Vec::new(), PROMPT_START);
            for tokens in prompt.chunks_exact(BLOCK_SIZE).take(reusable) {
                let Some((b, id)) = self.pool.lookup(chain, tokens) else { break };
                blocks.push(b);
                chain = id;
            }
            let reused = blocks.len();
            match self.pool.alloc(need - reused) {
                Some(fresh) => blocks.extend(fresh),
                None => {
                    self.pool.release(blocks);
                    break;
                }
            }
            let w = self.waiting.pop_front().expect("front exists");
            admitted += 1;
            self.stats.cached_prompt_tokens += (reused * BLOCK_SIZE) as u64;
            let matcher = w.req.grammar.as_ref().map(|g| g.matcher());
            self.running.push(Seq {
                ids: w.req.prompt.clone(),
                sampler: Sampler::new(w.req.sampling.clone()),
                stream: TokenStream::new(self.tok.clone()),
                stop: StopFilter::new(&w.req.stop),
                cut: false,
                generated: Vec::new(),
                cached: reused * BLOCK_SIZE,
                reused: reused * BLOCK_SIZE,
                registered: reused,
                chain: Some(chain),
                matcher,
                blocks,
                sink: w.sink,
                scoring: w.scoring,
                req: w.req,
            });
        }
        admitted
    }

    /// Admits what fits and runs one batched forward pass; returns how many requests left the
    /// queue (for the submitter's count). A device error fails the sequences of this batch
    /// (their clients get an error) and is returned; the others go on at the next step.
    pub fn step(&mut self) -> (usize, Result<()>) {
        let admitted = self.admit();
        if self.running.is_empty() {
            return (admitted, Ok(()));
        }
        let parts = self.plan();
        let batch = self.batch(&parts);
        self.stats.steps += 1;
        self.stats.prompt_tokens += parts.iter().filter(|p| !self.running[p.seq].decoding()).map(|p| p.tokens as u64).sum::<u64>();
        let out = match self.session.forward_batch(&batch) {
            Ok(out) => out,
            Err(e) => {
                let failed: Vec<usize> = parts.iter().map(|p| p.seq).collect();
                self.fail(&failed, &e);
                return (admitted, Err(e));
            }
        };
        let mut row = 0;
        let mut done = Vec::new();
        for p in &parts {
            let s = &mut self.running[p.seq];
            let start = s.cached;
            s.cached += p.tokens;
            // Full prompt blocks are now in the cache: later prompts may share them.
            let full = s.req.prompt.len() / BLOCK_SIZE;
            while let Some(parent) = s.chain
                && s.registered < full.min(s.cached / BLOCK_SIZE)
            {
                let i = s.registered;
                s.chain = self.pool.register(s.blocks[i], parent, &s.req.prompt[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]);
                s.registered += 1;
            }
            // A scored prompt's rows come first: all of this chunk's but the read-out one.
            let mut alive = true;
            if let Some(sc) = &mut s.scoring
                && start < s.req.prompt.len()
            {
                let rows = p.tokens - usize::from(p.read_out);
                let lps = (0..rows).map(|k| logprob_of(logits_row(&out, row + k), s.req.prompt[start + k + 1], sc.top)).collect();
                row += rows;
                alive = (sc.sink)(lps);
            }
            if !alive {
                row += usize::from(p.read_out);
                done.push((p.seq, FinishReason::Stop));
                continue;
            }
            if !p.read_out {
                continue;
            }
            let r = row;
            row += 1;
            if s.req.max_tokens == 0 {
                done.push((p.seq, FinishReason::Length));
                continue;
            }
            if let Some(finish) = self.advance(p.seq, &out, r) {
                done.push((p.seq, finish));
            }
        }
        self.retire(done);
        (admitted, Ok(()))
    }

    /// Which tokens of which sequences go into this step.
    fn plan(&self) -> Vec<Part> {
        let mut parts: Vec<Part> = (0..self.running.len()).filter(|&i| self.running[i].decoding()).map(|seq| Part { seq, tokens: 1, read_out: true }).collect();
        let mut budget = self.cfg.prefill_chunk;
        for (seq, s) in self.running.iter().enumerate().filter(|(_, s)| !s.decoding()) {
            if budget == 0 {
                break;
            }
            let left = s.req.prompt.len() - s.cached;
            let tokens = left.min(budget);
            budget -= tokens;
            parts.push(Part { seq, tokens, read_out: tokens == left });
        }
        parts
    }

    /// The batch's inputs, padded to a bucketed size (so that a backend caches few plans) with
    /// tokens that write to the scratch block and are never read out.
    fn batch(&self, parts: &[Part]) -> BatchInput {
        let cols = self.table_cols;
        let mut b = BatchInput { table_cols: cols, argmax: true, ..BatchInput::default() };
        for p in parts {
            let s = &self.running[p.seq];
            let mut table = s.blocks.clone();
            table.resize(cols, SCRATCH_BLOCK);
            let scored = s.scoring.is_some() && !s.decoding();
            for pos in s.cached..s.cached + p.tokens {
                if scored {
                    b.out_rows.push(b.tokens.len() as u32);
                }
                b.tokens.push(s.ids[pos]);
                b.positions.push(pos as u32);
                b.slots.push(s.blocks[pos / BLOCK_SIZE] * BLOCK_SIZE as u32 + (pos % BLOCK_SIZE) as u32);
                b.table.extend_from_slice(&table);
            }
            if p.read_out && !scored {
                b.out_rows.push(b.tokens.len() as u32 - 1);
            }
            // Greedy ids suffice only where no read-out row needs its logits.
            if scored {
                b.argmax = false;
            } else if p.read_out {
                b.argmax &= s.req.sampling.is_greedy() && s.req.logprobs.is_none() && s.matcher.is_none();
            }
        }
        let t = b.tokens.len();
        let padded = if t <= 16 { t } else { t.next_multiple_of(32) };
        for _ in t..padded {
            b.tokens.push(0);
            b.positions.push(0);
            b.slots.push(SCRATCH_BLOCK * BLOCK_SIZE as u32);
            b.table.extend(std::iter::repeat_n(SCRATCH_BLOCK, cols));
        }
        b
    }

    /// Samples sequence `i`'s next token from read-out row `r`, streams it, and says whether the
    /// sequence has finished.
    fn advance(&mut self, i: usize, out: &BatchOut, r: usize) -> Option<FinishReason> {
        let s = &mut self.running[i];
        let (id, logprob) = match out {
            BatchOut::Ids(ids) => (ids[r], None),
            BatchOut::Logits { .. } => {
                let mut logits = logits_row(out, r).to_vec();
                s.sampler.penalize(&mut logits, &s.ids, &s.generated);
                if let Some(m) = &mut s.matcher {
                    m.mask(&mut logits);
                }
                let id = s.sampler.choose(&logits);
                (id, s.req.logprobs.map(|k| logprob_of(&logits, id, k)))
            }
        };
        self.stats.generated_tokens += 1;
        if self.tok.stop_ids().contains(&id) {
            return Some(FinishReason::Eos);
        }
        if let Some(m) = &mut s.matcher
            && let Err(e) = m.accept(id)
        {
            let message = format!("structured output: {e}");
            (s.sink)(Event::Error { message });
            return Some(FinishReason::Stop);
        }
        s.generated.push(id);
        s.ids.push(id);
        let piece = match s.stream.push(id) {
            Ok(p) => p,
            Err(e) => {
                (s.sink)(Event::Error { message: e.to_string() });
                return Some(FinishReason::Stop);
            }
        };
        let mut text = String::new();
        s.cut = s.stop.push(&piece, &mut |t| text.push_str(t));
        let alive = (s.sink)(Event::Delta { text, tokens: vec![id], logprobs: logprob.into_iter().collect() });
        if !alive {
            return Some(FinishReason::Stop);
        }
        if s.cut || s.matcher.as_ref().is_some_and(|m| m.is_finished()) {
            Some(FinishReason::Stop)
        } else if s.generated.len() >= s.req.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        }
    }

    /// Ends sequences (indices into `running`), flushing held-back text and freeing blocks.
    fn retire(&mut self, mut done: Vec<(usize, FinishReason)>) {
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (i, finish) in done {
            let mut s = self.running.swap_remove(i);
            if !s.cut {
                let mut text = String::new();
                if let Ok(tail) = s.stream.finish() {
                    s.stop.push(&tail, &mut |t| text.push_str(t));
                }
                s.stop.flush(&mut |t| text.push_str(t));
                if !text.is_empty() {
                    (s.sink)(Event::Delta { text, tokens: Vec::new(), logprobs: Vec::new() });
                }
            }
            let usage = Usage { prompt_tokens: s.req.prompt.len(), completion_tokens: s.generated.len(), cached_prompt_tokens: s.reused };
            (s.sink)(Event::Done { finish, usage });
            self.pool.release(std::mem::take(&mut s.blocks));
        }
    }

    /// Fails sequences (indices into `running`) with `e` and frees their blocks.
    fn fail(&mut self, seqs: &[usize], e: &ForgeError) {
        let mut seqs = seqs.to_vec();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        for i in seqs {
            let mut s = self.running.swap_remove(i);
            (s.sink)(Event::Error { message: e.to_string() });
            self.pool.release(std::mem::take(&mut s.blocks));
        }
    }
}

/// Read-out row `r` of a batch that returned logits.
fn logits_row(out: &BatchOut, r: usize) -> &[f32] {
    match out {
        BatchOut::Logits { values, rows } => {
            let n_vocab = values.len() / rows;
            &values[r * n_vocab..][..n_vocab]
        }
        BatchOut::Ids(_) => unreachable!("a batch with scored prompts or sampling reads out logits"),
    }
}

/// `id`'s log-probability under `logits` and the `k` most likely alternatives.
fn logprob_of(logits: &[f32], id: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max;
    let top = top_k(logits, k).into_iter().map(|(t, l)| (t, l - log_sum)).collect();
    TokenLogprob { id, logprob: logits[id as usize] - log_sum, top }
}

/// After this many failed steps in a row the engine gives up: the device is gone.
const MAX_FAILED_STEPS: usize = 3;

/// The engine thread: takes commands, steps while there is work, publishes stats.
pub(super) fn run(mut sched: Scheduler, rx: Receiver<Command>, shared: Arc<Shared>) {
    let mut failures = 0;
    let take = |sched: &mut Scheduler, cmd: Command| match cmd {
        Command::Submit(req, scoring, sink) => sched.submit(*req, scoring, sink),
    };
    loop {
        if !sched.has_work() {
            // Idle: sleep until a request arrives (or every Engine handle is dropped).
            match rx.recv() {
                Ok(cmd) => take(&mut sched, cmd),
                Err(_) => return,
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            take(&mut sched, cmd);
        }
        let (admitted, result) = sched.step();
        shared.queued.fetch_sub(admitted, Ordering::SeqCst);
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::error!("batched forward failed ({failures} in a row): {e}");
                if failures >= MAX_FAILED_STEPS {
                    let why = format!("the device failed {failures} times in a row: {e}");
                    let all: Vec<usize> = (0..sched.running.len()).collect();
                    sched.fail(&all, &e);
                    for w in sched.waiting.drain(..) {
                        let mut sink = w.sink;
                        sink(Event::Error { message: why.clone() });
                    }
                    let mut st = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
                    *st = EngineStats { failed: Some(why), ..sched.stats() };
                    return;
                }
            }
        }
        *shared.stats.lock().unwrap_or_else(PoisonError::into_inner) = sched.stats();
    }
}
