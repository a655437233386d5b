//! Params: tensors that live on a backend for the life of a session (weights, KV caches). A
//! graph names them by the handle the backend gave out; they are described here, with the graph,
//! so that the graph needs nothing from the backends that run it.

use crate::dtype::{DType, SizeError};

/// A param's handle, given out by the backend that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Read-only, uploaded once from the model file.
    Weight,
    /// Read-write, zero-filled at creation (a KV cache); written by `ScatterRows`.
    State,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub kind: ParamKind,
}

impl ParamDesc {
    pub fn bytes(&self) -> Result<usize, SizeError> {
        self.dtype.tensor_bytes(&self.shape)
    }
}

