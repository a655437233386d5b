//! The CUDA backend: the kernels in `cuda/` compiled at first use with NVRTC for the device's
//! architecture (and cached on disk), launched through cudarc's driver API, the whole forward
//! pass of a repeated graph captured once as a CUDA graph and replayed.
//!
//! Code map: `nvrtc.rs` (NVRTC loaded at run time; compile; disk cache), `kernels.rs` (the
//! sources and their entry points; loading modules), `plan.rs` (a graph → buffers and a fixed
//! list of launches, cached per graph in a `PlanCache`; capture and replay), `tests.rs` (every `.cu` file
//! through NVRTC without a GPU; every op against the CPU where a GPU exists).
//!
//! **Architecture Invariant:** nothing here runs, links or panics on a machine without NVIDIA's
//! driver: the driver library is probed (`backend::probe_cuda`) before cudarc touches it, since
//! cudarc panics when `libcuda` is missing, and NVRTC is loaded by hand for the same reason.
//! Weights and the KV cache stay on the device from `create_param` on; a forward pass uploads
//! only its inputs and downloads only its outputs.
//!
//! Weight uploads are queued on the stream without waiting (one wait per tensor cost a round
//! trip each); the host tensors are kept until the first `execute` synchronises once, so their
//! memory outlives every copy even where the driver reads it asynchronously (pinned memory).

mod kernels;
pub mod nvrtc;
mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DriverError};

use super::plan_cache::PlanCache;
use super::{Backend, ParamDesc, ParamId, ParamKind, check_inputs, check_supported};
use crate::backend::probe_cuda::{self, CudaProbe};
use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::graph::{Graph, Op};
use crate::tensor::HostTensor;
use kernels::Kernels;
use plan::Plan;


/// Plans kept at once: decode plus a few prefill lengths; the least recently used goes first.
const MAX_PLANS: usize = 6;

fn err(what: impl Into<String>) -> ForgeError {
    ForgeError::Backend { backend: "cuda".into(), what: what.into() }
}

pub(crate) fn driver_err(what: &str, e: DriverError) -> ForgeError {
    err(format!("{what}: {e:?}"))
}

pub(crate) struct Param {
    buf: CudaSlice<u8>,
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    name: String,
    params: Vec<Param>,
    /// Host tensors whose copies to the device were queued and not yet waited for: held until
    /// [`CudaBackend::finish_uploads`], since the copy may still read them.
    uploading: Vec<HostTensor>,
    /// One u32 the kernels set bits in (bad ids, bad positions); zeroed before every run.
    err_word: CudaSlice<u8>,
    plans: PlanCache<Plan>,
    /// Launches of the last `execute` (a replayed CUDA graph counts its kernels).
    last_launches: Option<usize>,
    /// Capture repeated plans as CUDA graphs (`FORGE_CUDA_GRAPH=0` turns it off).
    use_graphs: bool,
    /// Tests: fill every activation buffer with NaN when a plan is built.
    pub(crate) poison_activations: bool,
}

impl CudaBackend {
    /// Opens CUDA device `device_index` (the driver's ordinal). Fails, without panicking, when
    /// there is no NVIDIA driver, no such device, or no NVRTC to compile the kernels with.
    pub fn new(device_index: usize) -> Result<CudaBackend> {
        crate::backend::fault::check("cuda", crate::backend::fault::Stage::Init)?;
        let (driver_version, device) = match probe_cuda::probe() {
            CudaProbe::Absent { .. } => return Err(err(format!("{} not found: no NVIDIA driver", probe_cuda::LIBRARY_NAMES[0]))),
            CudaProbe::Failed { library, reason } => return Err(err(format!("{library}: {reason}"))),
            CudaProbe::Present { driver_version, devices, .. } => {
                let n = devices.len();
                let d = devices.into_iter().find(|d| d.ordinal as usize == device_index).ok_or_else(|| err(format!("no CUDA device {device_index} (the driver reports {n})")))?;
                (driver_version, d)
            }
        };
        let ctx = CudaContext::new(device_index).map_err(|e| driver_err("creating a context", e))?;
        // One stream, and every buffer used only on it: cudarc's per-buffer events would only
        // add work, and events recorded outside a stream capture cannot be waited on inside one.
        // SAFETY: no buffer exists yet, and this backend uses a single stream throughout.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| driver_err("creating a stream", e))?;
        let cc = (device.compute_capability.0 as i32, device.compute_capability.1 as i32);
        let dv = driver_version.map(|(a, b)| (a * 1000 + b * 10) as i32).unwrap_or(0);
        crate::backend::fault::check("cuda", crate::backend::fault::Stage::Compile)?;
        let kernels = Kernels::load(&ctx, cc, dv)?;
        let err_word = stream.alloc_zeros::<u8>(4).map_err(|e| driver_err("allocating", e))?;
        let use_graphs = std::env::var("FORGE_CUDA_GRAPH").map(|v| v != "0").unwrap_or(true);
        Ok(CudaBackend {
            ctx,
            stream,
            kernels,
            name: format!("{} (sm_{}{}, CUDA)", device.name, cc.0, cc.1),
            params: Vec::new(),
            uploading: Vec::new(),
            err_word,
            plans: PlanCache::new(MAX_PLANS),
            last_launches: None,
            use_graphs,
            poison_activations: false,
        })
    }

