//! The CPU backend: the readable reference every other backend is checked against, and the last
//! fallback. One plain function per op (one file each); the executor below walks the graph in
//! order, keeps each intermediate until its last reader has run, and parallelises inside ops
//! on its own worker pool (`pool.rs`). Intermediates freed after their last reader go back to a
//! free list and are reused by later nodes and later passes: fresh large allocations cost page
//! faults (`perf`: 11–16% of a SmolLM2 step went to zeroing new pages).

mod attention;
mod elementwise;
mod get_rows;
mod matmul;
pub mod pool;
mod rms_norm;
mod rope;

pub use attention::{Kv, Paging, attention};
pub use elementwise::{add, argmax, gelu_mul, gelu_tanh, mul, round_f16, scale, silu_mul};
pub use get_rows::get_rows;
pub use matmul::matmul;
pub use rms_norm::rms_norm;
pub use rope::rope;

use std::borrow::Cow;

use super::{Backend, ParamDesc, ParamId, ParamKind, check_inputs, check_supported};
use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::graph::{Graph, KvLayout, NodeId, Op, RopeParams, rows_cols};
use crate::tensor::HostTensor;

enum Param {
    Weight(HostTensor),
    State(State),
}

/// A state param (a KV cache) in the type it was created with.
enum State {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    /// ggml's q8_0 blocks, rows of whole blocks.
    Q8_0(Vec<u8>),
}

impl State {
    fn new(dtype: DType, n: usize) -> Option<State> {
        Some(match dtype {
            DType::F32 => State::F32(vec![0.0; n]),
            DType::F16 => State::F16(vec![half::f16::ZERO; n]),
            DType::Q8_0 => State::Q8_0(vec![0; DType::Q8_0.bytes_for(n).ok()?]),
            _ => return None,
        })
    }

    fn kv(&self) -> Kv<'_> {
        match self {
            State::F32(x) => Kv::F32(x),
            State::F16(x) => Kv::F16(x),
            State::Q8_0(x) => Kv::Q8_0(x),
        }
    }

    /// Writes `src` (rows of `cols`) to rows `positions`, converting to the state's type.
    fn scatter(&mut self, src: &[f32], positions: &[u32], cols: usize) -> Result<()> {
        use half::slice::HalfFloatSliceExt;
        let rows = self.kv().len() / cols.max(1);
        for (row, &p) in src.chunks(cols).zip(positions) {
            let p = p as usize;
            if p >= rows {
                return Err(ForgeError::InvalidArgument { what: format!("scatter_rows: position {p} is outside {rows} rows") });
            }
            match self {
                State::F32(d) => d[p * cols..][..cols].copy_from_slice(row),
                State::F16(d) => d[p * cols..][..cols].convert_from_f32_slice(row),
                State::Q8_0(d) => {
                    let rb = DType::Q8_0.row_bytes(cols)?;
                    crate::quant::quantize_row(DType::Q8_0, row, &mut d[p * rb..][..rb]);
                }
            }
        }
        Ok(())
    }
}

/// What attention reads keys or values from.
enum KvRef<'a> {
    F32(Cow<'a, [f32]>),
    State(&'a State),
}

impl KvRef<'_> {
    fn kv(&self) -> Kv<'_> {
        match self {
            KvRef::F32(x) => Kv::F32(x),
            KvRef::State(s) => s.kv(),
        }
    }
}

/// A computed value: f32 activations, u32 ids, or a reference to a param.
enum Value {
    F32(Vec<f32>),
    U32(Vec<u32>),
    Param(ParamId),
}

pub struct CpuBackend {
    params: Vec<Param>,
    threads: usize,
    /// Created on the first `execute`, so a backend that never runs spawns no threads.
    pool: Option<pool::Pool>,
    /// Quantized activations of the current matmul.
    act: matmul::MatmulScratch,
    /// Freed intermediates, kept for reuse (at most [`FREE_LIST`]).
    free: Vec<Vec<f32>>,
}

