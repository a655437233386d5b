//! Adapter, device and limits.
//!
//! The device is requested with the adapter's own limits (`adapter.limits()`), not WebGPU's
//! defaults: a discrete GPU binds gigabytes, lavapipe 128 MiB. Whatever they are, weights larger
//! than one storage binding are split into pages of rows (`buffers.rs`), so the limits only
//! change how many dispatches a matmul takes.

use crate::error::{ForgeError, Result};

pub(super) fn backend_err(what: impl Into<String>) -> ForgeError {
    ForgeError::Backend { backend: "wgpu".into(), what: what.into() }
}

/// The device and what the plan builder needs to know about it.
pub(super) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
}

impl Gpu {
    /// The best adapter the platform offers (high-performance preference; a software adapter such
    /// as lavapipe when there is nothing else).
    pub async fn best() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|e| backend_err(format!("no GPU adapter: {e}")))?;
        Gpu::open(adapter).await
    }

    pub async fn open(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("forge"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| backend_err(format!("cannot open {}: {e}", info.name)))?;
        // Errors not caught by an error scope are logged; the default handler panics.
        device.on_uncaptured_error(std::sync::Arc::new(|e| tracing::error!("wgpu: {e}")));
        Ok(Gpu { device, queue, info, limits })
    }

    /// The largest byte range one storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        (self.limits.max_storage_buffer_binding_size as u64).min(self.limits.max_buffer_size) & !3
    }

    /// Workgroups along one dispatch dimension.
    pub fn max_groups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    pub fn describe(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }
}

/// Runs `f` inside error scopes for out-of-memory and validation errors and turns a caught one
/// into a `ForgeError` (native only: on the web the scope's future cannot be waited on here, and
/// the uncaptured-error handler reports instead).
pub(super) fn scoped<T>(gpu: &Gpu, need: u64, f: impl FnOnce() -> T) -> Result<T> {
    let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let (v, o) = (validation.pop(), oom.pop());
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(e) = pollster::block_on(v) {
            return Err(backend_err(e.to_string()));
        }
        if pollster::block_on(o).is_some() {
            return Err(ForgeError::OutOfMemory { backend: "wgpu".into(), need, have: 0 });
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (v, o, need);
    Ok(value)
}
