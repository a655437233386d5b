//! Device memory: params (weights split into pages of rows, KV-cache states) and the pool a plan
//! draws its activation buffers from.
//!
//! **Architecture Invariant:** a param is uploaded once and never moved; activations are
//! allocated when a plan is built and reused by every run of it. Nothing is allocated per token.
//!
//! Every buffer is one word longer than its contents, so a kernel may read the 32-bit word
//! straddling the last byte of an unaligned block (Q4_0, Q8_0, Q6_K) without leaving it.

use wgpu::util::DeviceExt;

use super::device::{Gpu, backend_err, scoped};
use crate::backend::{ParamDesc, ParamKind};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::rows_cols;
use crate::tensor::HostTensor;

/// Rows `row0..row0 + rows` of a param, in a buffer of their own.
pub(super) struct Page {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

pub(super) struct Param {
    pub desc: ParamDesc,
    pub row_bytes: usize,
    pub pages: Vec<Page>,
}

fn padded(bytes: usize) -> u64 {
    (bytes as u64 + 4).next_multiple_of(4).max(16)
}

/// Uploads a weight (split by rows into pages of at most `page_bytes`) or creates a zeroed state.
pub(super) fn create_param(gpu: &Gpu, desc: &ParamDesc, data: Option<&HostTensor>, page_bytes: u64) -> Result<Param> {
    let (rows, cols) = rows_cols(&desc.shape);
    let row_bytes = desc.dtype.row_bytes(cols)?;
    let total = desc.bytes()?;
    match (desc.kind, data) {
        (ParamKind::Weight, Some(t)) => {
            if t.dtype != desc.dtype || t.shape != desc.shape {
                return Err(crate::error::ForgeError::TensorShape { name: desc.name.clone(), expected: desc.shape.clone(), found: t.shape.clone() });
            }
            let per_page = (page_bytes as usize).saturating_sub(4) / row_bytes.max(1);
            if per_page == 0 {
                return Err(backend_err(format!("{}: a row of {row_bytes} bytes exceeds a storage binding of {page_bytes}", desc.name)));
            }
            let bytes = t.as_bytes();
            let mut pages = Vec::new();
            let mut row0 = 0;
            while row0 < rows {
                let n = per_page.min(rows - row0);
                let mut contents = bytes[row0 * row_bytes..(row0 + n) * row_bytes].to_vec();
                contents.resize(padded(contents.len()) as usize, 0);
                let buffer = scoped(gpu, total as u64, || {
                    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(&desc.name), contents: &contents, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST })
                })?;
                pages.push(Page { buffer, row0, rows: n });
                row0 += n;
            }
            Ok(Param { desc: desc.clone(), row_bytes, pages })
        }
        (ParamKind::State, None) if DType::KV_TYPES.contains(&desc.dtype) => {
            // scatter_rows.wgsl writes whole words: an f16 row must be pairs of values, a q8_0
            // row an even number of 34-byte blocks.
            if !row_bytes.is_multiple_of(4) {
                return Err(backend_err(format!("state {}: wgpu writes {} cache rows in whole 4-byte words, and a row of {cols} values is {row_bytes} bytes; use --kv-type f32", desc.name, desc.dtype)));
            }
            if total as u64 + 4 > gpu.max_binding() {
                return Err(backend_err(format!("state {} of {total} bytes exceeds a storage binding of {}", desc.name, gpu.max_binding())));
            }
            // Buffers are zero-initialised by wgpu.
            let buffer = scoped(gpu, total as u64, || {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&desc.name),
                    size: padded(total),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            })?;
            Ok(Param { desc: desc.clone(), row_bytes, pages: vec![Page { buffer, row0: 0, rows }] })
        }
        _ => Err(backend_err(format!("cannot create param {} ({:?}, {})", desc.name, desc.kind, desc.dtype))),
    }
}

/// Activation buffers of one plan. A buffer returns to the free list after its value's last
/// reader, and a later value of no greater size takes it (best fit), so a forward pass over
/// N layers needs a handful of buffers per size rather than one per node.
#[derive(Default)]
pub(super) struct Pool {
    pub buffers: Vec<wgpu::Buffer>,
    free: Vec<usize>,
}

impl Pool {
    pub fn take(&mut self, gpu: &Gpu, bytes: usize) -> Result<usize> {
        let size = padded(bytes).next_multiple_of(256);
        if size > gpu.max_binding() {
            return Err(backend_err(format!("an activation of {bytes} bytes exceeds a storage binding of {}", gpu.max_binding())));
        }
        let best = self.free.iter().enumerate().filter(|(_, b)| self.buffers[**b].size() >= size).min_by_key(|(_, b)| self.buffers[**b].size());
        if let Some((i, _)) = best {
            return Ok(self.free.swap_remove(i));
        }
        let buffer = scoped(gpu, size, || {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activation"),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        self.buffers.push(buffer);
        Ok(self.buffers.len() - 1)
    }

    pub fn give_back(&mut self, i: usize) {
        self.free.push(i);
    }
}
