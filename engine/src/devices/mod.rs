//! What this machine can run a model on, which of those to use, and what to do when it fails.
//!
//! ```text
//! probe()  ──►  rank(probe, opts)  ──►  plan(candidates, settings)  ──►  open_session(model, plan, …)
//! hardware       pure: ordered            pure: chosen first,            fit check, open, upload,
//! (CPU, wgpu,    candidates with          then usable fallbacks          warm up; on a device failure
//!  CUDA driver)  reasons                                                 the next one, with an event
//! ```
//!
//! Settings come from flags > environment > config file ([`config`]); fault injection
//! ([`fault`]) makes any backend fail at any stage so the fallback path runs on any machine.
//!
//! **Architecture Invariant:** only [`probe`] touches hardware and only the binary reads the
//! process environment; everything between is a pure function of its arguments.

pub mod bench;
pub mod check;
pub mod config;
pub mod fit;
pub mod open;
mod plain_forward;
pub mod probe_cpu;
pub mod probe_wgpu;
pub mod rank;
pub mod select;

#[cfg(test)]
mod tests;

/// Moved to the backends, which check them; re-exported where callers have always found them.
pub use crate::backend::{fault, probe_cuda};
pub use config::{BackendChoice, DeviceChoice, Env, Flags, Settings};
pub use fault::FaultPlan;
pub use open::{FallbackEvent, OpenOptions, Opened, fallback_line, open_session};
pub use rank::{BackendKind, Candidate, RankOptions, rank};
pub use select::plan;

use crate::error::{ForgeError, Result};

/// Everything found on this machine.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Probe {
    pub cpu: probe_cpu::CpuInfo,
    pub wgpu: Vec<probe_wgpu::WgpuAdapter>,
    /// Why adapters could not be enumerated at all.
    pub wgpu_error: Option<String>,
    pub cuda: probe_cuda::CudaProbe,
}

/// Probes the CPU, every wgpu adapter and the CUDA driver. Never panics on missing drivers.
pub fn probe() -> Probe {
    let (wgpu, wgpu_error) = match probe_wgpu::probe() {
        Ok(a) => (a, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Probe { cpu: probe_cpu::probe(), wgpu, wgpu_error, cuda: probe_cuda::probe() }
}

/// Sizes the CPU backend's thread pool (`[cpu] threads`). Only the first call in a process can
/// take effect: the pool is global and built on first use.
pub fn set_cpu_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| ForgeError::Backend { backend: "cpu".into(), what: format!("cannot use {threads} threads: {e}") })
}
