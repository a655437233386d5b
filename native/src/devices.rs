//! `forge devices`: every device this machine has, ranked, with the reason for each one that
//! cannot be used; and [`detect`], the edge where the process environment and the config file
//! are read for every command that picks a device.

use clap::Args;
use forge_engine::devices::config::{self, Env, Flags, Settings};
use forge_engine::devices::fit::{gib, human};
use forge_engine::devices::rank::DeviceClass;
use forge_engine::devices::{self as dev, Candidate, FaultPlan, Probe, RankOptions};

use crate::backends;

/// `--backend` / `--device`, shared by every command that runs a model.
#[derive(Args, Clone, Debug, Default)]
pub struct SelectArgs {
    /// Backend: auto, cpu, wgpu or cuda (default: FORGE_BACKEND, then the config file, then auto).
    #[arg(long)]
    pub backend: Option<String>,
    /// Device: an index from `forge devices` or part of its name (default: FORGE_DEVICE, then the config file).
    #[arg(long)]
    pub device: Option<String>,
    /// What the KV cache keeps keys and values in: f16 (half of f32's memory, llama.cpp's
    /// default), q8_0 (about a quarter) or f32 (default: FORGE_KV_TYPE, then the config file's
    /// kv_type, then f16).
    #[arg(long, value_name = "f32|f16|q8_0")]
    pub kv_type: Option<String>,
}

#[derive(Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What this machine has and what the user asked for.
pub struct Machine {
    pub probe: Probe,
    pub settings: Settings,
    pub candidates: Vec<Candidate>,
    pub faults: FaultPlan,
}

impl Machine {
    /// Options for opening a session on this machine: the user's memory fraction and injected
    /// faults, the host's free memory, and the caller's context and fallback choice.
    pub fn open_options(&self, ctx: usize, no_fallback: bool, warmup: bool) -> dev::OpenOptions {
        dev::OpenOptions {
            ctx,
            kv_type: self.settings.kv_type.value,
            memory_fraction: self.settings.memory_fraction.value,
            no_fallback,
            faults: self.faults.clone(),
            host_memory: self.probe.cpu.ram_available.or(self.probe.cpu.ram_total),
            warmup,
        }
    }
}

/// The process environment as a map (variables that are not UTF-8 are skipped).
pub fn process_env() -> Env {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

pub fn detect(select: &SelectArgs) -> anyhow::Result<Machine> {
    let env = process_env();
    let flags = Flags { backend: select.backend.clone(), device: select.device.clone(), kv_type: select.kv_type.clone() };
    let settings = config::load(&flags, &env)?;
    let faults = FaultPlan::parse("FORGE_FAULT", env.get("FORGE_FAULT").map_or("", String::as_str))?;
    if let Some(n) = settings.cpu_threads {
        dev::set_cpu_threads(n)?;
    }
    let probe = dev::probe();
    let opts = RankOptions { built: backends::BUILT.to_vec(), wgpu_apis: settings.wgpu_apis.clone(), ..RankOptions::default() };
    let candidates = dev::rank(&probe, &opts);
    Ok(Machine { probe, settings, candidates, faults })
}

fn memory(c: &Candidate) -> String {
    match (c.memory, c.class) {
        (Some(m), DeviceClass::Cpu) => format!("{} free", gib(m)),
        (Some(m), _) => gib(m),
        (None, DeviceClass::Software | DeviceClass::Integrated) => "shared".into(),
        _ => "-".into(),
    }
}

/// A second line of detail: API, driver, limits, features.
fn detail(c: &Candidate, probe: &Probe) -> String {
    let mut parts = Vec::new();
    match c.backend {
        dev::BackendKind::Cpu => {
            let cpu = &probe.cpu;
            parts.push(format!("{} threads", cpu.threads));
            if !cpu.simd.is_empty() {
                parts.push(cpu.simd.join(" "));
            }
            if let Some(t) = cpu.ram_total {
                parts.push(format!("{} RAM", gib(t)));
            }
        }
        dev::BackendKind::Wgpu => {
            if let Some(a) = c.id.strip_prefix("wgpu:").and_then(|i| i.parse::<usize>().ok()).and_then(|i| probe.wgpu.get(i)) {
                parts.push(format!("vendor {:#06x} device {:#06x}", a.vendor, a.device_id));
                if !a.driver.is_empty() {
                    parts.push(format!("driver {} {}", a.driver, a.driver_info).trim_end().to_string());
                }
                parts.push(format!("max buffer {}, max storage binding {}", human(a.max_buffer), human(a.max_storage_binding)));
                if !a.features.is_empty() {
                    parts.push(a.features.join(" "));
                }
            }
        }
        dev::BackendKind::Cuda => {
            if let (Some(o), forge_engine::devices::probe_cuda::CudaProbe::Present { devices, driver_version, .. }) = (c.cuda_ordinal, &probe.cuda)
                && let Some(d) = devices.iter().find(|d| d.ordinal == o)
            {
                parts.push(format!("compute capability {}.{}", d.compute_capability.0, d.compute_capability.1));
                if let Some((a, b)) = driver_version {
                    parts.push(format!("CUDA driver {a}.{b}"));
                }
            }
        }
    }
    for also in &c.also_seen_as {
        parts.push(match &also.reason {
            Some(r) => format!("also seen as {} (not usable: {r})", also.api),
            None => format!("also seen as {}", also.api),
        });
    }
    parts.join("; ")
}

pub fn devices(a: DevicesArgs) -> anyhow::Result<()> {
    let m = detect(&a.select)?;
    let chosen = dev::plan(&m.candidates, &m.settings).map(|order| order[0].index);
    if a.json {
        let out = serde_json::json!({
            "devices": m.candidates,
            "selected": chosen.as_ref().ok(),
            "selection_error": chosen.as_ref().err().map(|e| e.to_string()),
            "settings": m.settings,
            "probe": m.probe,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let w = m.candidates.iter().map(|c| c.label.chars().count()).max().unwrap_or(6).max(6);
    println!("{:>2}  {:<7} {:<w$}  {:<14} STATUS", "#", "BACKEND", "DEVICE", "MEMORY");
    for c in &m.candidates {
        let status = match &c.reason {
            None if c.class == DeviceClass::Software => "usable (software rasteriser, ranked below the CPU)".to_string(),
            None => "usable".to_string(),
            Some(r) => r.clone(),
        };
        let mark = if chosen.as_ref().ok() == Some(&c.index) { "*" } else { " " };
        println!("{:>2}{mark} {:<7} {:<w$}  {:<14} {status}", c.index, c.backend.name(), c.label, memory(c));
        let d = detail(c, &m.probe);
        if !d.is_empty() {
            println!("    {:<7} {d}", "");
        }
    }
    match chosen {
        Ok(_) => println!("* = what `forge run` uses (backend {}, from {})", m.settings.backend.value.name(), m.settings.backend.origin),
        Err(e) => println!("no device selected: {e}"),
    }
    Ok(())
}
