//! A model placed on a backend: weights uploaded once, a KV cache sized for the context, and a
//! forward pass that advances through a sequence.
//!
//! **Architecture Invariant:** the session owns the KV cache (as backend state params); the model
//! code only receives the names of the params to write into. Graphs are built once per
//! (token count, readout) and reused, so a backend can cache its plan for them.

use std::collections::HashMap;

use crate::backend::{Backend, ParamDesc, ParamKind, ParamTable};
use crate::error::{ForgeError, Result};
use crate::graph::Graph;
use crate::model::{Model, ModelConfig};
use crate::models::llama::{self, KvParams, Readout};
use crate::tensor::HostTensor;

/// What a forward pass returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Forward {
    /// The greedy next token ([`Readout::ArgmaxLast`]).
    Token(u32),
    /// Logits, `rows × n_vocab`, row-major.
    Logits { rows: usize, values: Vec<f32> },
}

pub struct Session {
    backend: Box<dyn Backend>,
    config: ModelConfig,
    params: ParamTable,
    kv: KvParams,
    ctx: usize,
    n_past: usize,
    graphs: HashMap<(usize, Readout), Graph>,
}

impl Session {
    /// Uploads the model's weights to `backend` and creates a KV cache of `ctx` positions.
    /// `progress(done_bytes, total_bytes)` is called as weights are uploaded.
    pub fn new(model: &Model, mut backend: Box<dyn Backend>, ctx: usize, progress: &mut dyn FnMut(u64, u64)) -> Result<Session> {
        if ctx == 0 {
            return Err(ForgeError::InvalidArgument { what: "context length must be at least 1".into() });
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
        let (kv, shapes) = llama::kv_shapes(&model.config, ctx);
        for (name, shape, dtype) in shapes {
            let desc = ParamDesc { name, shape, dtype, kind: ParamKind::State };
            let id = backend.create_param(&desc, None)?;
            params.insert(id, desc);
        }
        Ok(Session { backend, config: model.config.clone(), params, kv, ctx, n_past: 0, graphs: HashMap::new() })
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

    /// Positions the KV cache holds.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Tokens already processed in the current sequence.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// Starts a new sequence (the cache rows are simply overwritten).
    pub fn reset(&mut self) {
        self.n_past = 0;
    }

    /// Runs `tokens` at positions `n_past..n_past + len` and advances.
    pub fn forward(&mut self, tokens: &[u32], readout: Readout) -> Result<Forward> {
        let inputs = self.prepare(tokens, readout)?;
        let out = self.backend.execute(&self.graphs[&(tokens.len(), readout)], &inputs)?;
        self.finish(tokens.len(), readout, out)
    }

    /// [`Session::forward`] without blocking (for the browser).
    pub async fn forward_async(&mut self, tokens: &[u32], readout: Readout) -> Result<Forward> {
        let inputs = self.prepare(tokens, readout)?;
        let out = self.backend.execute_async(&self.graphs[&(tokens.len(), readout)], &inputs).await?;
        self.finish(tokens.len(), readout, out)
    }

    /// Checks the request, builds (once) the graph for this shape, and makes the inputs.
    fn prepare(&mut self, tokens: &[u32], readout: Readout) -> Result<[HostTensor; 2]> {
        let t = tokens.len();
        if t == 0 {
            return Err(ForgeError::InvalidArgument { what: "forward needs at least one token".into() });
        }
        if self.n_past + t > self.ctx {
            return Err(ForgeError::ContextOverflow { need: self.n_past + t, ctx: self.ctx });
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.config.n_vocab) {
            return Err(ForgeError::InvalidArgument { what: format!("token id {bad} is outside the vocabulary of {}", self.config.n_vocab) });
        }
        if !self.graphs.contains_key(&(t, readout)) {
            let g = llama::forward(&self.config, &self.params, &self.kv, t, readout)?;
            self.graphs.insert((t, readout), g);
        }
        let positions: Vec<u32> = (self.n_past..self.n_past + t).map(|p| p as u32).collect();
        Ok([HostTensor::from_u32(vec![t], tokens)?, HostTensor::from_u32(vec![t], &positions)?])
    }

    fn finish(&mut self, t: usize, readout: Readout, out: Vec<HostTensor>) -> Result<Forward> {
        self.n_past += t;
        let out = out.into_iter().next().ok_or_else(|| ForgeError::Graph { what: "forward graph returned nothing".into() })?;
        Ok(match readout {
            Readout::ArgmaxLast => Forward::Token(out.to_u32_vec()[0]),
            _ => Forward::Logits { rows: out.shape[0], values: out.to_f32_vec() },
        })
    }
}
