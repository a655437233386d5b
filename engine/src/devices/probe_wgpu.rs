//! Every wgpu adapter of every API (Vulkan, Metal, DX12, GL), with what the backend needs to know
//! to rank it and to size a model for it: device type, limits, features, memory where known.

/// The graphics API an adapter is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Api {
    Vulkan,
    Metal,
    Dx12,
    Gl,
    WebGpu,
    Other,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Vulkan => "Vulkan",
            Api::Metal => "Metal",
            Api::Dx12 => "DX12",
            Api::Gl => "GL",
            Api::WebGpu => "WebGPU",
            Api::Other => "other",
        }
    }
}

/// Device type as wgpu reports it (`Cpu` is a software rasteriser such as llvmpipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuType {
    Discrete,
    Integrated,
    Virtual,
    Cpu,
    Other,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct WgpuAdapter {
    pub name: String,
    /// PCI vendor id (0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel, 0x10005 Mesa software).
    pub vendor: u32,
    /// PCI device id.
    pub device_id: u32,
    pub device_type: GpuType,
    pub api: Api,
    pub driver: String,
    pub driver_info: String,
    /// `dddd:bb:dd.f` when the API reports it.
    pub pci_bus_id: Option<String>,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    /// Of the features the kernels care about: `shader_f16`, `subgroup`, `timestamp_query`.
    pub features: Vec<&'static str>,
    /// Whether the adapter runs compute shaders at all (old GL does not).
    pub compute: bool,
    /// Device-local memory in bytes, when it could be found (Linux amdgpu sysfs); wgpu does not say.
    pub memory: Option<u64>,
    /// The adapter itself, for the backend to open; absent in synthetic probes.
    #[serde(skip)]
    pub adapter: Option<wgpu::Adapter>,
}

impl WgpuAdapter {
    /// A synthetic adapter for tests and examples: generous limits, compute, no handle.
    pub fn synthetic(name: &str, vendor: u32, device_id: u32, device_type: GpuType, api: Api) -> WgpuAdapter {
        WgpuAdapter {
            name: name.to_string(),
            vendor,
            device_id,
            device_type,
            api,
            driver: String::new(),
            driver_info: String::new(),
            pci_bus_id: None,
            max_storage_binding: 2 << 30,
            max_buffer: 4 << 30,
            features: vec![],
            compute: true,
            memory: None,
            adapter: None,
        }
    }
}

/// Every adapter of every API, or why enumeration failed.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe() -> Result<Vec<WgpuAdapter>, String> {
    let run = || {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::all();
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        adapters.into_iter().map(describe).collect()
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|p| {
        let what = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        format!("wgpu panicked while enumerating adapters: {}", what.unwrap_or_default())
    })
}

/// In a browser adapters come from an async request; the web front end asks for its own.
#[cfg(target_arch = "wasm32")]
pub fn probe() -> Result<Vec<WgpuAdapter>, String> {
    Err("adapters are requested asynchronously in a browser; not enumerated here".into())
}

#[cfg(not(target_arch = "wasm32"))]
fn describe(adapter: wgpu::Adapter) -> WgpuAdapter {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    let mut f = Vec::new();
    for (flag, name) in [(wgpu::Features::SHADER_F16, "shader_f16"), (wgpu::Features::SUBGROUP, "subgroup"), (wgpu::Features::TIMESTAMP_QUERY, "timestamp_query")] {
        if features.contains(flag) {
            f.push(name);
        }
    }
    let compute = adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
    let pci_bus_id = (!info.device_pci_bus_id.is_empty()).then(|| info.device_pci_bus_id.clone());
    WgpuAdapter {
        name: info.name.clone(),
        vendor: info.vendor,
        device_id: info.device,
        device_type: match info.device_type {
            wgpu::DeviceType::DiscreteGpu => GpuType::Discrete,
            wgpu::DeviceType::IntegratedGpu => GpuType::Integrated,
            wgpu::DeviceType::VirtualGpu => GpuType::Virtual,
            wgpu::DeviceType::Cpu => GpuType::Cpu,
            wgpu::DeviceType::Other => GpuType::Other,
        },
        api: match info.backend {
            wgpu::Backend::Vulkan => Api::Vulkan,
            wgpu::Backend::Metal => Api::Metal,
            wgpu::Backend::Dx12 => Api::Dx12,
            wgpu::Backend::Gl => Api::Gl,
            wgpu::Backend::BrowserWebGpu => Api::WebGpu,
            _ => Api::Other,
        },
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        memory: pci_bus_id.as_deref().and_then(sysfs_vram),
        pci_bus_id,
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        features: f,
        compute,
        adapter: Some(adapter),
    }
}

/// amdgpu publishes VRAM size in sysfs; other drivers do not, and then memory stays unknown.
#[cfg(not(target_arch = "wasm32"))]
fn sysfs_vram(pci_bus_id: &str) -> Option<u64> {
    let p = format!("/sys/bus/pci/devices/{pci_bus_id}/mem_info_vram_total");
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}
