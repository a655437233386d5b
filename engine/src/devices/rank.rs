//! Ranking: a pure function from what the machine has ([`Probe`]) to the ordered list of places a
//! model can run ([`Candidate`]s). Nothing here touches hardware, so every rule is unit-tested
//! with synthetic probes.
//!
//! Order (best first), among usable candidates:
//! 1. measured throughput, when a measurement exists (a candidate with one goes before those without);
//! 2. tier: CUDA on NVIDIA, discrete GPU, integrated GPU, virtual/other GPU, the CPU backend,
//!    then software rasterisers (llvmpipe, lavapipe, SwiftShader, WARP), which are slower than
//!    the native CPU kernels they run on;
//! 3. API: CUDA > Vulkan > Metal/DX12 > GL > WebGPU; then more memory first.
//!
//! Unusable candidates follow, each with its reason. The same physical GPU seen through several
//! APIs is listed once, through the fastest usable path; the other paths are kept in
//! [`Candidate::also_seen_as`].

use std::collections::BTreeMap;

use super::Probe;
use crate::backend::probe_cuda::CudaProbe;
use super::probe_wgpu::{Api, GpuType, WgpuAdapter};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// What kind of device a candidate is, which fixes its tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    CudaGpu,
    Discrete,
    Integrated,
    OtherGpu,
    Cpu,
    Software,
    /// A backend with no device at all (no driver): listed to say why.
    Missing,
}

/// Another path to the same physical device, hidden behind the one listed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlsoSeenAs {
    pub backend: BackendKind,
    pub api: &'static str,
    pub usable: bool,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    /// Position in the ranking, 0 = best; what `--device N` names.
    pub index: usize,
    /// Stable id for measurements and logs: `cpu`, `cuda:0`, `wgpu:3` (probe order).
    pub id: String,
    pub backend: BackendKind,
    /// The device as a person names it: `llvmpipe (LLVM 15.0.7, 256 bits) (Vulkan)`.
    pub label: String,
    /// `native`, `CUDA`, `Vulkan`, `Metal`, `DX12`, `GL`, `WebGPU`.
    pub api: &'static str,
    pub class: DeviceClass,
    pub usable: bool,
    /// Why not usable; `None` when usable.
    pub reason: Option<String>,
    /// Memory the device can hold a model in, bytes, when known.
    pub memory: Option<u64>,
    /// Largest single buffer the device allows, bytes, when limited.
    pub max_buffer: Option<u64>,
    /// Tokens/s measured on this candidate, when a measurement was supplied.
    pub measured_tok_s: Option<f64>,
    pub also_seen_as: Vec<AlsoSeenAs>,
    /// For wgpu: the adapter to open (absent in synthetic probes).
    #[serde(skip)]
    pub adapter: Option<wgpu::Adapter>,
    /// For CUDA: the device ordinal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_ordinal: Option<u32>,
}

/// Everything ranking depends on besides the probe.
#[derive(Clone, Debug)]
pub struct RankOptions {
    /// Backends this build can open.
    pub built: Vec<BackendKind>,
    /// Measured tokens/s by candidate id.
    pub measured: BTreeMap<String, f64>,
    /// wgpu APIs the user allows (`[wgpu] apis` in the config); `None` = all.
    pub wgpu_apis: Option<Vec<Api>>,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions { built: vec![BackendKind::Cpu], measured: BTreeMap::new(), wgpu_apis: None }
    }
}

pub fn is_software(name: &str, device_type: GpuType) -> bool {
    let n = name.to_ascii_lowercase();
    device_type == GpuType::Cpu || ["llvmpipe", "lavapipe", "swiftshader", "softpipe", "microsoft basic render", "warp"].iter().any(|s| n.contains(s))
}

fn api_order(api: &str) -> u8 {
    match api {
        "CUDA" => 0,
        "Vulkan" => 1,
        "Metal" | "DX12" => 2,
        "GL" => 3,
        "WebGPU" => 4,
        _ => 5,
    }
}

/// How to recognise one physical GPU across APIs.
#[derive(Clone, Debug)]
struct Physical {
    pci_bus_id: Option<String>,
    vendor: u32,
    device_id: u32,
    name: String,
}

