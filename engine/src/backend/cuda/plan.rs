//! A graph turned into buffers and a fixed list of kernel launches, built once per graph
//! structure (graphs compared whole: `backend::plan_cache`) and reused for every run of it.
//!
//! Buffers: params are the backend's; each `Input` slot has its own buffer; every other node's
//! result gets a pooled buffer, taken when the node runs and given back after its last reader
//! (outputs are kept), so a 30-layer model needs a handful of buffers, not hundreds. All device
//! addresses are fixed when the plan is built, which is what lets the launch list be captured:
//! from a plan's second run on, its launches are recorded once as a CUDA graph (stream capture)
//! and replayed with one `cuGraphLaunch` per forward. Inputs (token ids, positions) are copied
//! into their fixed buffers before each replay, and kernels read positions from the device, so
//! one captured decode graph serves every decode step.

use std::sync::Arc;

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

use super::kernels::{Kernels, dtype_suffix};
use super::{Param, driver_err, err};
use crate::backend::ParamId;
use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::graph::{AttnMask, Graph, KvLayout, Op, RopeLayout, rows_cols};
use crate::tensor::HostTensor;

/// The largest head the attention kernels take (attention_decode.cu's MAXD).
pub const MAX_HEAD_DIM: usize = 256;
/// The largest head attention_prefill.cu takes; larger heads use attention_decode for prefill.
const PREFILL_MAX_HEAD_DIM: usize = 128;
/// Up to this many activation rows a matmul runs as matvec (one warp per weight row, each weight
/// read once for all rows; matvec.cu's MAX_T).
const MATVEC_MAX_ROWS: usize = 16;
/// Grid y and z limit.
const MAX_GRID_YZ: usize = 65535;

/// Error bits, as common.cuh defines them.
const ERR_GET_ROWS_ID: u32 = 1;
const ERR_SCATTER_POS: u32 = 2;
const ERR_BLOCK_TABLE: u32 = 4;

pub fn check_error_word(word: u32) -> Result<()> {
    if word & ERR_GET_ROWS_ID != 0 {
        return Err(ForgeError::InvalidArgument { what: "get_rows: an id is outside the table".into() });
    }
    if word & ERR_SCATTER_POS != 0 {
        return Err(ForgeError::InvalidArgument { what: "scatter_rows: a position is outside the destination rows".into() });
    }
    if word & ERR_BLOCK_TABLE != 0 {
        return Err(ForgeError::InvalidArgument { what: "attention: a block-table entry is outside the KV pool".into() });
    }
    Ok(())
}

/// Where a node's value lives.
#[derive(Clone, Copy, Debug)]
enum Loc {
    Param(ParamId),
    Input(usize),
    Pool(usize),
}

/// One kernel argument, by value.
#[derive(Clone, Copy, Debug)]
enum Arg {
    Ptr(u64),
    I32(i32),
    U64(u64),
    F32(f32),
}

struct Launch {
    kernel: &'static str,
    cfg: LaunchConfig,
    args: Vec<Arg>,
}

/// A captured launch list. cudarc's graph handle is not `Send` because it holds raw driver
/// handles; the plan that owns it is only ever used through `&mut CudaBackend`, one thread at
/// a time, and CUDA graph execs may be launched from any thread.
struct Captured(CudaGraph);
// SAFETY: see above; the handle is never shared, only moved with its owner.
unsafe impl Send for Captured {}

pub struct Plan {
    inputs: Vec<CudaSlice<u8>>,
    pool: Vec<CudaSlice<u8>>,
    locs: Vec<Option<Loc>>,
    launches: Vec<Launch>,
    runs: u64,
    graph: Option<Captured>,
    capture_failed: bool,
}

fn ptr_of(buf: &CudaSlice<u8>, stream: &CudaStream) -> u64 {
    // With event tracking off (mod.rs) the guard returned here does nothing.
    let (p, _guard) = buf.device_ptr(stream);
    p
}

fn i32_of(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| err(format!("{what} = {v} does not fit a 32-bit kernel argument")))
}

fn elementwise_cfg(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(256).clamp(1, 65535) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

fn cfg(grid: (usize, usize, usize), block: u32) -> Result<LaunchConfig> {
    if grid.1 > MAX_GRID_YZ || grid.2 > MAX_GRID_YZ || grid.0 > i32::MAX as usize {
        return Err(err(format!("grid {grid:?} exceeds the device's limits")));
    }
    Ok(LaunchConfig { grid_dim: (grid.0 as u32, grid.1 as u32, grid.2 as u32), block_dim: (block, 1, 1), shared_mem_bytes: 0 })
}

/// Buffers handed out while a plan is built: free ones are reused best-fit.
struct Pool<'a> {
    stream: &'a Arc<CudaStream>,
    bufs: Vec<CudaSlice<u8>>,
    free: Vec<usize>,
    poison: bool,
}

