//! Backends execute whole graphs. Model code never names a backend; backends never name a model.
//!
//! A backend owns its params (weights uploaded once, state buffers such as a KV cache) for the
//! life of a session, and says which (op, dtype) pairs it can run so that a graph it cannot run
//! is refused before anything executes.

pub mod cpu;
pub mod fault;
pub mod probe_cuda;
pub mod plan_cache;
#[cfg(test)]
mod test_util;
#[cfg(not(target_arch = "wasm32"))]
pub mod cuda;
pub mod wgpu;

use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::graph::{Graph, KvLayout, NodeId, Op};
use crate::tensor::HostTensor;

/// A boxed future, not `Send`: on wasm GPU futures are tied to the page's one thread.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

pub use crate::graph::{ParamDesc, ParamId, ParamKind};

pub trait Backend: Send {
    /// Short name: `cpu`, `wgpu`, `cuda`.
    fn name(&self) -> &'static str;
    /// The device as a person would name it (`AMD Ryzen 9 (16 threads)`, `llvmpipe (Vulkan)`).
    fn device(&self) -> String;
    /// Whether the backend can run `op` when its weight (or first) input has type `dtype`.
    fn supports(&self, op: &Op, dtype: DType) -> bool;
    /// Creates a param. A weight's bytes come in `data` (its stored format); a state is zeroed.
    fn create_param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> Result<ParamId>;
    /// Runs the graph with `inputs` bound to its `Input` slots, returning its outputs in order.
    fn execute(&mut self, graph: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>>;
    /// `execute` for callers that must not block (the browser, where a GPU readback completes
    /// only when the event loop runs). Backends whose results arrive asynchronously (wgpu's
    /// `map_async`) implement it directly; for the others it is `execute`.
    fn execute_async<'a>(&'a mut self, graph: &'a Graph, inputs: &'a [HostTensor]) -> BoxFuture<'a, Result<Vec<HostTensor>>> {
        Box::pin(std::future::ready(self.execute(graph, inputs)))
    }
    /// Kernel launches (dispatches) of the last `execute`, where the backend counts them.
    fn last_launches(&self) -> Option<usize> {
        None
    }
    /// Bytes of device memory this backend holds (weights, caches, plans), where it knows.
    fn memory_used(&self) -> Option<u64> {
        None
    }
}

/// Refuses a graph containing an (op, dtype) pair the backend does not support.
pub fn check_supported(backend: &dyn Backend, graph: &Graph) -> Result<()> {
    for node in graph.nodes() {
        let dtype = node.inputs.iter().map(|&i| graph.node(i).dtype).find(|d| *d != DType::F32 && *d != DType::U32).unwrap_or(node.dtype);
        if !matches!(node.op, Op::Input { .. } | Op::Param { .. }) && !backend.supports(&node.op, dtype) {
            return Err(ForgeError::Unsupported { op: node.op.name(), dtype, backend: backend.name().to_string() });
        }
    }
    Ok(())
}

/// Validates `inputs` against the graph's `Input` nodes (count, shape, dtype), and every index an
/// input supplies against what it indexes: `get_rows` ids, `scatter_rows` destinations, attention
/// positions, block-table entries. Every backend's `execute` calls this first, so no kernel reads
/// or writes outside a buffer whoever built the batch (a GPU would do so silently, and a row
/// written past a sequence's blocks lands in another sequence's cache).
pub fn check_inputs(graph: &Graph, inputs: &[HostTensor]) -> Result<()> {
    check_input_shapes(graph, inputs)?;
    check_indices(graph, inputs)
}

/// The first value of input `id` that is `>= limit`, if `id` is an input.
fn index_past(graph: &Graph, inputs: &[HostTensor], id: NodeId, limit: usize) -> Option<u32> {
    let Op::Input { slot } = graph.node(id).op else { return None };
    // Read in place: this runs before every execute, over every block table.
    inputs[slot].u32s().find(|&i| i as usize >= limit)
}

fn check_indices(graph: &Graph, inputs: &[HostTensor]) -> Result<()> {
    let rows = |id: NodeId| graph.node(id).shape.first().copied().unwrap_or(0);
    let bad = |what: String| Err(ForgeError::Graph { what });
    for node in graph.nodes() {
        let ins = &node.inputs;
        match node.op {
            Op::GetRows => {
                if let Some(i) = index_past(graph, inputs, ins[1], rows(ins[0])) {
                    return bad(format!("get_rows: id {i} is outside the {} rows of the table", rows(ins[0])));
                }
            }
            Op::ScatterRows => {
                if let Some(i) = index_past(graph, inputs, ins[2], rows(ins[0])) {
                    return bad(format!("scatter_rows: row {i} is outside the {} rows of the destination", rows(ins[0])));
                }
            }
            Op::Attention { kv, .. } => {
                let keys = rows(ins[1]);
                let (reach, table) = match kv {
                    KvLayout::Contiguous => (keys, None),
                    KvLayout::Paged { block_size } => {
                        let cols = graph.node(ins[4]).shape[1];
                        (cols * block_size, Some((ins[4], keys / block_size)))
                    }
                };
                if let Some(&p) = ins.get(3)
                    && let Some(i) = index_past(graph, inputs, p, reach)
                {
                    return bad(format!("attention: position {i} is past the {reach} keys it can reach"));
                }
                if let Some((t, n_blocks)) = table
                    && let Some(b) = index_past(graph, inputs, t, n_blocks)
                {
                    return bad(format!("attention: block {b} of a block table is outside the {n_blocks} blocks of the KV pool"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_input_shapes(graph: &Graph, inputs: &[HostTensor]) -> Result<()> {
    if inputs.len() != graph.n_inputs() {
        return Err(ForgeError::Graph { what: format!("graph takes {} inputs, got {}", graph.n_inputs(), inputs.len()) });
    }
    for node in graph.nodes() {
        if let Op::Input { slot } = node.op {
            let t = &inputs[slot];
            if t.shape != node.shape || t.dtype != node.dtype {
                return Err(ForgeError::Graph {
                    what: format!("input {slot}: expected {} {:?}, got {} {:?}", node.dtype, node.shape, t.dtype, t.shape),
                });
            }
        }
    }
    Ok(())
}

/// The params a session created on its backend, by name.
#[derive(Clone, Debug, Default)]
pub struct ParamTable {
    map: std::collections::HashMap<String, (ParamId, ParamDesc)>,
}

impl ParamTable {
    pub fn insert(&mut self, id: ParamId, desc: ParamDesc) {
        self.map.insert(desc.name.clone(), (id, desc));
    }

    pub fn get(&self, name: &str) -> Result<&(ParamId, ParamDesc)> {
        self.map.get(name).ok_or_else(|| ForgeError::MissingTensor { name: name.to_string() })
    }

    /// Adds a node for the param `name` to `graph`.
    pub fn node(&self, graph: &mut Graph, name: &str) -> Result<crate::graph::NodeId> {
        let (id, desc) = self.get(name)?;
        Ok(graph.param(*id, desc))
    }
}
