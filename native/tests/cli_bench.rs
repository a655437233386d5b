//! `forge bench` through the real binary on a tiny model: it measures the device that flag >
//! environment > config file choose, opened as `forge run` opens it (fallback, `FORGE_FAULT`);
//! its warm-up builds every shape the timed repetitions run; a peer without a load time says so.

mod common;

use std::path::Path;

use common::{forge, text, tiny_gguf};

/// `forge bench` with small sizes; the report's JSON, stderr and success.
fn bench(model: &Path, extra: &[&str], env: &[(&str, Option<&str>)]) -> (Option<serde_json::Value>, String) {
    let out = model.with_file_name(format!("bench-{}.json", report_number()));
    let args = [&["bench", "-m", model.to_str().unwrap(), "-p", "16", "-n", "4", "-r", "1", "--json", out.to_str().unwrap()][..], extra].concat();
    let o = forge(&args, env);
    let (_, err) = text(&o);
    let report = o.status.success().then(|| serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap());
    (report, err)
}

/// Distinct report names for the calls of one test.
fn report_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// (engine, backend) of each row.
fn rows(report: &serde_json::Value) -> Vec<(String, String)> {
    report["rows"].as_array().unwrap().iter().map(|r| (r["engine"].as_str().unwrap().to_string(), r["backend"].as_str().unwrap().to_string())).collect()
}

fn forge_cpu_only() -> Vec<(String, String)> {
    vec![("forge".into(), "cpu".into())]
}

