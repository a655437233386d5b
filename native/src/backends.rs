//! Which backends this build has, and opening one for a ranked device.
//!
//! Ranking, settings and fallback live in `forge_engine::devices`; this file is the one place
//! the binary names backend types.

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::devices::{BackendKind, Candidate};
use forge_engine::{ForgeError, Result};

/// Backends this binary can open; the others are listed by `forge devices` as not built.
pub const BUILT: &[BackendKind] = &[BackendKind::Cpu];

/// Opens the backend for `c`. Used as the opener of `forge_engine::devices::open_session`.
pub fn open(c: &Candidate) -> Result<Box<dyn Backend>> {
    match c.backend {
        BackendKind::Cpu => Ok(Box::new(CpuBackend::try_new()?)),
        BackendKind::Wgpu | BackendKind::Cuda => {
            Err(ForgeError::Backend { backend: c.backend.name().into(), what: "this backend is not part of this build yet; use --backend cpu".into() })
        }
    }
}