    /// Kernel launches one run of `graph` takes, building its plan if needed.
    pub fn launches(&mut self, graph: &Graph) -> Result<usize> {
        check_supported(self, graph)?;
        Ok(self.plan_for(graph)?.launches())
    }

    fn plan_for(&mut self, graph: &Graph) -> Result<&mut Plan> {
        self.plans.get_or_build(graph, || Plan::build(graph, &self.stream, &self.kernels, &self.params, &self.err_word, self.poison_activations))
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device(&self) -> String {
        self.name.clone()
    }

    fn supports(&self, op: &Op, dtype: DType) -> bool {
        match op {
            Op::GetRows | Op::MatMul => DType::WEIGHT_TYPES.contains(&dtype),
            // A KV cache of any KV type: written converted, read as f32 values.
            Op::ScatterRows => DType::KV_TYPES.contains(&dtype),
            Op::Attention { head_dim, .. } => *head_dim <= plan::MAX_HEAD_DIM && DType::KV_TYPES.contains(&dtype),
            _ => matches!(dtype, DType::F32 | DType::U32),
        }
    }

    fn create_param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> Result<ParamId> {
        crate::backend::fault::check("cuda", crate::backend::fault::Stage::Alloc)?;
        let bytes = desc.bytes()?;
        let buf = match (desc.kind, data) {
            (ParamKind::Weight, Some(t)) => {
                if t.dtype != desc.dtype || t.shape != desc.shape {
                    return Err(ForgeError::TensorShape { name: desc.name.clone(), expected: desc.shape.clone(), found: t.shape.clone() });
                }
                // At least 4 bytes: a zero-size allocation has no address to hand a kernel.
                let mut buf = self.stream.alloc_zeros::<u8>(bytes.max(4)).map_err(|e| self.alloc_err(bytes, e))?;
                if bytes > 0 {
                    let mut view = buf.slice_mut(0..bytes);
                    // Queued, not waited for: `t` (a cheap clone, its bytes shared) stays in
                    // `uploading` until `finish_uploads` has seen the stream drain.
                    self.stream.memcpy_htod(t.as_bytes(), &mut view).map_err(|e| driver_err(&format!("uploading {}", desc.name), e))?;
                    self.uploading.push(t.clone());
                }
                buf
            }
            // A KV cache (f32, f16 or q8_0 blocks; zero bytes are zero values in each), zeroed on
            // the stream ahead of any launch that reads it: no wait needed.
            (ParamKind::State, None) if DType::KV_TYPES.contains(&desc.dtype) => self.stream.alloc_zeros::<u8>(bytes.max(4)).map_err(|e| self.alloc_err(bytes, e))?,
            _ => return Err(err(format!("cannot create param {} ({:?}, {})", desc.name, desc.kind, desc.dtype))),
        };
        self.params.push(Param { buf });
        Ok(ParamId(self.params.len() as u32 - 1))
    }

    fn execute(&mut self, graph: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        check_supported(self, graph)?;
        check_inputs(graph, inputs)?;
        self.ctx.bind_to_thread().map_err(|e| driver_err("binding the context", e))?;
        self.finish_uploads()?;
        let plan = self.plans.get_or_build(graph, || Plan::build(graph, &self.stream, &self.kernels, &self.params, &self.err_word, self.poison_activations))?;
        plan.upload_inputs(&self.stream, inputs)?;
        self.stream.memset_zeros(&mut self.err_word).map_err(|e| driver_err("clearing the error word", e))?;
        plan.run(&self.stream, &self.kernels, self.use_graphs)?;
        self.last_launches = Some(plan.launches());
        let outputs = plan.download_outputs(&self.stream, graph, &self.params)?;
        let word = self.stream.clone_dtoh(&self.err_word).map_err(|e| driver_err("reading the error word", e))?;
        self.stream.synchronize().map_err(|e| driver_err("running the graph", e))?;
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        plan::check_error_word(word)?;
        Ok(outputs)
    }

    fn last_launches(&self) -> Option<usize> {
        self.last_launches
    }

    fn memory_used(&self) -> Option<u64> {
        let params: u64 = self.params.iter().map(|p| p.buf.len() as u64).sum();
        Some(params + self.plans.plans().map(|p| p.bytes()).sum::<u64>())
    }
}

impl CudaBackend {
    /// Waits once for every queued weight upload, then lets go of the host tensors they read.
    /// An upload that failed on the device is reported here.
    fn finish_uploads(&mut self) -> Result<()> {
        if self.uploading.is_empty() {
            return Ok(());
        }
        self.stream.synchronize().map_err(|e| driver_err(&format!("uploading {} weights", self.uploading.len()), e))?;
        self.uploading.clear();
        Ok(())
    }

