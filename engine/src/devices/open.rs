//! Opening a session with fallback: try each planned candidate in turn — check the model fits,
//! open the backend, upload the weights, run one warm-up token — and on a device failure (start,
//! kernel compile, allocation, out of memory) move on to the next, recording why.
//!
//! The loop is here, not in the binary, so the CLI, the server and the benchmarks fall back the
//! same way; each prints the returned [`FallbackEvent`]s as it likes ([`fallback_line`]).

use crate::backend::fault::{self, FaultPlan, Stage};
use super::fit;
use super::rank::{BackendKind, Candidate};
use crate::backend::Backend;
use crate::error::{ForgeError, Result};
use crate::model::Model;
use crate::session::Readout;
use crate::session::{KvType, Session};

#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub ctx: usize,
    /// What the KV cache keeps keys and values in.
    pub kv_type: KvType,
    pub memory_fraction: f64,
    /// Fail instead of moving to the next candidate.
    pub no_fallback: bool,
    pub faults: FaultPlan,
    /// The machine's RAM, which integrated GPUs and software rasterisers share.
    pub host_memory: Option<u64>,
    /// Run one token through the new session (and reset it) so that kernel compilation and first
    /// execution failures happen here, where they can still fall back.
    pub warmup: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The candidate was chosen but is not usable (no driver, backend not built).
    Unusable,
    /// The memory estimate says the model does not fit.
    DoesNotFit,
    /// The backend failed to start, compile, or allocate.
    Failed,
    OutOfMemory,
}

/// One candidate that was tried and given up on.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FallbackEvent {
    pub backend: BackendKind,
    pub device: String,
    pub failure: Failure,
    pub reason: String,
}

impl FallbackEvent {
    /// `wgpu (llvmpipe (Vulkan)) failed to start: <reason>`.
    pub fn describe(&self) -> String {
        let what = match self.failure {
            Failure::Unusable => "is not usable",
            Failure::DoesNotFit => "cannot hold the model",
            Failure::Failed => "failed to start",
            Failure::OutOfMemory => "ran out of memory",
        };
        format!("{} ({}) {what}: {}", self.backend.name(), self.device, self.reason)
    }
}

/// The one line to tell the user: what failed and what is used instead.
pub fn fallback_line(events: &[FallbackEvent], used: &Candidate) -> String {
    let failed: Vec<String> = events.iter().map(FallbackEvent::describe).collect();
    format!("{}; using {} ({}) instead", failed.join("; "), used.backend.name(), used.label)
}

pub struct Opened {
    pub session: Session,
    pub candidate: Candidate,
    /// The candidates given up on before this one, in order.
    pub events: Vec<FallbackEvent>,
}

/// Opens a backend for a candidate; the binary supplies it, since it knows which backends it has.
pub type Opener<'a> = dyn FnMut(&Candidate) -> Result<Box<dyn Backend>> + 'a;

/// Errors that belong to the device, not the model: another device may well succeed.
pub fn is_device_failure(e: &ForgeError) -> bool {
    matches!(e, ForgeError::Backend { .. } | ForgeError::OutOfMemory { .. } | ForgeError::Unsupported { .. })
}

fn attempt(model: &Model, c: &Candidate, opts: &OpenOptions, open: &mut Opener<'_>, progress: &mut dyn FnMut(&Candidate, u64, u64)) -> Result<Session> {
    opts.faults.scope(|| {
        fault::check(c.backend.name(), Stage::Init)?;
        let backend = open(c)?;
        let mut session = Session::with_kv_type(model, backend, opts.ctx, opts.kv_type, &mut |done, total| progress(c, done, total))?;
        if opts.warmup {
            session.forward(&[0], Readout::ArgmaxLast)?;
            session.reset();
        }
        Ok(session)
    })
}

/// Tries `order` (from [`plan`](super::plan)) until a candidate holds the model.
pub fn open_session(model: &Model, order: &[Candidate], opts: &OpenOptions, open: &mut Opener<'_>, progress: &mut dyn FnMut(&Candidate, u64, u64)) -> Result<Opened> {
    let est = fit::estimate(&model.config, model.weight_bytes() as u64, fit::largest_row(model), opts.ctx, opts.kv_type);
    let mut events = Vec::new();
    for c in order {
        let (failure, reason, err) = if !c.usable {
            (Failure::Unusable, c.reason.clone().unwrap_or_default(), None)
        } else if let Err(why) = fit::check(&est, c, opts.memory_fraction, opts.host_memory) {
            (Failure::DoesNotFit, why, None)
        } else {
            match attempt(model, c, opts, open, progress) {
                Ok(session) => return Ok(Opened { session, candidate: c.clone(), events }),
                Err(e) if !is_device_failure(&e) => return Err(e),
                Err(e) => (if matches!(e, ForgeError::OutOfMemory { .. }) { Failure::OutOfMemory } else { Failure::Failed }, e.to_string(), Some(e)),
            }
        };
        let event = FallbackEvent { backend: c.backend, device: c.label.clone(), failure, reason };
        if opts.no_fallback {
            return Err(match err {
                Some(ForgeError::OutOfMemory { backend, need, have }) => ForgeError::OutOfMemory { backend, need, have },
                _ => ForgeError::Backend { backend: c.backend.name().into(), what: format!("{} (fallback is disabled)", event.describe()) },
            });
        }
        events.push(event);
    }
    let tried: Vec<String> = events.iter().map(FallbackEvent::describe).collect();
    Err(ForgeError::Backend { backend: "any".into(), what: format!("no device could run the model: {}", tried.join("; ")) })
}