impl Pool<'_> {
    fn take(&mut self, bytes: usize) -> Result<usize> {
        let bytes = bytes.max(4);
        let best = self.free.iter().enumerate().filter(|(_, b)| self.bufs[**b].len() >= bytes).min_by_key(|(_, b)| self.bufs[**b].len()).map(|(i, _)| i);
        if let Some(i) = best {
            return Ok(self.free.swap_remove(i));
        }
        let mut buf = self.stream.alloc_zeros::<u8>(bytes).map_err(|e| driver_err(&format!("allocating {bytes} bytes"), e))?;
        if self.poison {
            // 0xFF bytes are f32 NaNs: an element no kernel writes shows up in a comparison.
            let n = buf.len();
            let (p, _guard) = cudarc::driver::DevicePtrMut::device_ptr_mut(&mut buf, self.stream);
            // SAFETY: `p` is the start of a live allocation of `n` bytes on this stream's context.
            unsafe { cudarc::driver::result::memset_d8_async(p, 0xFF, n, self.stream.cu_stream()) }.map_err(|e| driver_err("poisoning", e))?;
        }
        self.bufs.push(buf);
        Ok(self.bufs.len() - 1)
    }

    fn give_back(&mut self, i: usize) {
        self.free.push(i);
    }
}

impl Plan {
    pub fn launches(&self) -> usize {
        self.launches.len()
    }

    /// Device bytes the plan's own buffers hold (inputs and the activation pool).
    pub fn bytes(&self) -> u64 {
        self.inputs.iter().chain(&self.pool).map(|b| b.len() as u64).sum()
    }

    pub fn build(graph: &Graph, stream: &Arc<CudaStream>, kernels: &Kernels, params: &[Param], err_word: &CudaSlice<u8>, poison: bool) -> Result<Plan> {
        let nodes = graph.nodes();
        let last_use = graph.last_uses();

        let mut inputs = Vec::new();
        for n in nodes {
            if let Op::Input { slot } = n.op {
                let bytes = HostTensor::byte_len(n.dtype, &n.shape)?;
                if inputs.len() <= slot {
                    inputs.resize_with(slot + 1, || None);
                }
                inputs[slot] = Some(stream.alloc_zeros::<u8>(bytes.max(4)).map_err(|e| driver_err("allocating an input", e))?);
            }
        }
        let inputs: Vec<CudaSlice<u8>> = inputs.into_iter().enumerate().map(|(i, b)| b.ok_or_else(|| err(format!("graph has no input slot {i}")))).collect::<Result<_>>()?;

        let mut pool = Pool { stream, bufs: Vec::new(), free: Vec::new(), poison };
        let mut locs: Vec<Option<Loc>> = vec![None; nodes.len()];
        let mut launches = Vec::new();
        let err_ptr = ptr_of(err_word, stream);

        for (i, node) in nodes.iter().enumerate() {
            let loc = match &node.op {
                Op::Input { slot } => Loc::Input(*slot),
                Op::Param { id } => {
                    if id.0 as usize >= params.len() {
                        return Err(err(format!("param {} does not exist on this backend", id.0)));
                    }
                    Loc::Param(*id)
                }
                Op::ScatterRows => locs[node.inputs[0].index()].expect("inputs come first"),
                _ => Loc::Pool(pool.take(HostTensor::byte_len(node.dtype, &node.shape)?)?),
            };
            locs[i] = Some(loc);
            if !matches!(node.op, Op::Input { .. } | Op::Param { .. }) {
                let ptr = |l: Option<Loc>| -> u64 {
                    match l.expect("inputs come first") {
                        Loc::Param(p) => ptr_of(&params[p.0 as usize].buf, stream),
                        Loc::Input(s) => ptr_of(&inputs[s], stream),
                        Loc::Pool(b) => ptr_of(&pool.bufs[b], stream),
                    }
                };
                let input_ptrs: Vec<u64> = node.inputs.iter().map(|&id| ptr(locs[id.index()])).collect();
                let out = ptr(Some(loc));
                let mut ctx = NodeCtx { graph, node_index: i, input_ptrs, out, err_ptr, tensor_cores: kernels.tensor_cores(), launches: &mut launches };
                let scratch = ctx.emit(&mut pool)?;
                if let Some(s) = scratch {
                    pool.give_back(s);
                }
            }
            // Each pooled input read for the last time goes back once (`mul(x, x)` reads x twice).
            let mut done = Vec::new();
            for &inp in &node.inputs {
                if last_use[inp.index()] == i
                    && !done.contains(&inp)
                    && let Some(Loc::Pool(b)) = locs[inp.index()]
                {
                    done.push(inp);
                    pool.give_back(b);
                }
            }
            // A result nothing reads (and no output) is dead at once.
            if last_use[i] == i
                && let Some(Loc::Pool(b)) = locs[i]
            {
                pool.give_back(b);
            }
        }
        for l in &launches {
            kernels.get(l.kernel)?;
        }
        stream.synchronize().map_err(|e| driver_err("preparing buffers", e))?;
        Ok(Plan { inputs, pool: pool.bufs, locs, launches, runs: 0, graph: None, capture_failed: false })
    }

