//! A graph turned into dispatches, built once per graph structure (graphs compared whole: `backend::plan_cache`) and
//! replayed: activation buffers from a pool, a uniform buffer holding every step's constants,
//! pipelines from the backend's cache, one bind group per step. A run writes the inputs, records
//! every step into one compute pass, copies the outputs to a staging buffer, submits once, and
//! reads the staging buffer back.
//!
//! **Architecture Invariant:** run-time quantities (token ids, positions, so the number of keys
//! each query sees) reach the kernels through input buffers on the device; the plan itself is
//! the same at every decode step.

use std::collections::HashMap;

use super::buffers::{Param, Pool};
use super::device::{Gpu, backend_err};
use super::fuse::{self, Role};
use super::kernels::{self, Buf, Cx, KernelKey, Matrix, Step};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Op, rows_cols};
use crate::tensor::HostTensor;

/// Compiled pipelines, shared by every plan of a backend.
#[derive(Default)]
pub(super) struct Pipelines {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<KernelKey, wgpu::ComputePipeline>,
}

impl Pipelines {
    fn get(&mut self, gpu: &Gpu, key: &KernelKey) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.get(key) {
            return Ok(p.clone());
        }
        crate::backend::fault::check("wgpu", crate::backend::fault::Stage::Compile)?;
        let module = self
            .modules
            .entry(key.shader)
            .or_insert_with(|| gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(key.shader), source: wgpu::ShaderSource::Wgsl(kernels::source(key.shader).into()) }))
            .clone();
        let constants: Vec<(&str, f64)> = key.constants.iter().map(|&(n, v)| (n, v as f64)).collect();
        let pipeline = super::device::scoped(gpu, 0, || gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry),
            layout: None,
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, zero_initialize_workgroup_memory: false },
            cache: None,
        }))
        .map_err(|e| backend_err(format!("{}.wgsl `{}` {:?}: {e}", key.shader, key.entry, key.constants)))?;
        self.pipelines.insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }
}

struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

struct Output {
    buf: Buf,
    /// Bytes copied (whole words), of which `len` are the value.
    bytes: u64,
    len: usize,
    shape: Vec<usize>,
    dtype: DType,
}

pub(super) struct Plan {
    dispatches: Vec<Dispatch>,
    inputs: Vec<Option<wgpu::Buffer>>,
    outputs: Vec<Output>,
    pool: Pool,
    staging: wgpu::Buffer,
    /// Kept alive for the bind groups.
    _uniforms: wgpu::Buffer,
    dummy: wgpu::Buffer,
    _scratch: [wgpu::Buffer; 2],
}

const UNIFORM_BYTES: u64 = 64;

fn bytes_of(shape: &[usize]) -> usize {
    shape.iter().product::<usize>() * 4
}