    fn alloc_err(&self, need: usize, e: DriverError) -> ForgeError {
        match self.ctx.mem_get_info() {
            Ok((free, _)) if (free as u64) < need as u64 => ForgeError::OutOfMemory { backend: "cuda".into(), need: need as u64, have: free as u64 },
            _ => driver_err(&format!("allocating {need} bytes"), e),
        }
    }
}

impl Drop for CudaBackend {
    /// A backend dropped before its first `execute` still has copies in flight: wait for them
    /// before `uploading` (the memory they read) is freed.
    fn drop(&mut self) {
        if !self.uploading.is_empty() {
            let _ = self.stream.synchronize();
        }
    }
}

#[cfg(test)]
mod upload_tests {
    //! Weight uploads without a wait per tensor: needs a GPU; skips without one unless
    //! `FORGE_REQUIRE_CUDA=1`.
    use super::*;
    use crate::backend::test_util::rand_vec;

    fn backend() -> Option<CudaBackend> {
        match CudaBackend::new(0) {
            Ok(b) => Some(b),
            Err(e) if std::env::var("FORGE_REQUIRE_CUDA").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_CUDA=1 but {e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    #[test]
    fn weights_queued_back_to_back_arrive_whole_after_their_host_copies_are_dropped() {
        let Some(mut cuda) = backend() else { return };
        let (n, rows, cols) = (48, 37, 1031);
        let mut want = Vec::new();
        let mut g = Graph::new();
        let ids = g.input(&[rows], DType::U32);
        for i in 0..n {
            let data = rand_vec(rows * cols, 500 + i as u64);
            let desc = ParamDesc { name: format!("w{i}"), shape: vec![rows, cols], dtype: DType::F32, kind: ParamKind::Weight };
            // The backend's queued clone is the only owner of these bytes once this returns.
            let id = cuda.create_param(&desc, Some(&HostTensor::from_f32(vec![rows, cols], &data).unwrap())).unwrap();
            let w = g.param(id, &desc);
            let o = g.get_rows(w, ids).unwrap();
            g.output(o);
            want.push(data);
        }
        assert_eq!(cuda.uploading.len(), n, "no wait while loading");
        let all_rows: Vec<u32> = (0..rows as u32).collect();
        let got = cuda.execute(&g, &[HostTensor::from_u32(vec![rows], &all_rows).unwrap()]).expect("runs");
        assert!(cuda.uploading.is_empty(), "the first execute waited for the uploads");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.to_f32_vec() == *w, "weight {i} differs from what was uploaded");
        }
    }
}
