//! The stop button. `generate_async` runs to an end token, a stop string or the token limit;
//! to end it sooner, the session's backend is wrapped so that, once stop is requested, the next
//! forward pass fails with [`STOPPED`] before anything is submitted to the GPU. The readback in
//! flight always completes, so the device is never left with a buffer mapped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use forge_engine::backend::{Backend, BoxFuture, ParamDesc, ParamId};
use forge_engine::graph::{Graph, Op};
use forge_engine::tensor::HostTensor;
use forge_engine::{DType, ForgeError, Result};

/// The `what` of the error a stopped generation ends with.
pub const STOPPED: &str = "stopped by the user";

/// Shared between the backend wrapper and the `Forge` object the page holds.
#[derive(Clone, Default)]
pub struct StopSignal {
    requested: Arc<AtomicBool>,
    /// The page unloaded the model during a generation: drop the session when it ends.
    unload: Arc<AtomicBool>,
    /// Forward passes started since the last reset (the tokens a stopped run produced).
    forwards: Arc<AtomicUsize>,
}

impl StopSignal {
    pub fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    pub fn request_unload(&self) {
        self.unload.store(true, Ordering::Relaxed);
        self.request();
    }

    pub fn unload_requested(&self) -> bool {
        self.unload.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.requested.store(false, Ordering::Relaxed);
        self.forwards.store(0, Ordering::Relaxed);
    }

    pub fn forwards(&self) -> usize {
        self.forwards.load(Ordering::Relaxed)
    }

    pub fn is_stop(e: &ForgeError) -> bool {
        matches!(e, ForgeError::Backend { what, .. } if what == STOPPED)
    }
}

pub struct Stoppable<B> {
    pub inner: B,
    pub signal: StopSignal,
}

impl<B: Backend> Backend for Stoppable<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn device(&self) -> String {
        self.inner.device()
    }

    fn supports(&self, op: &Op, dtype: DType) -> bool {
        self.inner.supports(op, dtype)
    }

    fn create_param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> Result<ParamId> {
        self.inner.create_param(desc, data)
    }

    fn execute(&mut self, graph: &Graph, inputs: &[HostTensor]) -> Result<Vec<HostTensor>> {
        self.inner.execute(graph, inputs)
    }

    fn execute_async<'a>(
        &'a mut self,
        graph: &'a Graph,
        inputs: &'a [HostTensor],
    ) -> BoxFuture<'a, Result<Vec<HostTensor>>> {
        if self.signal.requested.load(Ordering::Relaxed) {
            return Box::pin(async {
                Err(ForgeError::Backend {
                    backend: "web".into(),
                    what: STOPPED.into(),
                })
            });
        }
        self.signal.forwards.fetch_add(1, Ordering::Relaxed);
        self.inner.execute_async(graph, inputs)
    }

    fn last_launches(&self) -> Option<usize> {
        self.inner.last_launches()
    }

    fn memory_used(&self) -> Option<u64> {
        self.inner.memory_used()
    }
}