    pub fn upload_inputs(&mut self, stream: &Arc<CudaStream>, inputs: &[HostTensor]) -> Result<()> {
        for (buf, t) in self.inputs.iter_mut().zip(inputs) {
            let bytes = t.as_bytes();
            if bytes.is_empty() {
                continue;
            }
            let mut view = buf.slice_mut(0..bytes.len());
            stream.memcpy_htod(bytes, &mut view).map_err(|e| driver_err("uploading inputs", e))?;
        }
        Ok(())
    }

    /// Runs the launch list: eagerly on the first run (so a failure names its kernel), then
    /// captured as a CUDA graph and replayed.
    pub fn run(&mut self, stream: &Arc<CudaStream>, kernels: &Kernels, use_graphs: bool) -> Result<()> {
        self.runs += 1;
        if let Some(g) = &self.graph {
            return g.0.launch().map_err(|e| driver_err("replaying the CUDA graph", e));
        }
        if use_graphs && self.runs >= 2 && !self.capture_failed {
            match self.capture(stream, kernels) {
                Ok(g) => {
                    g.launch().map_err(|e| driver_err("launching the CUDA graph", e))?;
                    self.graph = Some(Captured(g));
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!("cuda: stream capture failed, launching kernels one by one: {e}");
                    self.capture_failed = true;
                }
            }
        }
        self.launch_all(stream, kernels)
    }

    fn capture(&self, stream: &Arc<CudaStream>, kernels: &Kernels) -> Result<CudaGraph> {
        stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(|e| driver_err("beginning stream capture", e))?;
        let launched = self.launch_all(stream, kernels);
        // Capture must be ended whatever happened, or the stream stays in capture mode.
        let graph = stream.end_capture(CUgraphInstantiate_flags(0)).map_err(|e| driver_err("ending stream capture", e));
        launched?;
        graph?.ok_or_else(|| err("stream capture produced no graph"))
    }

    fn launch_all(&self, stream: &Arc<CudaStream>, kernels: &Kernels) -> Result<()> {
        for l in &self.launches {
            let f = kernels.get(l.kernel)?;
            let mut b = stream.launch_builder(f);
            for a in &l.args {
                match a {
                    Arg::Ptr(p) | Arg::U64(p) => b.arg(p),
                    Arg::I32(v) => b.arg(v),
                    Arg::F32(v) => b.arg(v),
                };
            }
            // SAFETY: every argument list matches its kernel's C signature (built in `emit`
            // next to the launch geometry the kernel's header documents), and every pointer is a
            // live buffer of the size the kernel reads or writes, kept by this plan or the
            // backend for as long as the plan exists.
            unsafe { b.launch(l.cfg) }.map_err(|e| driver_err(&format!("launching {}", l.kernel), e))?;
        }
        Ok(())
    }

    pub fn download_outputs(&self, stream: &Arc<CudaStream>, graph: &Graph, params: &[Param]) -> Result<Vec<HostTensor>> {
        graph
            .outputs()
            .iter()
            .map(|&o| {
                let node = graph.node(o);
                let bytes = HostTensor::byte_len(node.dtype, &node.shape)?;
                let buf = match self.locs[o.index()].expect("every node has a location") {
                    Loc::Param(p) => &params[p.0 as usize].buf,
                    Loc::Input(s) => &self.inputs[s],
                    Loc::Pool(b) => &self.pool[b],
                };
                let mut host = vec![0u8; bytes];
                if bytes > 0 {
                    stream.memcpy_dtoh(&buf.slice(0..bytes), &mut host).map_err(|e| driver_err("downloading outputs", e))?;
                }
                HostTensor::from_bytes(node.dtype, node.shape.clone(), host)
            })
            .collect()
    }
}

