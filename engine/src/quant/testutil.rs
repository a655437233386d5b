//! Helpers shared by the format tests: seeded random rows and error measures.

use super::{dequantize_row, quantize_row};
use crate::DType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` values uniform in [−1, 1), reproducible from `seed`.
pub(crate) fn random_row(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub(crate) fn max_by_abs(x: &[f32]) -> f32 {
    x.iter()
        .copied()
        .fold(0.0, |m, v| if v.abs() > m.abs() { v } else { m })
}

pub(crate) fn max_abs_diff(x: &[f32], y: &[f32]) -> f32 {
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

pub(crate) fn rmse(x: &[f32], y: &[f32]) -> f32 {
    (x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / x.len() as f32).sqrt()
}

/// Quantizes `nblocks` blocks of random data (several seeds, some rows scaled or shifted so
/// blocks are not all alike), dequantizes, and asserts `ok(block_in, block_out)` per block.
pub(crate) fn round_trip(dtype: DType, nblocks: usize, ok: impl Fn(&[f32], &[f32]) -> bool) {
    let bl = dtype.block_len();
    let n = nblocks * bl;
    for seed in 0..8u64 {
        let mut x = random_row(seed, n);
        // Seeds 4.. get a per-block scale and offset, so scales and minimums vary.
        if seed >= 4 {
            for (b, blk) in x.chunks_mut(bl).enumerate() {
                let (s, o) = (0.1 + b as f32 * 0.7, if b % 2 == 1 { 0.5 } else { 0.0 });
                blk.iter_mut().for_each(|v| *v = *v * s + o);
            }
        }
        let mut q = vec![0u8; dtype.row_bytes(n).unwrap()];
        quantize_row(dtype, &x, &mut q);
        let mut y = vec![0.0f32; n];
        dequantize_row(dtype, &q, &mut y);
        for (b, (xb, yb)) in x.chunks(bl).zip(y.chunks(bl)).enumerate() {
            // Normalise the block to [−1, 1]-ish so absolute bounds written for that range hold.
            let s = max_by_abs(xb).abs().max(1e-30);
            let xs: Vec<f32> = xb.iter().map(|v| v / s).collect();
            let ys: Vec<f32> = yb.iter().map(|v| v / s).collect();
            assert!(
                ok(&xs, &ys),
                "{dtype} seed {seed} block {b}: max err {} rmse {}",
                max_abs_diff(&xs, &ys),
                rmse(&xs, &ys)
            );
        }
    }
}

/// All-zero blocks come back as exact zeros; a lone spike in a zero block comes back close.
pub(crate) fn degenerate_blocks(dtype: DType) {
    let n = dtype.block_len() * 2;
    let mut q = vec![0xAAu8; dtype.row_bytes(n).unwrap()];
    let mut y = vec![1.0f32; n];
    quantize_row(dtype, &vec![0.0; n], &mut q);
    dequantize_row(dtype, &q, &mut y);
    assert!(
        y.iter().all(|&v| v == 0.0),
        "{dtype}: zeros do not round-trip"
    );
    let mut x = vec![0.0f32; n];
    x[37] = -3.0;
    x[n - 1] = 0.25;
    quantize_row(dtype, &x, &mut q);
    dequantize_row(dtype, &q, &mut y);
    assert!(
        max_abs_diff(&x, &y) < 0.02 * 3.0,
        "{dtype}: spikes {:?} {:?}",
        (y[37], y[n - 1]),
        max_abs_diff(&x, &y)
    );
}
