//! The CPU as the CPU backend sees it: model name, threads, SIMD features the kernels can use,
//! and memory (Linux `/proc`; unknown elsewhere).

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CpuInfo {
    /// `/proc/cpuinfo`'s `model name`, or the architecture when unknown.
    pub model: String,
    pub arch: &'static str,
    /// Threads the OS lets this process use.
    pub threads: usize,
    /// SIMD extensions detected at run time (`avx2`, `fma`, `avx512f`, `f16c`, `neon`).
    pub simd: Vec<&'static str>,
    /// `MemTotal`, bytes.
    pub ram_total: Option<u64>,
    /// `MemAvailable`, bytes: what a model can take without pushing others into swap.
    pub ram_available: Option<u64>,
}

pub fn probe() -> CpuInfo {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (model, ram_total, ram_available) = read_proc();
    CpuInfo { model: model.unwrap_or_else(|| std::env::consts::ARCH.to_string()), arch: std::env::consts::ARCH, threads, simd: simd_features(), ram_total, ram_available }
}

#[cfg(not(target_arch = "wasm32"))]
fn read_proc() -> (Option<String>, Option<u64>, Option<u64>) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    (cpu_model(&cpuinfo), meminfo_bytes(&meminfo, "MemTotal"), meminfo_bytes(&meminfo, "MemAvailable"))
}

#[cfg(target_arch = "wasm32")]
fn read_proc() -> (Option<String>, Option<u64>, Option<u64>) {
    (None, None, None)
}

#[allow(clippy::vec_init_then_push, unused_mut)] // no feature is pushed on other targets (wasm)
fn simd_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        if is_x86_feature_detected!("f16c") {
            f.push("f16c");
        }
        if is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            f.push("neon");
        }
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            f.push("dotprod");
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    f.push("simd128");
    f
}

/// The first `model name` (x86) or `Model`/`Hardware` (ARM boards) line of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

/// A `/proc/meminfo` field (`MemTotal:  16318480 kB`) in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut parts = v.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => n * 1024,
            _ => n,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let mem = "MemTotal:       16318480 kB\nMemFree:         1000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_bytes(mem, "MemTotal"), Some(16318480 * 1024));
        assert_eq!(meminfo_bytes(mem, "MemAvailable"), Some(8000000 * 1024));
        assert_eq!(meminfo_bytes(mem, "SwapTotal"), None);
        let cpu = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpu).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model("processor : 0\nHardware : BCM2835\n").as_deref(), Some("BCM2835"));
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn probe_sees_at_least_one_thread() {
        let c = probe();
        assert!(c.threads >= 1);
        assert!(!c.model.is_empty());
    }
}