/// What one node's launches need to know.
struct NodeCtx<'a> {
    graph: &'a Graph,
    node_index: usize,
    input_ptrs: Vec<u64>,
    out: u64,
    err_ptr: u64,
    /// matmul_tc.cu can run (sm_80+).
    tensor_cores: bool,
    launches: &'a mut Vec<Launch>,
}

impl NodeCtx<'_> {
    fn push(&mut self, kernel: &'static str, cfg: LaunchConfig, args: Vec<Arg>) {
        // A grid with no blocks is an error to the driver; such a launch has nothing to do.
        if cfg.grid_dim.0 > 0 && cfg.grid_dim.1 > 0 && cfg.grid_dim.2 > 0 {
            self.launches.push(Launch { kernel, cfg, args });
        }
    }

    fn shape(&self, input: usize) -> &[usize] {
        let node = &self.graph.nodes()[self.node_index];
        &self.graph.node(node.inputs[input]).shape
    }

    fn dtype(&self, input: usize) -> DType {
        let node = &self.graph.nodes()[self.node_index];
        self.graph.node(node.inputs[input]).dtype
    }

    /// Appends the node's launches; returns a scratch buffer to give back once they are queued.
    fn emit(&mut self, pool: &mut Pool) -> Result<Option<usize>> {
        let node = &self.graph.nodes()[self.node_index];
        let p = self.input_ptrs.clone();
        let out = self.out;
        let n_out: usize = node.shape.iter().product();
        use Arg::*;
        match &node.op {
            Op::Input { .. } | Op::Param { .. } => {}
            Op::GetRows => {
                let d = self.dtype(0);
                let (rows, cols) = rows_cols(self.shape(0));
                let t = self.shape(1)[0];
                let kernel = typed_kernel("get_rows", d)?;
                check_weight(p[0], d, cols, "get_rows table")?;
                let args = vec![Ptr(p[0]), Ptr(p[1]), Ptr(out), I32(i32_of(rows, "table rows")?), I32(i32_of(cols, "columns")?), U64(d.row_bytes(cols)? as u64), Ptr(self.err_ptr)];
                self.push(kernel, cfg((t, 1, 1), 128)?, args);
            }
            Op::MatMul => {
                let d = self.dtype(1);
                let (t, k) = rows_cols(self.shape(0));
                let n = self.shape(1)[0];
                check_weight(p[1], d, k, "matmul weight")?;
                // matvec reads x with float4 loads (row starts 16-byte aligned when k % 4 == 0).
                check_aligned(p[0], 16, "matmul activations")?;
                // Quantized weights meet activations rounded to llama.cpp's 8-bit blocks, as on
                // the CPU and in WGSL (quantize_act.cu), in a scratch buffer freed once queued.
                let (x, scratch) = match act_kind(d) {
                    Some((kind, block)) => {
                        let buf = pool.take(t * k * 4)?;
                        let x = ptr_of(&pool.bufs[buf], pool.stream);
                        let blocks = t * k / block;
                        self.push("quantize_act", cfg((blocks.div_ceil(4), 1, 1), 128)?, vec![Ptr(p[0]), Ptr(x), U64(blocks as u64), I32(kind)]);
                        (x, Some(buf))
                    }
                    None => (p[0], None),
                };
                let args = vec![Ptr(p[1]), Ptr(x), Ptr(out), I32(i32_of(k, "k")?), I32(i32_of(n, "n")?), I32(i32_of(t, "t")?), U64(d.row_bytes(k)? as u64)];
                if t <= MATVEC_MAX_ROWS {
                    self.push(typed_kernel("matvec", d)?, cfg((n.div_ceil(4), 1, 1), 128)?, args);
                } else if self.tensor_cores && d != DType::F32 {
                    // TF32 tensor cores; F32 weights keep full f32 products (matmul.cu).
                    self.push(typed_kernel("matmul_tc", d)?, cfg((n.div_ceil(64), t.div_ceil(64), 1), 128)?, args);
                } else {
                    self.push(typed_kernel("matmul", d)?, cfg((n.div_ceil(64), t.div_ceil(64), 1), 256)?, args);
                }
                return Ok(scratch);
            }
            Op::Add => {
                let nb: usize = self.shape(1).iter().product();
                self.push("add", elementwise_cfg(n_out), vec![Ptr(p[0]), Ptr(p[1]), Ptr(out), U64(n_out as u64), U64(nb.max(1) as u64)]);
            }
            Op::Mul => self.push("mul", elementwise_cfg(n_out), vec![Ptr(p[0]), Ptr(p[1]), Ptr(out), U64(n_out as u64)]),
            Op::SiluMul => self.push("silu_mul", elementwise_cfg(n_out), vec![Ptr(p[0]), Ptr(p[1]), Ptr(out), U64(n_out as u64)]),
            Op::GeluMul => self.push("gelu_mul", elementwise_cfg(n_out), vec![Ptr(p[0]), Ptr(p[1]), Ptr(out), U64(n_out as u64)]),
            Op::RoundF16 => self.push("round_f16", elementwise_cfg(n_out), vec![Ptr(p[0]), Ptr(out), U64(n_out as u64)]),
            Op::Scale { factor } => self.push("scale", elementwise_cfg(n_out), vec![Ptr(p[0]), Ptr(out), U64(n_out as u64), F32(*factor)]),
            Op::RmsNorm { eps } => {
                // A weight narrower than the row normalizes each group of its width (per head).
                let cols = self.shape(1)[0];
                let rows = n_out / cols.max(1);
                self.push("rms_norm", cfg((rows, 1, 1), 256)?, vec![Ptr(p[0]), Ptr(p[1]), Ptr(out), I32(i32_of(rows, "rows")?), I32(i32_of(cols, "cols")?), F32(*eps)]);
            }
            Op::Rope { layout, head_dim, n_rot, base, freq_scale, factors } => {
                let (rows, cols) = rows_cols(self.shape(0));
                // The CPU's expression (backend/cpu/rope.rs), so θ's factor is the same f32.
                let theta_scale = base.powf(-2.0 / *n_rot as f32);
                let neox = i32::from(*layout == RopeLayout::NeoX);
                let args = vec![
                    Ptr(p[0]),
                    Ptr(p[1]),
                    Ptr(out),
                    I32(i32_of(rows, "rows")?),
                    I32(i32_of(cols, "cols")?),
                    I32(i32_of(*head_dim, "head_dim")?),
                    I32(i32_of(*n_rot, "n_rot")?),
                    F32(theta_scale),
                    I32(neox),
                    F32(*freq_scale),
                    // Without factors the kernel never reads them; any valid address will do.
                    Ptr(if *factors { p[2] } else { p[0] }),
                    I32(i32::from(*factors)),
                ];
                // n_rot = 0 rotates nothing: the kernel copies (its `e >= n_rot` branch).
                self.push("rope", cfg((rows, 1, 1), 128)?, args);
            }
            Op::Attention { n_head, n_kv_head, head_dim, scale, mask, kv } => return self.attention(pool, *n_head, *n_kv_head, *head_dim, *scale, *mask, *kv),
            Op::ScatterRows => {
                // The cache's type picks the kernel, which converts each f32 row on the way in.
                let d = self.dtype(0);
                let (dst_rows, cols) = rows_cols(self.shape(0));
                let (t, _) = rows_cols(self.shape(1));
                let args = vec![Ptr(p[0]), Ptr(p[1]), Ptr(p[2]), I32(i32_of(t, "rows")?), I32(i32_of(cols, "cols")?), I32(i32_of(dst_rows, "rows")?), Ptr(self.err_ptr)];
                // q8_0: a warp per block of 32 values, 4 blocks per 128 threads; else a thread per value.
                let (grid_x, block) = if d == DType::Q8_0 { ((cols / 32).div_ceil(4), 128) } else { (cols.div_ceil(256), 256) };
                self.push(typed_kernel("scatter_rows", d)?, cfg((grid_x, t, 1), block)?, args);
            }
            Op::SliceRows { start, len } => {
                let cols = self.shape(0)[1];
                let src = p[0] + (start * cols * 4) as u64;
                self.push("slice_rows", elementwise_cfg(len * cols), vec![Ptr(src), Ptr(out), U64((len * cols) as u64)]);
            }
            Op::Argmax => {
                let (rows, cols) = rows_cols(self.shape(0));
                self.push("argmax", cfg((rows, 1, 1), 256)?, vec![Ptr(p[0]), Ptr(out), I32(i32_of(rows, "rows")?), I32(i32_of(cols, "cols")?)]);
            }
        }
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(&mut self, pool: &mut Pool, n_head: usize, n_kv_head: usize, d: usize, scale: f32, mask: AttnMask, kv: KvLayout) -> Result<Option<usize>> {
        if d > MAX_HEAD_DIM {
            return Err(err(format!("attention with head_dim {d} (at most {MAX_HEAD_DIM})")));
        }
        let p = self.input_ptrs.clone();
        let (t, _) = rows_cols(self.shape(0));
        let (s, _) = rows_cols(self.shape(1));
        // Keys and values share one KV type (the graph checks), which picks the kernels' variant;
        // they address k and v by element, so nothing here depends on the type's row bytes.
        let kv_type = self.dtype(1);
        let causal = mask.is_causal();
        let window = match mask {
            AttnMask::SlidingWindow { window } => i32_of(window, "window")?,
            _ => 0,
        };
        // Without a mask the positions are never read; any valid address will do.
        let positions = if causal { p[3] } else { p[0] };
        let common = |a: &mut Vec<Arg>| -> Result<()> {
            a.extend([
                Arg::I32(i32_of(t, "t")?),
                Arg::I32(i32_of(s, "s")?),
                Arg::I32(i32_of(n_head, "n_head")?),
                Arg::I32(i32_of(n_kv_head, "n_kv_head")?),
                Arg::I32(i32_of(d, "head_dim")?),
                Arg::F32(scale),
                Arg::I32(i32::from(causal)),
            ]);
            Ok(())
        };
        let (block_size, table_cols, table) = match kv {
            KvLayout::Contiguous => (0, 0, p[0]),
            KvLayout::Paged { block_size } => (block_size, self.shape(4)[1], p[4]),
        };
        // Keys a query can reach: the pool's rows are not one sequence's keys when paged.
        let cap = if block_size > 0 {
            if s < block_size {
                return Err(err("paged attention over an empty KV pool"));
            }
            table_cols * block_size
        } else {
            s
        };
        i32_of(cap, "keys per query")?;
        // Paged batches run through both kernels when prefill can take them (route = 1): rows
        // whose block table equals a neighbour's (a prefill) share key tiles in
        // attention_prefill, the other rows (decode steps of other sequences) take
        // attention_decode's key splits; each kernel skips the other's rows (common.cuh
        // table_row_shared), since which rows are which is only known from the inputs.
        let prefill = t > 1 && d <= PREFILL_MAX_HEAD_DIM;
        let route = i32::from(prefill && block_size > 0);
        if prefill {
            let mut args = vec![Arg::Ptr(p[0]), Arg::Ptr(p[1]), Arg::Ptr(p[2]), Arg::Ptr(positions), Arg::Ptr(self.out)];
            common(&mut args)?;
            args.push(Arg::I32(window));
            args.extend([Arg::Ptr(table), Arg::I32(i32_of(block_size, "block size")?), Arg::I32(i32_of(table_cols, "table columns")?), Arg::Ptr(self.err_ptr)]);
            self.push(typed_kernel("attention_prefill", kv_type)?, cfg(prefill_grid(t, n_head, n_kv_head), 128)?, args);
            if route == 0 {
                return Ok(None);
            }
        }
        let (keys_per_split, n_split) = decode_splits(t, n_head, cap);
        let scratch = pool.take(t * n_head * n_split * (d + 2) * 4)?;
        let part = ptr_of(&pool.bufs[scratch], pool.stream);
        let mut args = vec![Arg::Ptr(p[0]), Arg::Ptr(p[1]), Arg::Ptr(p[2]), Arg::Ptr(positions), Arg::Ptr(part)];
        common(&mut args)?;
        args.push(Arg::I32(i32_of(keys_per_split, "keys per split")?));
        args.extend([Arg::Ptr(table), Arg::I32(i32_of(block_size, "block size")?), Arg::I32(i32_of(table_cols, "table columns")?), Arg::I32(window)]);
        args.extend([Arg::I32(route), Arg::Ptr(self.err_ptr)]);
        self.push(typed_kernel("attention_decode", kv_type)?, cfg((n_head, t, n_split), 128)?, args);
        let args = vec![
            Arg::Ptr(part),
            Arg::Ptr(self.out),
            Arg::I32(i32_of(t, "t")?),
            Arg::I32(i32_of(n_head, "n_head")?),
            Arg::I32(i32_of(d, "head_dim")?),
            Arg::I32(i32_of(n_split, "splits")?),
            Arg::Ptr(table),
            Arg::I32(i32_of(table_cols, "table columns")?),
            Arg::I32(route),
        ];
        self.push("attention_decode_combine", cfg((n_head, t, 1), 128)?, args);
        Ok(Some(scratch))
    }
}

