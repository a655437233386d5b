//! The peer in `forge bench`: llama.cpp's own `llama-bench`, run on the same model and sizes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::{Row, Stat};
use forge_engine::session::KvType;

/// Whether a llama.cpp backend name (`CPU`, `Vulkan`, `CUDA`, `Metal`) is the same kind of device
/// as one of ours (`cpu`, `wgpu`, `cuda`).
pub fn same_kind(theirs: &str, ours: &str) -> bool {
    let theirs = theirs.to_ascii_lowercase();
    match ours {
        "cpu" => theirs.contains("cpu") && !theirs.contains("vulkan") && !theirs.contains("cuda"),
        "wgpu" => theirs.contains("vulkan") || theirs.contains("metal"),
        "cuda" => theirs.contains("cuda"),
        _ => false,
    }
}

fn stat(entry: &serde_json::Value) -> Option<Stat> {
    let samples: Vec<f64> = entry.get("samples_ts")?.as_array()?.iter().filter_map(|v| v.as_f64()).collect();
    if samples.is_empty() {
        let avg = entry.get("avg_ts")?.as_f64()?;
        return Some(Stat { median: avg, min: avg, max: avg });
    }
    Some(Stat::of(samples))
}

/// Runs `llama-bench -o json` and turns its pp and tg entries into rows (one per backend it ran).
/// Its KV cache is the same type as ours (`-ctk`/`-ctv`; ggml names them as we do).
pub fn llama_bench(bin: &Path, model: &Path, prompt: usize, n_gen: usize, reps: usize, threads: usize, kv_type: KvType) -> anyhow::Result<Vec<Row>> {
    let out = Command::new(bin)
        .args(["-m", &model.display().to_string(), "-p", &prompt.to_string(), "-n", &n_gen.to_string(), "-r", &reps.max(1).to_string(), "-t", &threads.to_string(), "-o", "json"])
        .args(["-ctk", kv_type.name(), "-ctv", kv_type.name()])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} exited with {}: {}", bin.display(), out.status, String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
    }
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).context("parsing llama-bench's JSON")?;
    let mut rows: Vec<Row> = Vec::new();
    for e in &entries {
        let backend = e.get("backends").and_then(|v| v.as_str()).unwrap_or("CPU").to_string();
        let device = e.get("gpu_info").and_then(|v| v.as_str()).filter(|s| !s.is_empty()).or_else(|| e.get("cpu_info").and_then(|v| v.as_str())).unwrap_or("").to_string();
        let n_prompt = e.get("n_prompt").and_then(|v| v.as_u64()).unwrap_or(0);
        let n_gen = e.get("n_gen").and_then(|v| v.as_u64()).unwrap_or(0);
        let Some(s) = stat(e) else { continue };
        let idx = match rows.iter().position(|r| r.backend == backend) {
            Some(i) => i,
            None => {
                let zero = Stat { median: 0.0, min: 0.0, max: 0.0 };
                // llama-bench reports no load time.
                rows.push(Row::timings("llama.cpp".into(), backend.clone(), device, None, zero.clone(), zero));
                rows.len() - 1
            }
        };
        if n_gen > 0 && n_prompt == 0 {
            rows[idx].tg_tok_s = s;
        } else if n_prompt > 0 && n_gen == 0 {
            rows[idx].pp_tok_s = s;
        }
    }
    if rows.is_empty() {
        bail!("llama-bench printed no pp/tg results");
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backend_kinds_pair_up() {
        assert!(super::same_kind("CPU", "cpu"));
        assert!(super::same_kind("Vulkan", "wgpu"));
        assert!(!super::same_kind("Vulkan", "cpu"));
        assert!(super::same_kind("CUDA", "cuda"));
    }
}