#[test]
fn flag_env_and_config_choose_the_benched_device() {
    let m = tiny_gguf("bench-select");
    let (r, err) = bench(&m, &[], &[("FORGE_BACKEND", Some("cpu"))]);
    assert_eq!(rows(&r.unwrap_or_else(|| panic!("{err}"))), forge_cpu_only(), "FORGE_BACKEND=cpu");
    let (r, err) = bench(&m, &["--backend", "cpu"], &[("FORGE_BACKEND", Some("wgpu"))]);
    assert_eq!(rows(&r.unwrap_or_else(|| panic!("{err}"))), forge_cpu_only(), "--backend cpu over FORGE_BACKEND=wgpu");
    let cfg = m.with_file_name("config.toml");
    std::fs::write(&cfg, "backend = \"cpu\"\n").unwrap();
    let (r, err) = bench(&m, &[], &[("FORGE_CONFIG", Some(cfg.to_str().unwrap()))]);
    assert_eq!(rows(&r.unwrap_or_else(|| panic!("{err}"))), forge_cpu_only(), "config backend = cpu");

    // --device picks one device of `forge devices` by index.
    let o = forge(&["devices", "--json"], &[]);
    let devices: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &devices["devices"][0];
    let (r, err) = bench(&m, &["--device", "0"], &[]);
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert_eq!(r["rows"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["rows"][0]["device"], first["label"]);

    // --backends is the multi-device form, and cannot be mixed with the single choice.
    let (r, err) = bench(&m, &["--backends", "cpu"], &[("FORGE_BACKEND", Some("wgpu"))]);
    assert_eq!(rows(&r.unwrap_or_else(|| panic!("{err}"))), forge_cpu_only());
    let (r, err) = bench(&m, &["--backends", "cpu", "--backend", "cpu"], &[]);
    assert!(r.is_none() && err.contains("cannot be used with"), "{err}");
}

#[test]
fn injected_faults_reach_bench() {
    let m = tiny_gguf("bench-fault");
    // The chosen CPU fails to start: bench falls back as `forge run` does, or fails naming why.
    let (r, err) = bench(&m, &[], &[("FORGE_BACKEND", Some("cpu")), ("FORGE_FAULT", Some("cpu:init"))]);
    assert!(err.contains("injected fault at init"), "{err}");
    if let Some(r) = r {
        assert!(!rows(&r).contains(&("forge".into(), "cpu".into())), "{r}");
        assert_eq!(err.lines().filter(|l| l.starts_with("forge: cpu (")).count(), 1, "{err}");
    }
    let (r, err) = bench(&m, &["--no-fallback"], &[("FORGE_BACKEND", Some("cpu")), ("FORGE_FAULT", Some("cpu:init"))]);
    assert!(r.is_none() && err.contains("fallback is disabled"), "{err}");
    // The multi-device form has no fallback: the failing device has no row.
    let (r, err) = bench(&m, &["--backends", "cpu"], &[("FORGE_FAULT", Some("cpu:alloc"))]);
    assert!(r.is_none() && err.contains("injected fault at alloc"), "{err}");
}

/// The warm-up runs every shape the timed repetitions run, so no graph or plan is built inside
/// a timed repetition. Observed on wgpu, which logs each plan it builds (the warm-up used to
/// prefill at most 64 tokens, so a 100-token prefill built its plan in the first repetition).
#[test]
fn the_warm_up_builds_every_timed_shape() {
    let o = forge(&["devices", "--json"], &[]);
    let devices: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let wgpu = devices["devices"].as_array().unwrap().iter().any(|d| d["backend"] == "wgpu" && d["usable"] == true);
    if !wgpu {
        assert_ne!(std::env::var("FORGE_REQUIRE_WGPU").as_deref(), Ok("1"), "FORGE_REQUIRE_WGPU=1 but no usable wgpu adapter");
        eprintln!("skipping: no usable wgpu adapter");
        return;
    }
    let m = tiny_gguf("bench-warmup");
    let args = ["bench", "-m", m.to_str().unwrap(), "-p", "100", "-n", "4", "-r", "2", "--backend", "wgpu", "--no-fallback"];
    let o = forge(&args, &[("RUST_LOG", Some("forge=debug,forge_engine=debug"))]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let warm = err.find("bench wgpu: warm-up").unwrap_or_else(|| panic!("{err}"));
    let timed = err.find("bench wgpu: timed repetition 1").unwrap_or_else(|| panic!("{err}"));
    assert!(err[warm..timed].contains("wgpu plan:"), "the warm-up built no plan:\n{err}");
    assert!(!err[timed..].contains("wgpu plan:"), "a plan was built inside a timed repetition:\n{err}");
}

/// llama-bench reports no load time: its rows say "unknown" (null in JSON), not 0.
#[cfg(unix)]
#[test]
fn llama_cpp_rows_have_an_unknown_load_time() {
    use std::os::unix::fs::PermissionsExt;
    let m = tiny_gguf("bench-peer");
    let fake = m.with_file_name("llama-bench");
    let json = r#"[{"backends":"CPU","cpu_info":"test cpu","gpu_info":"","n_prompt":16,"n_gen":0,"avg_ts":100.0,"samples_ts":[100.0]},{"backends":"CPU","cpu_info":"test cpu","gpu_info":"","n_prompt":0,"n_gen":4,"avg_ts":10.0,"samples_ts":[10.0]}]"#;
    std::fs::write(&fake, format!("#!/bin/sh\ncat <<'EOF'\n{json}\nEOF\n")).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let md = m.with_file_name("bench.md");
    let (r, err) = bench(&m, &["--backend", "cpu", "--compare-llama-cpp", fake.to_str().unwrap(), "--markdown", md.to_str().unwrap()], &[]);
    let r = r.unwrap_or_else(|| panic!("{err}"));
    let rows = r["rows"].as_array().unwrap();
    let peer = rows.iter().find(|r| r["engine"] == "llama.cpp").unwrap_or_else(|| panic!("{r}"));
    let ours = rows.iter().find(|r| r["engine"] == "forge").unwrap();
    assert!(peer["load_ms"].is_null(), "{peer}");
    assert!(ours["load_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{ours}");
    let md = std::fs::read_to_string(&md).unwrap();
    let line = md.lines().find(|l| l.starts_with("| llama.cpp |")).unwrap_or_else(|| panic!("{md}"));
    assert!(line.contains("| unknown |"), "{line}");
}