/// The alignment the weight-reading kernels assume for every row of a `cols`-wide `d` matrix
/// (common.cuh): 128-bit loads for the K-quant nibbles (Q4_K, Q5_K) and for float rows of whole
/// 16-byte multiples, u32 loads for Q4_1 / Q5_1, u16 loads otherwise. Rows start at multiples of
/// the row length, so the matrix's start must have this alignment and so must the row length.
fn weight_align(d: DType, cols: usize) -> usize {
    match d {
        DType::Q4K | DType::Q5K => 16,
        DType::Q4_1 | DType::Q5_1 => 4,
        DType::F32 | DType::F16 | DType::BF16 if cols.is_multiple_of(8) => 16,
        DType::F32 => 4,
        _ => 2,
    }
}

/// A kernel argument the kernel reads with loads of `align` bytes must start at a multiple of
/// it: a misaligned load is undefined (on NVIDIA GPUs, a fault that kills the context). Device
/// allocations are 256-byte aligned, so this only fails for a view into one, which is refused
/// here rather than handed to a kernel.
fn check_aligned(ptr: u64, align: usize, what: &str) -> Result<()> {
    if ptr.is_multiple_of(align as u64) {
        Ok(())
    } else {
        Err(err(format!("{what} at device address {ptr:#x} is not {align}-byte aligned, as its kernel requires")))
    }
}

