//! What a `forge bench --json` file records about where it ran, so that `forge bench report` can
//! put files from several machines side by side: the machine's name and each device's driver.

use forge_engine::devices::probe_cuda::CudaProbe;
use forge_engine::devices::{BackendKind, Candidate, Probe};

/// This machine's name as the OS reports it; `None` where it cannot be read.
pub fn hostname() -> Option<String> {
    let from_env = std::env::var("COMPUTERNAME").ok();
    let from_proc = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let from_cmd = || std::process::Command::new("hostname").output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    from_env.or_else(from_proc).or_else(from_cmd).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The driver behind a measured device, as `forge devices` names it: `native` for the CPU
/// backend (no driver between forge and the cores), the Vulkan/Metal/DX12 driver and its version
/// for wgpu, the CUDA driver version for CUDA; `None` where the probe did not say.
pub fn driver(c: &Candidate, probe: &Probe) -> Option<String> {
    match c.backend {
        BackendKind::Cpu => Some("native".into()),
        BackendKind::Wgpu => {
            let a = c.id.strip_prefix("wgpu:").and_then(|i| i.parse::<usize>().ok()).and_then(|i| probe.wgpu.get(i))?;
            let text = format!("{} {}", a.driver, a.driver_info);
            let text = text.trim();
            (!text.is_empty()).then(|| format!("{} {text}", c.api))
        }
        BackendKind::Cuda => match &probe.cuda {
            CudaProbe::Present { driver_version: Some((major, minor)), .. } => Some(format!("CUDA driver {major}.{minor}")),
            _ => None,
        },
    }
}
