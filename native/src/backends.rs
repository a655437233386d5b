//! Which backends this build has, and opening one for a ranked device.
//!
//! Ranking, settings and fallback live in `forge_engine::devices`; this file is the one place
//! the binary names backend types.

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::devices::{BackendKind, Candidate};
use forge_engine::Result;

/// Backends this binary can open; the others are listed by `forge devices` as not built.
pub const BUILT: &[BackendKind] = &[BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

/// Opens the backend for `c`. Used as the opener of `forge_engine::devices::open_session`.
pub fn open(c: &Candidate) -> Result<Box<dyn Backend>> {
    match c.backend {
        BackendKind::Cpu => Ok(Box::new(CpuBackend::try_new()?)),
        // The ranked adapter, so that `--device` picks the GPU that is opened.
        BackendKind::Wgpu => Ok(Box::new(match &c.adapter {
            Some(a) => forge_engine::backend::wgpu::WgpuBackend::with_adapter(a.clone())?,
            None => forge_engine::backend::wgpu::WgpuBackend::new()?,
        })),
        BackendKind::Cuda => Ok(Box::new(forge_engine::backend::cuda::CudaBackend::new(c.cuda_ordinal.unwrap_or(0) as usize)?)),
    }
}