/// The activation rounding llama.cpp applies before a matmul with `d` weights: quantize_act.cu's
/// kind (0: Q8_0 / Q8_1, 1: Q8_K) and block length; `None` for float weights (activations stay
/// f32). The same table as the WGSL backend's `act_kind`.
fn act_kind(d: DType) -> Option<(i32, usize)> {
    match d {
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => Some((0, 32)),
        DType::Q4K | DType::Q5K | DType::Q6K => Some((1, 256)),
        _ => None,
    }
}

/// A `cols`-wide weight matrix of `d` at `ptr`: its start and its row length both aligned as
/// the kernels assume.
fn check_weight(ptr: u64, d: DType, cols: usize, what: &str) -> Result<()> {
    let align = weight_align(d, cols);
    check_aligned(ptr, align, what)?;
    let rb = d.row_bytes(cols)?;
    if !rb.is_multiple_of(align) {
        return Err(err(format!("{what}: rows of {rb} bytes are not {align}-byte multiples, as its kernel requires")));
    }
    Ok(())
}

/// Blocks that keep a GPU busy: about 16 resident 128-thread blocks on each of an H100/H200's
/// 132 SMs (A100: 108). Fewer (query row, head) pairs than this split their keys.
const TARGET_BLOCKS: usize = 2048;
/// At most this many key splits per (row, head): the combine reads them all.
const MAX_SPLITS: usize = 64;
/// A split below this many keys costs more in its partial's write and combine than it saves.
const MIN_KEYS_PER_SPLIT: usize = 256;

