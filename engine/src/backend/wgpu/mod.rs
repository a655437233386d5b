//! The wgpu backend: WebGPU compute shaders (WGSL, `shaders/`) on Vulkan, Metal, DX12 or a
//! browser's WebGPU, f32 arithmetic throughout (no `shader-f16`, which SwiftShader lacks).
//!
//! Code map: `device.rs` (adapter, device, limits, error scopes), `buffers.rs` (params split into
//! pages of rows; the activation pool), `plan.rs` (a graph → dispatches and bind groups, cached by
//! graph in a `PlanCache`; one submission per forward), `readback.rs` (the one async path results come back
//! by), `kernels/` (one module per op: entry point, constants, bindings, dispatch geometry, test).
//!
//! **Architecture Invariant:** weights and the KV cache live on the device from `create_param`
//! on; a forward pass uploads only its inputs (ids, positions) and downloads only its outputs
//! (the greedy ids, or logits). Nothing is allocated per token once a graph's plan exists.

mod buffers;
mod device;
mod fuse;
mod kernels;
mod plan;
mod readback;

use crate::backend::fault::{self, Stage};

use buffers::Param;
use device::Gpu;
use plan::{Pipelines, Plan};

use super::plan_cache::PlanCache;
use super::{Backend, BoxFuture, ParamDesc, ParamId, check_inputs, check_supported};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Graph, Op};
use crate::tensor::HostTensor;

/// Plans kept at once: decode (T = 1) plus a few prefill lengths; the oldest other goes first.
const MAX_PLANS: usize = 4;

pub struct WgpuBackend {
    gpu: Gpu,
    params: Vec<Param>,
    pipelines: Pipelines,
    plans: PlanCache<Plan>,
    last_launches: Option<usize>,
    /// Largest weight page, in bytes: the device's storage-binding limit, lowered by tests to
    /// exercise splitting on small tensors.
    pub(crate) page_bytes: u64,
    /// Tests: fill every activation buffer with NaN when a plan is built.
    pub(crate) poison_activations: bool,
    /// Matvec geometry, chosen for the adapter; tests set the other one to check both.
    pub(crate) matvec: kernels::Matvec,
    /// Fuse neighbouring ops into one dispatch (`fuse.rs`); `FORGE_WGPU_FUSE=0` turns it off
    /// (results are the same bits either way; only the dispatch count changes).
    pub(crate) fuse: bool,
}

impl WgpuBackend {
    /// Opens the best adapter the platform offers (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<WgpuBackend> {
        pollster::block_on(Self::new_async())
    }

    /// Opens the best adapter the platform offers.
    pub async fn new_async() -> Result<WgpuBackend> {
        Ok(Self::from_gpu(Gpu::best().await?))
    }

    /// Opens a device on `adapter` (the hardware detector's choice).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        pollster::block_on(Self::with_adapter_async(adapter))
    }

    pub async fn with_adapter_async(adapter: wgpu::Adapter) -> Result<Self> {
        fault::check("wgpu", Stage::Init)?;
        Ok(Self::from_gpu(Gpu::open(adapter).await?))
    }

    fn from_gpu(gpu: Gpu) -> Self {
        let page_bytes = gpu.max_binding();
        let matvec = kernels::Matvec::for_device(gpu.info.device_type);
        let fuse = std::env::var("FORGE_WGPU_FUSE").map_or(true, |v| v != "0");
        WgpuBackend { gpu, params: Vec::new(), pipelines: Pipelines::default(), plans: PlanCache::new(MAX_PLANS), last_launches: None, page_bytes, poison_activations: false, matvec, fuse }
    }

    /// Kernel launches (dispatches) one run of `graph` takes, building its plan if needed.
    pub fn launches(&mut self, graph: &Graph) -> Result<usize> {
        Ok(self.plan(graph)?.launches())
    }

    #[cfg(test)]
    pub(crate) fn param_pages(&self, id: ParamId) -> usize {
        self.params[id.0 as usize].pages.len()
    }

    fn plan(&mut self, graph: &Graph) -> Result<&Plan> {
        let plan = self.plans.get_or_build(graph, || Plan::build(&self.gpu, &mut self.pipelines, &self.params, graph, self.matvec, self.fuse, self.poison_activations))?;
        Ok(plan)
    }

    async fn run(&mut self, graph: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        check_supported(self, graph)?;
        check_inputs(graph, inputs)?;
        let plan = self.plans.get_or_build(graph, || Plan::build(&self.gpu, &mut self.pipelines, &self.params, graph, self.matvec, self.fuse, self.poison_activations))?;
        plan.submit(&self.gpu, &self.params, inputs);
        self.last_launches = Some(plan.launches());
        plan.outputs(&self.gpu).await
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn device(&self) -> String {
        self.gpu.describe()
    }

    fn supports(&self, op: &Op, dtype: DType) -> bool {
        match op {
            Op::GetRows | Op::MatMul => kernels::matmul::supported(dtype),
            Op::Attention { head_dim, .. } => DType::KV_TYPES.contains(&dtype) && kernels::attention::supported(*head_dim),
            Op::ScatterRows => DType::KV_TYPES.contains(&dtype),
            _ => matches!(dtype, DType::F32 | DType::U32),
        }
    }

    fn create_param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> Result<ParamId> {
        fault::check("wgpu", Stage::Alloc)?;
        let p = buffers::create_param(&self.gpu, desc, data, self.page_bytes)?;
        self.params.push(p);
        Ok(ParamId(self.params.len() as u32 - 1))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn execute(&mut self, graph: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        pollster::block_on(self.run(graph, inputs))
    }

    /// A browser cannot block on the device: callers there use `execute_async`.
    #[cfg(target_arch = "wasm32")]
    fn execute(&mut self, _graph: &Graph, _inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        Err(device::backend_err("in a browser, run graphs with execute_async"))
    }

    fn execute_async<'a>(&'a mut self, graph: &'a Graph, inputs: &'a [HostTensor]) -> BoxFuture<'a, Result<Vec<HostTensor>>> {
        Box::pin(self.run(graph, inputs))
    }

    fn last_launches(&self) -> Option<usize> {
        self.last_launches
    }

    fn memory_used(&self) -> Option<u64> {
        let params: u64 = self.params.iter().flat_map(|p| &p.pages).map(|pg| pg.buffer.size()).sum();
        Some(params + self.plans.plans().map(|p| p.bytes()).sum::<u64>())
    }
}