fn normalized(name: &str) -> String {
    let n = name.split('/').next().unwrap_or(name).to_ascii_lowercase().replace("(r)", "").replace("(tm)", "");
    n.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn same_gpu(a: &Physical, b: &Physical) -> bool {
    if let (Some(x), Some(y)) = (&a.pci_bus_id, &b.pci_bus_id) {
        return x.eq_ignore_ascii_case(y);
    }
    if a.vendor != 0 && b.vendor != 0 && a.device_id != 0 && b.device_id != 0 {
        return a.vendor == b.vendor && a.device_id == b.device_id;
    }
    normalized(&a.name) == normalized(&b.name)
}

fn candidate(id: String, backend: BackendKind, label: String, api: &'static str, class: DeviceClass, reason: Option<String>) -> Candidate {
    Candidate {
        index: 0,
        id,
        backend,
        label,
        api,
        class,
        usable: reason.is_none(),
        reason,
        memory: None,
        max_buffer: None,
        measured_tok_s: None,
        also_seen_as: Vec::new(),
        adapter: None,
        cuda_ordinal: None,
    }
}

fn not_built(kind: BackendKind, opts: &RankOptions) -> Option<String> {
    (!opts.built.contains(&kind)).then(|| format!("the {} backend is not part of this build", kind.name()))
}

fn cuda_candidates(cuda: &CudaProbe, opts: &RankOptions) -> Vec<(Candidate, Option<Physical>)> {
    match cuda {
        CudaProbe::Absent { reason } => vec![(candidate("cuda".into(), BackendKind::Cuda, "CUDA".into(), "CUDA", DeviceClass::Missing, Some(format!("not available: {reason}"))), None)],
        CudaProbe::Failed { library, reason } => {
            vec![(candidate("cuda".into(), BackendKind::Cuda, "CUDA".into(), "CUDA", DeviceClass::Missing, Some(format!("driver present ({library}) but unusable: {reason}"))), None)]
        }
        CudaProbe::Present { devices, .. } => devices
            .iter()
            .map(|d| {
                let reason = (!opts.built.contains(&BackendKind::Cuda))
                    .then(|| format!("driver present but the CUDA backend is not built yet (compute capability {}.{})", d.compute_capability.0, d.compute_capability.1));
                let mut c = candidate(format!("cuda:{}", d.ordinal), BackendKind::Cuda, format!("{} (CUDA)", d.name), "CUDA", DeviceClass::CudaGpu, reason);
                c.memory = Some(d.total_mem);
                c.cuda_ordinal = Some(d.ordinal);
                (c, Some(Physical { pci_bus_id: d.pci_bus_id.clone(), vendor: 0x10de, device_id: 0, name: d.name.clone() }))
            })
            .collect(),
    }
}

fn wgpu_candidate(i: usize, a: &WgpuAdapter, opts: &RankOptions) -> (Candidate, Option<Physical>) {
    let software = is_software(&a.name, a.device_type);
    let class = match a.device_type {
        _ if software => DeviceClass::Software,
        GpuType::Discrete => DeviceClass::Discrete,
        GpuType::Integrated => DeviceClass::Integrated,
        _ => DeviceClass::OtherGpu,
    };
    let reason = not_built(BackendKind::Wgpu, opts)
        .or_else(|| (!a.compute).then(|| "the adapter cannot run compute shaders".to_string()))
        .or_else(|| (a.api == Api::Other).then(|| "not a real API (noop or unknown)".to_string()))
        .or_else(|| opts.wgpu_apis.as_ref().filter(|apis| !apis.contains(&a.api)).map(|_| format!("{} excluded by the config's [wgpu] apis", a.api.name())));
    let mut c = candidate(format!("wgpu:{i}"), BackendKind::Wgpu, format!("{} ({})", a.name, a.api.name()), a.api.name(), class, reason);
    c.memory = a.memory;
    c.max_buffer = Some(a.max_buffer.min(a.max_storage_binding));
    c.adapter = a.adapter.clone();
    let phys = Physical { pci_bus_id: a.pci_bus_id.clone(), vendor: a.vendor, device_id: a.device_id, name: a.name.clone() };
    (c, Some(phys))
}

/// Ranks everything in `probe`. Indices are positions in the returned list.
pub fn rank(probe: &Probe, opts: &RankOptions) -> Vec<Candidate> {
    let mut raw = cuda_candidates(&probe.cuda, opts);
    raw.extend(probe.wgpu.iter().enumerate().map(|(i, a)| wgpu_candidate(i, a, opts)));
    if let Some(e) = &probe.wgpu_error {
        raw.push((candidate("wgpu".into(), BackendKind::Wgpu, "wgpu".into(), "WebGPU", DeviceClass::Missing, Some(format!("not available: {e}"))), None));
    } else if probe.wgpu.is_empty() {
        let why = "not available: no wgpu adapter found (no Vulkan, Metal, DX12 or GL driver)".to_string();
        raw.push((candidate("wgpu".into(), BackendKind::Wgpu, "wgpu".into(), "WebGPU", DeviceClass::Missing, Some(why)), None));
    }
    let cpu = &probe.cpu;
    let mut c = candidate("cpu".into(), BackendKind::Cpu, format!("{} ({} threads)", cpu.model, cpu.threads), "native", DeviceClass::Cpu, not_built(BackendKind::Cpu, opts));
    c.memory = cpu.ram_available.or(cpu.ram_total);
    raw.push((c, None));

    // One entry per physical GPU: the usable, fastest API first claims the device.
    raw.sort_by_key(|(c, _)| (!c.usable, api_order(c.api)));
    let mut kept: Vec<(Candidate, Option<Physical>, Vec<&'static str>)> = Vec::new();
    for (c, phys) in raw {
        let twin = phys.as_ref().and_then(|p| {
            kept.iter_mut().find(|(_, q, apis)| q.as_ref().is_some_and(|q| same_gpu(p, q)) && !apis.contains(&c.api))
        });
        match twin {
            Some((rep, _, apis)) => {
                apis.push(c.api);
                rep.also_seen_as.push(AlsoSeenAs { backend: c.backend, api: c.api, usable: c.usable, reason: c.reason });
            }
            None => {
                let api = c.api;
                kept.push((c, phys, vec![api]));
            }
        }
    }

    let mut out: Vec<Candidate> = kept.into_iter().map(|(c, _, _)| c).collect();
    for c in &mut out {
        c.measured_tok_s = opts.measured.get(&c.id).copied();
    }
    out.sort_by(|a, b| {
        let key = |c: &Candidate| (!c.usable, c.measured_tok_s.is_none() || !c.usable, c.class, api_order(c.api), std::cmp::Reverse(c.memory.unwrap_or(0)));
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then_with(|| b.measured_tok_s.unwrap_or(0.0).total_cmp(&a.measured_tok_s.unwrap_or(0.0)))
            .then(ka.2.cmp(&kb.2))
            .then(ka.3.cmp(&kb.3))
            .then(ka.4.cmp(&kb.4))
    });
    for (i, c) in out.iter_mut().enumerate() {
        c.index = i;
    }
    out
}