/// Freed buffers kept: a decode step of a 30-layer model holds a few at a time, a prefill a few
/// more; beyond this the largest are dropped.
const FREE_LIST: usize = 32;

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend { params: Vec::new(), threads: rayon::current_num_threads(), pool: None, act: Default::default(), free: Vec::new() }
    }

    /// [`new`](Self::new), failing where fault injection says so (`FORGE_FAULT=cpu:init`).
    pub fn try_new() -> Result<Self> {
        crate::backend::fault::check("cpu", crate::backend::fault::Stage::Init)?;
        Ok(Self::new())
    }

    fn f32_of<'a>(&'a self, values: &'a [Option<Value>], _graph: &Graph, id: NodeId) -> Result<Cow<'a, [f32]>> {
        Ok(match self.value(values, id) {
            Value::F32(v) => Cow::Borrowed(v),
            Value::U32(_) => return Err(internal("u32 value read as f32")),
            Value::Param(p) => match &self.params[p.0 as usize] {
                Param::State(State::F32(v)) => Cow::Borrowed(v),
                // Attention reads a cache through `kv_of`, and outputs return it in its own type.
                Param::State(_) => return Err(internal("an f16 or q8_0 cache read as f32 values")),
                // An owned Vec<u8> need not be 4-byte aligned; then the values are copied.
                Param::Weight(t) if t.dtype == DType::F32 => match bytemuck::try_cast_slice(t.as_bytes()) {
                    Ok(v) => Cow::Borrowed(v),
                    Err(_) => Cow::Owned(t.to_f32_vec()),
                },
                Param::Weight(t) => Cow::Owned(t.to_f32_vec()),
            },
        })
    }

    /// Keys or values for attention: a cache as it is kept, or f32 values.
    fn kv_of<'a>(&'a self, values: &'a [Option<Value>], graph: &Graph, id: NodeId) -> Result<KvRef<'a>> {
        if let Value::Param(p) = self.value(values, id)
            && let Param::State(s) = &self.params[p.0 as usize]
        {
            return Ok(KvRef::State(s));
        }
        Ok(KvRef::F32(self.f32_of(values, graph, id)?))
    }

    fn u32_of<'a>(&self, values: &'a [Option<Value>], id: NodeId) -> Result<&'a [u32]> {
        match self.value(values, id) {
            Value::U32(v) => Ok(v),
            _ => Err(internal("expected u32 ids")),
        }
    }

    /// The stored bytes and dtype of a matrix operand (a weight in any format, or f32 values).
    fn matrix_of<'a>(&'a self, values: &'a [Option<Value>], id: NodeId) -> Result<(DType, &'a [u8])> {
        Ok(match self.value(values, id) {
            Value::F32(v) => (DType::F32, bytemuck::cast_slice(v)),
            Value::U32(_) => return Err(internal("u32 value used as a matrix")),
            Value::Param(p) => match &self.params[p.0 as usize] {
                Param::Weight(t) => (t.dtype, t.as_bytes()),
                Param::State(State::F32(v)) => (DType::F32, bytemuck::cast_slice(v)),
                Param::State(_) => return Err(internal("a KV cache used as a matrix")),
            },
        })
    }

    /// A buffer of `n` zeros, reusing the smallest freed one that is large enough.
    fn take(&mut self, n: usize) -> Vec<f32> {
        let best = self.free.iter().enumerate().filter(|(_, b)| b.capacity() >= n).min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
        let mut b = match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::with_capacity(n),
        };
        b.clear();
        b.resize(n, 0.0);
        b
    }

    fn recycle(&mut self, v: Value) {
        if let Value::F32(b) = v {
            self.free.push(b);
            if self.free.len() > FREE_LIST {
                let largest = self.free.iter().enumerate().max_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
                if let Some(i) = largest {
                    self.free.swap_remove(i);
                }
            }
        }
    }

    fn pool(&self) -> &pool::Pool {
        self.pool.as_ref().expect("execute creates the pool before running nodes")
    }

    fn value<'a>(&self, values: &'a [Option<Value>], id: NodeId) -> &'a Value {
        values[id.index()].as_ref().expect("a node's inputs are computed before it and kept until their last reader")
    }

    fn run_node(&mut self, graph: &Graph, id: NodeId, values: &[Option<Value>], inputs: &[HostTensor]) -> Result<Value> {
        let node = graph.node(id);
        let a = |i: usize| node.inputs[i];
        let shape_of = |i: usize| &graph.node(node.inputs[i]).shape;
        let n_out: usize = node.shape.iter().product();
        Ok(match &node.op {
            Op::Input { slot } => {
                let t = &inputs[*slot];
                match t.dtype {
                    DType::U32 => Value::U32(t.to_u32_vec()),
                    _ => Value::F32(t.to_f32_vec()),
                }
            }
            Op::Param { id } => Value::Param(*id),
            Op::GetRows => {
                let mut out = self.take(n_out);
                let (dtype, table) = self.matrix_of(values, a(0))?;
                let (rows, cols) = rows_cols(shape_of(0));
                get_rows(dtype, table, rows, cols, self.u32_of(values, a(1))?, &mut out)?;
                Value::F32(out)
            }
            Op::MatMul => {
                let mut out = self.take(n_out);
                let mut act = std::mem::take(&mut self.act);
                let x = self.f32_of(values, graph, a(0))?;
                let (dtype, w) = self.matrix_of(values, a(1))?;
                let (t, k) = rows_cols(shape_of(0));
                let n = shape_of(1)[0];
                matmul(self.pool(), &mut act, &x, t, k, dtype, w, n, &mut out);
                drop(x);
                self.act = act;
                Value::F32(out)
            }
            Op::Add | Op::Mul | Op::SiluMul | Op::GeluMul => {
                let mut out = self.take(n_out);
                let (x, y) = (self.f32_of(values, graph, a(0))?, self.f32_of(values, graph, a(1))?);
                match node.op {
                    Op::Add => add(&x, &y, &mut out),
                    Op::Mul => mul(&x, &y, &mut out),
                    Op::SiluMul => elementwise::gated_par(self.pool(), silu_mul, &x, &y, &mut out),
                    _ => elementwise::gated_par(self.pool(), gelu_mul, &x, &y, &mut out),
                }
                Value::F32(out)
            }
            Op::RoundF16 => {
                let mut out = self.take(n_out);
                let x = self.f32_of(values, graph, a(0))?;
                round_f16(&x, &mut out);
                Value::F32(out)
            }
            Op::Scale { factor } => {
                let mut out = self.take(n_out);
                let x = self.f32_of(values, graph, a(0))?;
                scale(&x, *factor, &mut out);
                Value::F32(out)
            }
            Op::RmsNorm { eps } => {
                let mut out = self.take(n_out);
                let (x, w) = (self.f32_of(values, graph, a(0))?, self.f32_of(values, graph, a(1))?);
                rms_norm(&x, &w, *eps, &mut out);
                Value::F32(out)
            }
            Op::Rope { layout, head_dim, n_rot, base, freq_scale, factors } => {
                let mut x = self.take(n_out);
                x.copy_from_slice(&self.f32_of(values, graph, a(0))?);
                let ff = if *factors { Some(self.f32_of(values, graph, a(2))?) } else { None };
                let r = RopeParams { layout: *layout, head_dim: *head_dim, n_rot: *n_rot, base: *base, freq_scale: *freq_scale };
                rope(&mut x, self.u32_of(values, a(1))?, ff.as_deref(), r);
                Value::F32(x)
            }
            Op::Attention { n_head, n_kv_head, head_dim, scale, mask, kv } => {
                let mut out = self.take(n_out);
                let q = self.f32_of(values, graph, a(0))?;
                let (k, v) = (self.kv_of(values, graph, a(1))?, self.kv_of(values, graph, a(2))?);
                let positions = if mask.is_causal() { Some(self.u32_of(values, a(3))?) } else { None };
                let paging = match kv {
                    KvLayout::Contiguous => None,
                    KvLayout::Paged { block_size } => Some(Paging { table: self.u32_of(values, a(4))?, cols: shape_of(4)[1], block_size: *block_size }),
                };
                attention(self.pool(), &q, k.kv(), v.kv(), positions, paging, *n_head, *n_kv_head, *head_dim, *scale, *mask, &mut out);
                Value::F32(out)
            }
            Op::ScatterRows => {
                let Value::Param(pid) = self.value(values, a(0)) else { return Err(internal("scatter_rows into a non-param")) };
                let pid = *pid;
                let src = self.f32_of(values, graph, a(1))?.into_owned();
                let positions = self.u32_of(values, a(2))?.to_vec();
                let cols = shape_of(0)[1];
                let Param::State(dst) = &mut self.params[pid.0 as usize] else { return Err(internal("scatter_rows into a weight")) };
                dst.scatter(&src, &positions, cols)?;
                Value::Param(pid)
            }
            Op::SliceRows { start, len } => {
                let mut out = self.take(n_out);
                let x = self.f32_of(values, graph, a(0))?;
                let cols = shape_of(0)[1];
                out.copy_from_slice(&x[start * cols..(start + len) * cols]);
                Value::F32(out)
            }
            Op::Argmax => {
                let x = self.f32_of(values, graph, a(0))?;
                let (_, cols) = rows_cols(shape_of(0));
                let mut out = vec![0u32; n_out];
                argmax(&x, cols, &mut out);
                Value::U32(out)
            }
        })
    }
}

