//! The one way results come back from the device: `map_async` on a staging buffer, its callback
//! sending the outcome through a one-shot channel, and a future that waits for it. On the web the
//! browser's event loop runs the callback; natively `device.poll(wait)` blocks until the
//! submission is done and the callback has run (no busy loop), after which the future is ready.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::device::backend_err;
use crate::error::Result;

#[derive(Default)]
struct Slot {
    done: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// Resolves when the map callback has run.
struct Mapped(Arc<Mutex<Slot>>);

impl Future for Mapped {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().expect("map slot lock");
        match s.done.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Reads the first `len` bytes of a `MAP_READ` staging buffer whose copy has been submitted.
pub(super) async fn read(device: &wgpu::Device, staging: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
    let slot = Arc::new(Mutex::new(Slot::default()));
    let tx = slot.clone();
    staging.slice(..len).map_async(wgpu::MapMode::Read, move |r| {
        let mut s = tx.lock().expect("map slot lock");
        s.done = Some(r);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| backend_err(format!("waiting for the device: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    let _ = device;
    Mapped(slot).await.map_err(|e| backend_err(format!("reading results back: {e}")))?;
    let bytes = staging.slice(..len).get_mapped_range().map_err(|e| backend_err(format!("reading results back: {e}")))?.to_vec();
    staging.unmap();
    Ok(bytes)
}
