//! `/metrics` in Prometheus' text format: the server's own counters (requests by endpoint and
//! status, latency histograms) beside the engine's (tokens, queue, batch, KV blocks).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use forge_engine::batching::EngineStats;

/// Seconds. Time to first token spans queueing and prefill: milliseconds to many seconds.
const TTFT_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Seconds between two tokens of one sequence: one batched step.
const ITL_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A fixed-bucket histogram, lock-free so that recording never waits on a scrape.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one for +Inf.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.iter().position(|&b| s <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

pub(crate) struct Metrics {
    /// (endpoint, status) → requests answered.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub ttft: Histogram,
    pub itl: Histogram,
    /// Sequences that ended because their client went away.
    pub disconnects: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { requests: Mutex::new(BTreeMap::new()), ttft: Histogram::new(TTFT_BOUNDS), itl: Histogram::new(ITL_BOUNDS), disconnects: AtomicU64::new(0) }
    }
}

/// The label for a request path: the known endpoints, everything else as `other` (so that
/// scanners probing random paths cannot grow the label set without bound).
pub(crate) fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p == "/v1/models" || p.starts_with("/v1/models/") => "/v1/models",
        _ => "other",
    }
}

impl Metrics {
    pub fn count_request(&self, endpoint: &'static str, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((endpoint, status)).or_default() += 1;
    }

    pub fn render(&self, s: &EngineStats) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP forge_requests_total HTTP requests answered, by endpoint and status.\n# TYPE forge_requests_total counter\n");
        for ((endpoint, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "forge_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric("forge_prompt_tokens_total", "counter", "Prompt tokens processed.", s.prompt_tokens as f64);
        metric("forge_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache instead of computed.", s.cached_prompt_tokens as f64);
        metric("forge_generation_tokens_total", "counter", "Tokens generated.", s.generated_tokens as f64);
        metric("forge_engine_steps_total", "counter", "Batched forward passes run.", s.steps as f64);
        metric("forge_client_disconnects_total", "counter", "Sequences cancelled because their client went away.", self.disconnects.load(Ordering::Relaxed) as f64);
        metric("forge_queue_depth", "gauge", "Requests waiting for a free sequence.", s.queued as f64);
        metric("forge_running_sequences", "gauge", "Sequences in the batch.", s.running as f64);
        metric("forge_kv_blocks_used", "gauge", "KV-cache blocks held by sequences.", s.kv_blocks_used as f64);
        metric("forge_kv_blocks_total", "gauge", "KV-cache blocks in the pool.", s.kv_blocks_total as f64);
        metric("forge_kv_block_size", "gauge", "Tokens per KV-cache block.", s.block_size as f64);
        metric("forge_engine_up", "gauge", "1 while the engine runs, 0 once it has failed.", if s.failed.is_some() { 0.0 } else { 1.0 });
        self.ttft.render(&mut out, "forge_time_to_first_token_seconds", "Time from a request's arrival to its first generated token, per sequence.");
        self.itl.render(&mut out, "forge_inter_token_latency_seconds", "Time between consecutive tokens of one sequence.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        for ms in [50, 50, 500, 5000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum 5.6\n") && out.contains("x_count 4\n"), "{out}");
    }
}
