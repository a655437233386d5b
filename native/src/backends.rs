//! Turning the user's `--backend` choice into a running backend.

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The best device this machine has.
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

pub fn open(choice: BackendChoice) -> anyhow::Result<Box<dyn Backend>> {
    match choice {
        BackendChoice::Auto | BackendChoice::Cpu => Ok(Box::new(CpuBackend::new())),
        BackendChoice::Wgpu | BackendChoice::Cuda => {
            anyhow::bail!("the {choice:?} backend is not part of this build yet; use --backend cpu")
        }
    }
}