impl Plan {
    pub fn build(gpu: &Gpu, pipelines: &mut Pipelines, params: &[Param], graph: &Graph, matvec: kernels::Matvec, fuse: bool, poison: bool) -> Result<Plan> {
        let nodes = graph.nodes();
        let mut last_use: Vec<usize> = (0..nodes.len()).collect();
        for (i, n) in nodes.iter().enumerate() {
            for &inp in &n.inputs {
                last_use[inp.index()] = i;
            }
        }
        for &o in graph.outputs() {
            last_use[o.index()] = usize::MAX;
        }
        let cx = Cx { max_groups: gpu.max_groups(), matvec };
        let matrix = |n: NodeId, bufs: &[Buf]| -> Matrix {
            let src = graph.node(n);
            match src.op {
                Op::Param { id } => {
                    let p = &params[id.0 as usize];
                    Matrix { dtype: p.desc.dtype, cols: rows_cols(&p.desc.shape).1, row_bytes: p.row_bytes, pages: p.pages.iter().enumerate().map(|(k, pg)| (Buf::Param(id, k), pg.row0, pg.rows)).collect() }
                }
                _ => {
                    let (rows, cols) = rows_cols(&src.shape);
                    Matrix { dtype: DType::F32, cols, row_bytes: cols * 4, pages: vec![(bufs[n.index()], 0, rows)] }
                }
            }
        };
        // A MatMul that runs as a fusable matvec (its weight a param: activations are not).
        let fusable = |n: NodeId| -> bool {
            let node = graph.node(n);
            let w = graph.node(node.inputs[1]);
            fuse && matches!(w.op, Op::Param { .. }) && kernels::matmul::fusable(&matrix(node.inputs[1], &[]), rows_cols(&node.shape).0)
        };
        let roles = if fuse { fuse::plan(graph, &fusable) } else { vec![Role::Own; nodes.len()] };
        let mut pool = Pool::default();
        let mut inputs: Vec<Option<wgpu::Buffer>> = (0..graph.n_inputs()).map(|_| None).collect();
        // Each node's buffer; a fused step's leader assigns those of the later nodes it computes.
        // Params are known up front (a fused step may write a cache param met later in the graph).
        let mut bufs: Vec<Buf> = nodes.iter().map(|n| if let Op::Param { id } = n.op { Buf::Param(id, 0) } else { Buf::Dummy }).collect();
        let mut steps: Vec<Step> = Vec::new();
        // Activations rounded for quantized matmuls, by (source node, kind): q, k and v (gate
        // and up) read one copy. Released with their source.
        let mut rounded: HashMap<(NodeId, u32), usize> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            let ins: Vec<Buf> = node.inputs.iter().map(|n| bufs[n.index()]).collect();
            let role = &roles[i];
            let take = |pool: &mut Pool, n: NodeId| -> Result<Buf> { Ok(Buf::Pool(pool.take(gpu, bytes_of(&graph.node(n).shape))?)) };
            if *role != Role::Done {
                bufs[i] = match (&node.op, role) {
                    (Op::Input { slot }, _) => {
                        let size = (bytes_of(&node.shape) as u64).next_multiple_of(16).max(16);
                        inputs[*slot] = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("input"), size, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false }));
                        Buf::Input(*slot)
                    }
                    (Op::Param { id }, _) => Buf::Param(*id, 0),
                    (Op::ScatterRows, _) => ins[0],
                    // The product itself is never stored: only what its reader makes of it.
                    (_, Role::Resid { .. } | Role::Gated { .. }) => Buf::Dummy,
                    // q is stored only rounded, as the RoundF16 node's value (assigned below).
                    (_, Role::RopeScatter { round_q: Some(_), .. }) => Buf::Dummy,
                    _ => take(&mut pool, NodeId(i as u32))?,
                };
            }
            // Values bound where a single buffer is expected must not be split.
            for (&b, &n) in ins.iter().zip(&node.inputs) {
                if let Buf::Param(id, _) = b {
                    let is_matrix = matches!((&node.op, n == node.inputs[0]), (Op::MatMul, false) | (Op::GetRows, true));
                    if !is_matrix && params[id.0 as usize].pages.len() > 1 {
                        return Err(backend_err(format!("{}: param {} is split into pages and cannot feed {}", node.op.name(), params[id.0 as usize].desc.name, node.op.name())));
                    }
                }
            }
            let t = rows_cols(&node.shape).0;
            let mut ins = ins;
            let fused = node.op == Op::MatMul && role != &Role::Done && fusable(NodeId(i as u32));
            let act_kind = if node.op == Op::MatMul && role != &Role::Done && !fused { kernels::matmul::act_kind(matrix(node.inputs[1], &bufs).dtype) } else { None };
            if let Some(kind) = act_kind {
                let src = node.inputs[0];
                let k = match rounded.get(&(src, kind.0)) {
                    Some(&k) => k,
                    None => {
                        let n = graph.node(src).shape.iter().product::<usize>();
                        let k = pool.take(gpu, n * 4)?;
                        steps.push(kernels::matmul::quantize_act(&cx, kind, n, ins[0], Buf::Pool(k)));
                        rounded.insert((src, kind.0), k);
                        k
                    }
                };
                ins[0] = Buf::Pool(k);
            }
            match (role, &node.op) {
                (Role::Done, _) | (_, Op::Input { .. } | Op::Param { .. }) => {}
                (_, Op::MatMul) if fused => {
                    let mut f = kernels::matmul::Fused { round: true, ..Default::default() };
                    let mut out = bufs[i];
                    match role {
                        Role::Stack(members) => {
                            for &m in members {
                                bufs[m.index()] = take(&mut pool, m)?;
                                f.more.push((matrix(graph.node(m).inputs[1], &bufs), bufs[m.index()]));
                            }
                        }
                        Role::Resid { add, other } => {
                            bufs[add.index()] = take(&mut pool, *add)?;
                            out = bufs[add.index()];
                            f.resid = Some(bufs[other.index()]);
                        }
                        Role::Gated { up, mul, act } => {
                            bufs[mul.index()] = take(&mut pool, *mul)?;
                            out = bufs[mul.index()];
                            f.more.push((matrix(graph.node(*up).inputs[1], &bufs), Buf::Scratch(1)));
                            f.gated = *act;
                        }
                        _ => {}
                    }
                    steps.extend(kernels::matmul::matmul_fused(&cx, &matrix(node.inputs[1], &bufs), t, ins[0], out, &f));
                }
                (Role::RopeScatter { k_rope, k_scatter, v_scatter, round_q }, _) => {
                    let (kr, ks, vs) = (graph.node(*k_rope), graph.node(*k_scatter), graph.node(*v_scatter));
                    bufs[k_scatter.index()] = bufs[ks.inputs[0].index()];
                    bufs[v_scatter.index()] = bufs[vs.inputs[0].index()];
                    let q_out = match round_q {
                        Some(r) => {
                            bufs[r.index()] = take(&mut pool, *r)?;
                            bufs[r.index()]
                        }
                        None => bufs[i],
                    };
                    let (cache_rows, k_cols) = rows_cols(&ks.shape);
                    let (k, v, slots) = (bufs[kr.inputs[0].index()], bufs[vs.inputs[1].index()], bufs[ks.inputs[2].index()]);
                    let caches = kernels::rope::Caches { k: bufs[k_scatter.index()], v: bufs[v_scatter.index()], rows: cache_rows, cols: k_cols, f16: ks.dtype == DType::F16 };
                    steps.extend(kernels::rope::build_scatter(&cx, node, &ins, q_out, round_q.is_some(), k, v, slots, caches));
                }
                (_, Op::MatMul) => steps.extend(kernels::matmul::matmul(&cx, &matrix(node.inputs[1], &bufs), t, ins[0], bufs[i])),
                (_, Op::GetRows) => steps.extend(kernels::matmul::get_rows(&cx, &matrix(node.inputs[0], &bufs), t, ins[1], bufs[i])),
                (_, Op::RmsNorm { .. }) => steps.extend(kernels::rms_norm::build(&cx, node, graph.node(node.inputs[1]).shape[0], &ins, bufs[i])),
                (_, Op::Rope { .. }) => steps.extend(kernels::rope::build(&cx, node, &ins, bufs[i])),
                (_, Op::Attention { .. }) => steps.extend(kernels::attention::build(&cx, graph, node, &ins, bufs[i])),
                _ => steps.extend(kernels::elementwise::build(&cx, graph, node, &ins, bufs[i])),
            }
            for &inp in &node.inputs {
                if last_use[inp.index()] == i {
                    if let Buf::Pool(k) = bufs[inp.index()] {
                        pool.give_back(k);
                    }
                    for kind in [0, 1] {
                        if let Some(k) = rounded.remove(&(inp, kind)) {
                            pool.give_back(k);
                        }
                    }
                }
            }
            if last_use[i] == i {
                if let Buf::Pool(k) = bufs[i] {
                    pool.give_back(k);
                }
            }
        }
        if poison {
            for b in &pool.buffers {
                gpu.queue.write_buffer(b, 0, &vec![0xFFu8; b.size() as usize]);
            }
        }

        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("dummy"), size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        let scratch = [0, 1].map(|_| gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("scratch"), size: 16, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }));
        let stride = (gpu.limits.min_uniform_buffer_offset_alignment as u64).max(UNIFORM_BYTES);
        let uniforms = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("plan uniforms"),
            size: stride * steps.len().max(1) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut dispatches = Vec::with_capacity(steps.len());
        for (k, step) in steps.iter().enumerate() {
            let mut words = [0u32; (UNIFORM_BYTES / 4) as usize];
            words[..step.uniforms.len()].copy_from_slice(&step.uniforms);
            gpu.queue.write_buffer(&uniforms, k as u64 * stride, bytemuck::cast_slice(&words));
            let pipeline = pipelines.get(gpu, &step.kernel)?;
            let resolve = |b: Buf| -> &wgpu::Buffer {
                match b {
                    Buf::Param(id, page) => &params[id.0 as usize].pages[page].buffer,
                    Buf::Pool(i) => &pool.buffers[i],
                    Buf::Input(s) => inputs[s].as_ref().expect("input slots are created before they are read"),
                    Buf::Dummy => &dummy,
                    Buf::Scratch(i) => &scratch[i as usize],
                }
            };
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &uniforms, offset: k as u64 * stride, size: std::num::NonZeroU64::new(UNIFORM_BYTES) }),
            }];
            entries.extend(step.binds.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: resolve(b).as_entire_binding() }));
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(step.kernel.entry), layout: &pipeline.get_bind_group_layout(0), entries: &entries });
            dispatches.push(Dispatch { pipeline, bind_group, groups: step.groups });
        }

        let outputs: Vec<Output> = graph
            .outputs()
            .iter()
            .map(|&o| {
                let n = graph.node(o);
                // A cache kept in f16 or q8_0 comes back in its own layout, padded to whole words.
                let len = match n.dtype {
                    DType::F32 | DType::U32 => bytes_of(&n.shape),
                    d => d.tensor_bytes(&n.shape)?,
                };
                Ok(Output { buf: bufs[o.index()], bytes: (len as u64).next_multiple_of(4), len, shape: n.shape.clone(), dtype: n.dtype })
            })
            .collect::<Result<_>>()?;
        let total: u64 = outputs.iter().map(|o| o.bytes).sum();
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("staging"), size: total.max(4), usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        tracing::debug!("wgpu plan: {} nodes, {} dispatches, {} activation buffers", nodes.len(), dispatches.len(), pool.buffers.len());
        Ok(Plan { dispatches, inputs, outputs, pool, staging, _uniforms: uniforms, dummy, _scratch: scratch })
    }

    /// Device memory the plan holds (activations, inputs, staging).
    pub fn bytes(&self) -> u64 {
        self.pool.buffers.iter().chain(self.inputs.iter().flatten()).chain([&self.staging]).map(|b| b.size()).sum()
    }

    /// Kernel launches per run.
    pub fn launches(&self) -> usize {
        self.dispatches.len()
    }

    /// Writes the inputs and records one submission: every dispatch, then the output copies.
    pub fn submit(&self, gpu: &Gpu, params: &[Param], inputs: &[HostTensor]) {
        for (buf, t) in self.inputs.iter().zip(inputs) {
            if let Some(b) = buf {
                gpu.queue.write_buffer(b, 0, t.as_bytes());
            }
        }
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("forward"), timestamp_writes: None });
            for d in &self.dispatches {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
        }
        let mut off = 0;
        for o in &self.outputs {
            let src = match o.buf {
                Buf::Param(id, page) => &params[id.0 as usize].pages[page].buffer,
                Buf::Pool(i) => &self.pool.buffers[i],
                Buf::Input(s) => self.inputs[s].as_ref().expect("input buffer"),
                Buf::Dummy | Buf::Scratch(_) => &self.dummy,
            };
            enc.copy_buffer_to_buffer(src, 0, &self.staging, off, o.bytes);
            off += o.bytes;
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// Reads the outputs of the last submission.
    pub async fn outputs(&self, gpu: &Gpu) -> Result<Vec<HostTensor>> {
        let total: u64 = self.outputs.iter().map(|o| o.bytes).sum();
        let bytes = super::readback::read(&gpu.device, &self.staging, total).await?;
        let mut off = 0;
        self.outputs
            .iter()
            .map(|o| {
                let b = bytes[off..off + o.len].to_vec();
                off += o.bytes as usize;
                HostTensor::from_bytes(o.dtype, o.shape.clone(), b)
            })
            .collect()
    }
}