fn internal(what: &str) -> ForgeError {
    ForgeError::Backend { backend: "cpu".into(), what: what.into() }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        format!("CPU ({} threads)", self.threads)
    }

    fn supports(&self, op: &Op, dtype: DType) -> bool {
        match op {
            // Weights of every storage type are read (and dequantized) by these two.
            Op::GetRows | Op::MatMul => DType::WEIGHT_TYPES.contains(&dtype),
            Op::ScatterRows | Op::Attention { .. } => DType::KV_TYPES.contains(&dtype),
            _ => matches!(dtype, DType::F32 | DType::U32),
        }
    }

    fn create_param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> Result<ParamId> {
        crate::backend::fault::check("cpu", crate::backend::fault::Stage::Alloc)?;
        let id = ParamId(self.params.len() as u32);
        let p = match (desc.kind, data) {
            (ParamKind::Weight, Some(t)) => {
                if t.dtype != desc.dtype || t.shape != desc.shape {
                    return Err(ForgeError::TensorShape { name: desc.name.clone(), expected: desc.shape.clone(), found: t.shape.clone() });
                }
                Param::Weight(t.clone())
            }
            (ParamKind::State, None) if DType::KV_TYPES.contains(&desc.dtype) => match State::new(desc.dtype, desc.shape.iter().product()) {
                Some(s) => Param::State(s),
                None => return Err(ForgeError::Backend { backend: "cpu".into(), what: format!("state {} of {} values is not whole {} blocks", desc.name, desc.shape.iter().product::<usize>(), desc.dtype) }),
            },
            _ => return Err(ForgeError::Backend { backend: "cpu".into(), what: format!("cannot create param {} ({:?}, {})", desc.name, desc.kind, desc.dtype) }),
        };
        self.params.push(p);
        Ok(id)
    }

    fn execute(&mut self, graph: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        // The CPU compiles nothing; its "compile" stage is preparing to run a graph.
        crate::backend::fault::check("cpu", crate::backend::fault::Stage::Compile)?;
        check_supported(self, graph)?;
        check_inputs(graph, inputs)?;
        let nodes = graph.nodes();
        let last_use = graph.last_uses();
        if self.pool.is_none() {
            self.pool = Some(pool::Pool::new(self.threads));
        }
        let mut values: Vec<Option<Value>> = (0..nodes.len()).map(|_| None).collect();
        for i in 0..nodes.len() {
            let v = self.run_node(graph, NodeId(i as u32), &values, inputs)?;
            values[i] = Some(v);
            for &inp in &nodes[i].inputs {
                if last_use[inp.index()] == i {
                    if let Some(v) = values[inp.index()].take() {
                        self.recycle(v);
                    }
                }
            }
        }
        let outputs = graph
            .outputs()
            .iter()
            .map(|&o| {
                let node = graph.node(o);
                match self.value(&values, o) {
                    Value::U32(v) => HostTensor::from_u32(node.shape.clone(), v),
                    // A cache kept in f16 or q8_0 is returned in its own layout.
                    Value::Param(p) if node.dtype != DType::F32 => match &self.params[p.0 as usize] {
                        Param::State(State::F16(x)) => HostTensor::from_bytes(DType::F16, node.shape.clone(), bytemuck::cast_slice(x).to_vec()),
                        Param::State(State::Q8_0(x)) => HostTensor::from_bytes(DType::Q8_0, node.shape.clone(), x.clone()),
                        _ => Err(internal("a non-f32 output that is not a cache")),
                    },
                    _ => HostTensor::from_f32(node.shape.clone(), &self.f32_of(&values, graph, o)?),
                }
            })
            .collect();
        for v in values.into_iter().flatten() {
            self.recycle(v);
        }
        outputs
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_refuses_indices_out_of_range() {
        crate::backend::test_util::assert_refuses_out_of_range(&mut super::CpuBackend::new());
    }
}
