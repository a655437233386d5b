//! A model placed on a backend: weights uploaded once, a KV cache sized for the context, and a
//! forward pass that advances through a sequence — or, for a batch engine, one batched forward
//! over many sequences sharing the cache as a pool of blocks.
//!
//! **Architecture Invariant:** the session owns the KV cache (as backend state params); the model
//! code only receives the names of the params to write into. Graphs are built once per
//! batch shape (`BatchShape`: token count, table width, rows read out) and reused, so a backend can
//! cache its plan for them.

use std::collections::HashMap;

use crate::dtype::DType;
use crate::backend::{Backend, ParamDesc, ParamKind, ParamTable};
use crate::error::{ForgeError, Result};
use crate::graph::Graph;
use crate::model::{Model, ModelConfig};
use crate::models::{self, BatchShape, KvParams};
use crate::tensor::HostTensor;

/// What a forward pass returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Forward {
    /// The greedy next token ([`Readout::ArgmaxLast`]).
    Token(u32),
    /// Logits, `rows × n_vocab`, row-major.
    Logits { rows: usize, values: Vec<f32> },
}

/// What a batched forward pass returned: one entry per read-out row.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOut {
    /// Greedy ids.
    Ids(Vec<u32>),
    /// Logits, `rows × n_vocab`, row-major.
    Logits { rows: usize, values: Vec<f32> },
}

/// What a forward pass hands back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Readout {
    /// The id of the most likely next token after the last input token (greedy decoding).
    ArgmaxLast,
    /// Logits of the last token: `[1, n_vocab]`.
    LogitsLast,
    /// Logits of every token: `[T, n_vocab]` (perplexity, scoring).
    LogitsAll,
    /// Logits of the tokens from this index of the input on: `[T - i, n_vocab]` (scoring a
    /// continuation after its prompt without the prompt's rows).
    LogitsFrom(usize),
}

/// One batched forward pass over tokens of any number of sequences (see `models::BatchShape`).
#[derive(Clone, Debug, Default)]
pub struct BatchInput {
    pub tokens: Vec<u32>,
    /// Each token's position in its sequence.
    pub positions: Vec<u32>,
    /// The cache row each token's key and value are written to.
    pub slots: Vec<u32>,
    /// Each token's sequence's block table, `table_cols` entries per token.
    pub table: Vec<u32>,
    pub table_cols: usize,
    /// Rows (token indices) whose next-token prediction is wanted.
    pub out_rows: Vec<u32>,
    /// Return ids (greedy) rather than logits.
    pub argmax: bool,
}