/// attention_prefill.cu's grid: 16 (query row, head) slots per block, the heads of one kv head
/// together (hpb of them, up to 16) so that each loaded K/V tile serves all of them.
fn prefill_grid(t: usize, n_head: usize, n_kv_head: usize) -> (usize, usize, usize) {
    let group = n_head / n_kv_head.max(1);
    let hpb = group.clamp(1, 16);
    (t.div_ceil(16 / hpb), n_kv_head * group.div_ceil(hpb), 1)
}

/// Keys per split and splits for attention_decode over `cap` reachable keys: a single decode
/// (t = 1) and a small batch of decodes alike split until t · n_head · splits reaches
/// TARGET_BLOCKS (flash-decoding); a batch that fills the GPU by itself takes one split.
fn decode_splits(t: usize, n_head: usize, cap: usize) -> (usize, usize) {
    let want = TARGET_BLOCKS.div_ceil((t * n_head).max(1)).clamp(1, MAX_SPLITS);
    let keys_per_split = cap.div_ceil(want).max(MIN_KEYS_PER_SPLIT);
    (keys_per_split, cap.div_ceil(keys_per_split).max(1))
}

/// `{op}_{dtype}`, e.g. `matvec_q4_k` or `attention_decode_f16`, as a static name (the kernels
/// table's key).
fn typed_kernel(op: &'static str, d: DType) -> Result<&'static str> {
    let sfx = dtype_suffix(d).ok_or_else(|| ForgeError::Unsupported { op, dtype: d, backend: "cuda".into() })?;
    let name = format!("{op}_{sfx}");
    super::kernels::SOURCES
        .iter()
        .flat_map(|s| s.entries.iter().copied())
        .find(|e| *e == name)
        .ok_or_else(|| err(format!("no kernel {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One decode fills the GPU with key splits, a batch of decodes with fewer, a long prefill
    /// with none; every split count covers the keys and stays within the combine's limit.
    #[test]
    fn decode_splits_shrink_as_the_batch_grows() {
        assert_eq!(decode_splits(1, 32, 4096), (256, 16));
        assert_eq!(decode_splits(1, 8, 32768), (512, 64));
        assert_eq!(decode_splits(8, 6, 1024), (256, 4));
        assert_eq!(decode_splits(512, 32, 4096), (4096, 1));
        assert_eq!(decode_splits(1, 32, 100), (256, 1));
        for (t, h, cap) in [(1, 1, 1), (3, 7, 100_000), (64, 32, 8192), (2, 2, 0)] {
            let (kps, n) = decode_splits(t, h, cap);
            assert!((1..=MAX_SPLITS).contains(&n) && kps * n >= cap, "{t} {h} {cap}: {kps} × {n}");
        }
    }

    #[test]
    fn misaligned_weights_and_activations_are_refused() {
        assert!(check_aligned(0x7f00_0000_0100, 16, "x").is_ok());
        let e = check_aligned(0x7f00_0000_0104, 16, "matmul activations").unwrap_err();
        assert!(e.to_string().contains("matmul activations at device address 0x7f0000000104 is not 16-byte aligned"), "{e}");
        // Q4_K rows are read with 128-bit loads, Q4_1 with u32 loads, Q8_0 with u16 loads.
        assert!(check_weight(0x1000, DType::Q4K, 512, "w").is_ok());
        assert!(check_weight(0x1008, DType::Q4K, 512, "w").is_err());
        assert!(check_weight(0x1004, DType::Q4_1, 64, "w").is_ok());
        assert!(check_weight(0x1002, DType::Q4_1, 64, "w").is_err());
        assert!(check_weight(0x1002, DType::Q8_0, 64, "w").is_ok());
        assert!(check_weight(0x1001, DType::Q8_0, 64, "w").is_err());
        // Float rows of 8k elements take 16-byte loads; other widths one element at a time.
        assert!(check_weight(0x1008, DType::F16, 64, "w").is_err());
        assert!(check_weight(0x1002, DType::F16, 63, "w").is_ok());
        assert!(check_weight(0x1004, DType::F32, 63, "w").is_ok());
    }

    /// Every (row, head) pair lands in exactly one slot of one block, as attention_prefill.cu
    /// maps them.
    #[test]
    fn prefill_grid_covers_every_row_and_head_once() {
        for (t, n_head, n_kv) in [(37, 6, 2), (40, 32, 8), (5, 32, 1), (17, 9, 3), (100, 4, 4), (3, 64, 2)] {
            let (gx, gy, _) = prefill_grid(t, n_head, n_kv);
            let group = n_head / n_kv;
            let hpb = group.min(16);
            let (rows, chunks) = (16 / hpb, group.div_ceil(hpb));
            let mut seen = vec![0; t * n_head];
            for bx in 0..gx {
                for by in 0..gy {
                    let (kvh, h0, h_end) = (by / chunks, (by / chunks) * group + (by % chunks) * hpb, (by / chunks + 1) * group);
                    for qi in 0..rows * hpb {
                        let (tq, h) = (bx * rows + qi / hpb, h0 + qi % hpb);
                        if kvh < n_kv && tq < t && h < h_end {
                            seen[tq * n_head + h] += 1;
                        }
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "t {t} heads {n_head}/{n_kv}");
        }
    }

    /// The limits plan.rs routes by are the kernels' own array sizes.
    #[test]
    fn routing_limits_match_the_kernels() {
        for (file, text, line) in [
            ("matvec.cu", include_str!("../../../../cuda/matvec.cu"), format!("#define MAX_T {MATVEC_MAX_ROWS} ")),
            ("attention_prefill.cu", include_str!("../../../../cuda/attention_prefill.cu"), format!("#define MAXD {PREFILL_MAX_HEAD_DIM}\n")),
            ("attention_decode.cu", include_str!("../../../../cuda/attention_decode.cu"), format!("#define MAXD {MAX_HEAD_DIM}\n")),
        ] {
            assert!(text.contains(&line), "cuda/{file} should have `{}`", line.trim());
        }
    }

    /// quantize_act.cu's kinds follow the CPU's activation formats (quant/q8_act.rs).
    #[test]
    fn activation_rounding_follows_the_cpu_formats() {
        for d in DType::WEIGHT_TYPES {
            let want = match d.block_len() {
                1 => None,
                32 => Some((0, 32)),
                _ => Some((1, 256)),
            };
            assert_eq!(act_kind(d), want, "{d}");
        }
    }
}
