//! Bandwidth microbenchmarks for `forge doctor`. Decode speed is bounded by how fast the weights
//! stream from memory (a 4-bit 1B model reads ~0.6 GB per token), so GB/s is the number that
//! predicts tokens/s. Reported as bytes copied per second (each byte is read once and written once).

use std::time::Instant;

/// Best of `reps` copies of a `bytes`-sized buffer in host memory, GB/s.
pub fn cpu_copy_gbps(bytes: usize, reps: usize) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let mut best = f64::MAX;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e9
}

/// GPU-to-GPU copies with `copy_buffer_to_buffer`, timed on the host from submission to a
/// completed readback of a few bytes of the destination, GB/s. One warm-up pass first.
#[cfg(not(target_arch = "wasm32"))]
pub fn wgpu_copy_gbps(adapter: &wgpu::Adapter, bytes: u64, reps: u32) -> Result<f64, String> {
    let limits = adapter.limits();
    let bytes = bytes.min(limits.max_buffer_size).min(limits.max_storage_buffer_binding_size) & !255;
    let desc = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| e.to_string())?;
    let buffer = |usage| device.create_buffer(&wgpu::BufferDescriptor { label: Some("bench"), size: bytes, usage, mapped_at_creation: false });
    let src = buffer(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let dst = buffer(wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let readback = device.create_buffer(&wgpu::BufferDescriptor { label: Some("readback"), size: 256, usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ, mapped_at_creation: false });
    queue.write_buffer(&src, 0, &vec![1u8; bytes as usize]);
    let pass = |n: u32| -> Result<f64, String> {
        let t = Instant::now();
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bench") });
        for _ in 0..n {
            enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
        }
        enc.copy_buffer_to_buffer(&dst, 0, &readback, 0, 256);
        queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        readback.unmap();
        Ok(t.elapsed().as_secs_f64())
    };
    pass(1)?;
    let secs = pass(reps.max(1))?;
    Ok(bytes as f64 * reps.max(1) as f64 / secs / 1e9)
}

/// Deterministic pseudo-random token ids for throughput benchmarks (what llama-bench feeds too):
/// xorshift64, its state mixed from `seed` so that every seed gives its own sequence. Native
/// `forge bench` and the browser's bench mode use this one function, so they measure the same work.
pub fn synthetic_tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x2545_F491_4F6C_DD1D) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab.max(1) as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn synthetic_tokens_are_deterministic_per_seed_and_in_the_vocabulary() {
        let a = super::synthetic_tokens(64, 49152, 2);
        assert_eq!(a, super::synthetic_tokens(64, 49152, 2));
        for other in [0, 1, 3, 4] {
            assert_ne!(a, super::synthetic_tokens(64, 49152, other), "seed {other} repeats seed 2");
        }
        assert!(a.iter().all(|&t| t < 49152));
    }
}