/// What the KV cache keeps keys and values in (`--kv-type`). f16 is the default, as in
/// llama.cpp: half the memory of f32, and the precision llama.cpp's outputs are computed at;
/// q8_0 (ggml's 8-bit blocks of 32, 34 bytes each) takes a little over a quarter. Products and
/// sums are f32 whatever the type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    F32,
    #[default]
    F16,
    Q8_0,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

    pub fn dtype(self) -> DType {
        match self {
            KvType::F32 => DType::F32,
            KvType::F16 => DType::F16,
            KvType::Q8_0 => DType::Q8_0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes one cache row of `kv_dim` values takes (K or V of one position in one layer).
    pub fn row_bytes(self, kv_dim: usize) -> u64 {
        let d = self.dtype();
        (kv_dim.div_ceil(d.block_len()) * d.block_bytes()) as u64
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = ForgeError;

    fn from_str(s: &str) -> Result<KvType> {
        KvType::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ForgeError::InvalidArgument { what: format!("KV cache type {s:?}: expected one of f32, f16, q8_0") })
    }
}

/// Rows in a KV-cache block: small enough that a sequence wastes little of its last block, large
/// enough that block tables stay short (vLLM's default).
pub const BLOCK_SIZE: usize = 16;

/// Graph shapes kept built; a server sees many batch sizes.
const MAX_GRAPHS: usize = 64;

pub struct Session {
    backend: Box<dyn Backend>,
    config: ModelConfig,
    params: ParamTable,
    kv: KvParams,
    kv_type: KvType,
    ctx: usize,
    n_blocks: usize,
    n_past: usize,
    /// The tokens whose keys and values sit at single-sequence positions `0..cached.len()` of
    /// the cache (`forward` writes position p to row p), so that a later prompt sharing a prefix
    /// with them need not compute it again ([`Session::reuse_prefix`]). May run past `n_past`
    /// after `reset` or `rewind`: those rows stay valid until a forward pass overwrites them.
    cached: Vec<u32>,
    graphs: HashMap<BatchShape, Graph>,
}

impl Session {
    /// Uploads the model's weights to `backend` and creates a KV cache of `ctx` positions (whole
    /// blocks of [`BLOCK_SIZE`]; a batch engine shares them out among sequences).
    /// `progress(done_bytes, total_bytes)` is called as weights are uploaded. The cache is f16
    /// ([`KvType`]'s default); [`with_kv_type`](Self::with_kv_type) chooses.
    pub fn new(model: &Model, backend: Box<dyn Backend>, ctx: usize, progress: &mut dyn FnMut(u64, u64)) -> Result<Session> {
        Self::with_kv_type(model, backend, ctx, KvType::default(), progress)
    }

    /// [`new`](Self::new) with the KV cache kept in `kv_type`. A backend without kernels for it
    /// refuses at the first pass (`ForgeError::Unsupported`), which `devices::open_session` treats
    /// as a device failure.
    pub fn with_kv_type(model: &Model, mut backend: Box<dyn Backend>, ctx: usize, kv_type: KvType, progress: &mut dyn FnMut(u64, u64)) -> Result<Session> {
        if ctx == 0 {
            return Err(ForgeError::InvalidArgument { what: "context length must be at least 1".into() });
        }
        let block = kv_type.dtype().block_len();
        if !model.config.head_dim.is_multiple_of(block) {
            return Err(ForgeError::InvalidArgument {
                what: format!("a {kv_type} KV cache needs heads of whole {block}-value blocks, and this model's heads have {} values; use --kv-type f16", model.config.head_dim),
            });
        }
        let mut params = ParamTable::default();
        let total = model.weight_bytes() as u64;
        let mut done = 0u64;
        for (name, t) in &model.weights {
            let desc = ParamDesc { name: name.clone(), shape: t.shape.clone(), dtype: t.dtype, kind: ParamKind::Weight };
            let id = backend.create_param(&desc, Some(t))?;
            params.insert(id, desc);
            done += t.as_bytes().len() as u64;
            progress(done, total);
        }
        let n_blocks = ctx.div_ceil(BLOCK_SIZE);
        let (kv, shapes) = models::kv_shapes(&model.config, n_blocks, BLOCK_SIZE, kv_type.dtype());
        for (name, shape, dtype) in shapes {
            let desc = ParamDesc { name, shape, dtype, kind: ParamKind::State };
            let id = backend.create_param(&desc, None)?;
            params.insert(id, desc);
        }
        Ok(Session { backend, config: model.config.clone(), params, kv, kv_type, ctx, n_blocks, n_past: 0, cached: Vec::new(), graphs: HashMap::new() })
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn device(&self) -> String {
        self.backend.device()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// What the KV cache keeps keys and values in.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Positions the KV cache holds.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Blocks of [`BLOCK_SIZE`] rows in the KV cache.
    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Tokens already processed in the current sequence.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Starts a new sequence (the cache rows are simply overwritten).
    pub fn reset(&mut self) {
        self.n_past = 0;
    }

    /// Goes back to position `n` (at most `n_past`): the next pass continues the sequence from
    /// there, as if the tokens after `n` had never been fed.
    pub fn rewind(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Starts a new sequence whose first tokens are `prompt`, keeping the longest prefix of it
    /// that the cache already holds from the previous sequence (a chat's earlier turns, the same
    /// system prompt), and returns that prefix's length: the caller feeds `prompt[len..]`. At
    /// least the prompt's last token is left to feed, since its pass gives the next token.
    pub fn reuse_prefix(&mut self, prompt: &[u32]) -> usize {
        let same = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        self.n_past = same.min(prompt.len().saturating_sub(1));
        self.n_past
    }

    /// Runs `tokens` at positions `n_past..n_past + len` and advances.
    pub fn forward(&mut self, tokens: &[u32], readout: Readout) -> Result<Forward> {
        let batch = self.single(tokens, readout)?;
        // Rows from n_past on are about to be overwritten, whether or not the pass succeeds.
        self.cached.truncate(self.n_past);
        let (key, inputs) = self.prepare(&batch)?;
        let out = Self::read_out(&batch, self.backend.execute(&self.graphs[&key], &inputs)?)?;
        self.finish(tokens, out)
    }

    /// [`Session::forward`] without blocking (for the browser).
    pub async fn forward_async(&mut self, tokens: &[u32], readout: Readout) -> Result<Forward> {
        let batch = self.single(tokens, readout)?;
        self.cached.truncate(self.n_past);
        let (key, inputs) = self.prepare(&batch)?;
        let out = Self::read_out(&batch, self.backend.execute_async(&self.graphs[&key], &inputs).await?)?;
        self.finish(tokens, out)
    }

    /// One sequence is a batch whose block table is the whole cache in order.
    fn single(&self, tokens: &[u32], readout: Readout) -> Result<BatchInput> {
        let t = tokens.len();
        if t == 0 {
            return Err(ForgeError::InvalidArgument { what: "forward needs at least one token".into() });
        }
        if self.n_past + t > self.ctx {
            return Err(ForgeError::ContextOverflow { need: self.n_past + t, ctx: self.ctx });
        }
        let positions: Vec<u32> = (self.n_past..self.n_past + t).map(|p| p as u32).collect();
        let table: Vec<u32> = (0..self.n_blocks as u32).collect();
        Ok(BatchInput {
            tokens: tokens.to_vec(),
            slots: positions.clone(),
            positions,
            table: table.repeat(t),
            table_cols: self.n_blocks,
            out_rows: match readout {
                Readout::LogitsAll => Vec::new(),
                Readout::LogitsFrom(i) if i < t => (i as u32..t as u32).collect(),
                Readout::LogitsFrom(i) => return Err(ForgeError::InvalidArgument { what: format!("logits from token {i} of a pass of {t}") }),
                Readout::LogitsLast | Readout::ArgmaxLast => vec![t as u32 - 1],
            },
            argmax: readout == Readout::ArgmaxLast,
        })
    }

    fn finish(&mut self, tokens: &[u32], out: BatchOut) -> Result<Forward> {
        self.n_past += tokens.len();
        self.cached.extend_from_slice(tokens);
        Ok(match out {
            BatchOut::Ids(ids) => Forward::Token(ids[0]),
            BatchOut::Logits { rows, values } => Forward::Logits { rows, values },
        })
    }

    /// Runs one batched forward pass over tokens of several sequences (an empty `out_rows`
    /// reads out every row). Does not touch the single-sequence position (`n_past`), but may
    /// overwrite any row, so no prefix is reused after it.
    pub fn forward_batch(&mut self, batch: &BatchInput) -> Result<BatchOut> {
        self.cached.clear();
        let (key, inputs) = self.prepare(batch)?;
        let out = self.backend.execute(&self.graphs[&key], &inputs)?;
        Self::read_out(batch, out)
    }

    /// [`Session::forward_batch`] without blocking.
    pub async fn forward_batch_async(&mut self, batch: &BatchInput) -> Result<BatchOut> {
        self.cached.clear();
        let (key, inputs) = self.prepare(batch)?;
        let out = self.backend.execute_async(&self.graphs[&key], &inputs).await?;
        Self::read_out(batch, out)
    }

    /// Checks every index the batch hands the device (a bad one would read or write outside the
    /// cache), builds the graph for its shape once, and makes the inputs.
    fn prepare(&mut self, b: &BatchInput) -> Result<(BatchShape, Vec<HostTensor>)> {
        let t = b.tokens.len();
        let bad = |what: String| Err(ForgeError::InvalidArgument { what });
        if t == 0 {
            return bad("forward needs at least one token".into());
        }
        if b.positions.len() != t || b.slots.len() != t || b.table_cols == 0 || b.table.len() != t * b.table_cols {
            return bad(format!("batch of {t} tokens with {} positions, {} slots, {} table entries of {} columns", b.positions.len(), b.slots.len(), b.table.len(), b.table_cols));
        }
        if let Some(&id) = b.tokens.iter().find(|&&id| id as usize >= self.config.n_vocab) {
            return bad(format!("token id {id} is outside the vocabulary of {}", self.config.n_vocab));
        }
        let rows = self.n_blocks * BLOCK_SIZE;
        if let Some(&s) = b.slots.iter().find(|&&s| s as usize >= rows) {
            return bad(format!("cache row {s} is outside the {rows} rows of the KV cache"));
        }
        if let Some(&blk) = b.table.iter().find(|&&blk| blk as usize >= self.n_blocks) {
            return bad(format!("block {blk} is outside the {} blocks of the KV cache", self.n_blocks));
        }
        if let Some(&p) = b.positions.iter().find(|&&p| p as usize >= b.table_cols * BLOCK_SIZE) {
            return bad(format!("position {p} is past the {} blocks of its table", b.table_cols));
        }
        if let Some(&r) = b.out_rows.iter().find(|&&r| r as usize >= t) {
            return bad(format!("read-out row {r} of a batch of {t}"));
        }
        let key = BatchShape { n_tokens: t, table_cols: b.table_cols, out_rows: (!b.out_rows.is_empty()).then_some(b.out_rows.len()), argmax: b.argmax };
        if !self.graphs.contains_key(&key) {
            if self.graphs.len() >= MAX_GRAPHS {
                self.graphs.clear();
            }
            let g = models::forward(&self.config, &self.params, &self.kv, key)?;
            self.graphs.insert(key, g);
        }
        let mut inputs = vec![
            HostTensor::from_u32(vec![t], &b.tokens)?,
            HostTensor::from_u32(vec![t], &b.positions)?,
            HostTensor::from_u32(vec![t], &b.slots)?,
            HostTensor::from_u32(vec![t, b.table_cols], &b.table)?,
        ];
        if !b.out_rows.is_empty() {
            inputs.push(HostTensor::from_u32(vec![b.out_rows.len()], &b.out_rows)?);
        }
        Ok((key, inputs))
    }

    fn read_out(b: &BatchInput, out: Vec<HostTensor>) -> Result<BatchOut> {
        let out = out.into_iter().next().ok_or_else(|| ForgeError::Graph { what: "forward graph returned nothing".into() })?;
        Ok(if b.argmax { BatchOut::Ids(out.to_u32_vec()) } else { BatchOut::Logits { rows: out.shape[0], values: out.to_f32_vec() } })
    }
}
