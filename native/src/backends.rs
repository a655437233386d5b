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

/// Opens a session on the first candidate of `order` that can run `model`, with a progress bar
/// while weights upload and one line on stderr naming any device that was passed over.
pub fn open_with_progress(model: &forge_engine::Model, order: &[Candidate], opts: &forge_engine::devices::OpenOptions) -> Result<forge_engine::devices::Opened> {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new(model.weight_bytes() as u64)
        .with_style(ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}").expect("valid template").progress_chars("=> "));
    let opened = forge_engine::devices::open_session(model, order, opts, &mut open, &mut |c, done, _| {
        bar.set_message(format!("loading onto {}", c.backend.name()));
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let opened = opened?;
    if !opened.events.is_empty() {
        eprintln!("forge: {}", forge_engine::devices::fallback_line(&opened.events, &opened.candidate));
    }
    Ok(opened)
}
