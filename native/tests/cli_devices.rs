//! `forge devices`, `forge doctor` and device selection through the real binary: precedence and
//! error messages as the user sees them, and fault-injected fallback in `forge run`.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `forge` with the device settings of this test only: no inherited FORGE_* variables, and an
/// empty config directory.
fn forge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cfg = std::env::temp_dir().join(format!("forge-cli-devices-{}", std::process::id()));
    std::fs::create_dir_all(&cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.args(args).env("XDG_CONFIG_HOME", &cfg);
    for k in ["FORGE_BACKEND", "FORGE_DEVICE", "FORGE_CONFIG", "FORGE_FAULT"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn devices_lists_the_cpu_and_explains_cuda() {
    let o = forge(&["devices"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.lines().any(|l| l.contains(" cpu ") && l.contains("usable")), "{out}");
    assert!(out.lines().any(|l| l.contains("cuda")), "{out}");
    let o = forge(&["devices", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert!(devices.iter().any(|d| d["backend"] == "cpu" && d["usable"] == true));
    if forge_tests::required("FORGE_REQUIRE_WGPU") {
        assert!(devices.iter().any(|d| d["backend"] == "wgpu" && d["usable"] == true), "FORGE_REQUIRE_WGPU=1 but no usable wgpu device listed: {devices:#?}");
    }
    for d in devices.iter().filter(|d| d["usable"] == false) {
        assert!(d["reason"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
    }
    assert_eq!(v["selected"], devices.iter().find(|d| d["usable"] == true).unwrap()["index"]);
}

#[test]
fn bad_settings_name_their_source() {
    let (_, err) = text(&forge(&["devices"], &[("FORGE_BACKEND", "vulcan")]));
    assert!(err.contains("FORGE_BACKEND=vulcan: unknown backend; expected auto, cpu, wgpu or cuda"), "{err}");
    let (_, err) = text(&forge(&["devices", "--backend", "gpu"], &[("FORGE_BACKEND", "cpu")]));
    assert!(err.contains("--backend gpu: unknown backend"), "{err}");
    let path = std::env::temp_dir().join(format!("forge-cli-config-{}.toml", std::process::id()));
    std::fs::write(&path, "memory_fraction = 1.5\n").unwrap();
    let (_, err) = text(&forge(&["devices"], &[("FORGE_CONFIG", path.to_str().unwrap())]));
    assert!(err.contains(&format!("config {}: key `memory_fraction` = 1.5: must be in (0, 1]", path.display())), "{err}");
    let (_, err) = text(&forge(&["devices"], &[("FORGE_FAULT", "wgpu:boot")]));
    assert!(err.contains("FORGE_FAULT=wgpu:boot"), "{err}");
    let (_, err) = text(&forge(&["devices"], &[("FORGE_CONFIG", "/nonexistent/forge.toml")]));
    assert!(err.contains("FORGE_CONFIG=/nonexistent/forge.toml"), "{err}");
}

#[test]
fn flag_overrides_env_overrides_config() {
    let path = std::env::temp_dir().join(format!("forge-cli-precedence-{}.toml", std::process::id()));
    std::fs::write(&path, "backend = \"cuda\"\n").unwrap();
    let cfg = path.to_str().unwrap();
    let selected = |args: &[&str], env: &[(&str, &str)]| {
        let o = forge(&[&["devices", "--json"], args].concat(), env);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o).1));
        (v["settings"]["backend"]["value"].as_str().unwrap().to_string(), v["settings"]["backend"]["origin"].clone())
    };
    assert_eq!(selected(&[], &[("FORGE_CONFIG", cfg)]).0, "cuda");
    assert_eq!(selected(&[], &[("FORGE_CONFIG", cfg), ("FORGE_BACKEND", "wgpu")]), ("wgpu".into(), serde_json::json!({"env": "FORGE_BACKEND"})));
    assert_eq!(selected(&["--backend", "cpu"], &[("FORGE_CONFIG", cfg), ("FORGE_BACKEND", "wgpu")]).0, "cpu");
}

/// The real model where `forge pull` puts it, by the shared rule: skipped when absent, a failure
/// with `FORGE_REQUIRE_MODEL=1`.
fn model() -> Option<PathBuf> {
    forge_tests::smollm2_path()
}

#[test]
fn run_falls_back_with_one_line_or_refuses_with_no_fallback() {
    let Some(m) = model() else { return };
    let m = m.to_str().unwrap();
    let run = ["run", "-m", m, "-p", "Hi", "-n", "3", "--temperature", "0", "--raw", "--json"];
    let plain = forge(&[&run[..], &["--backend", "cpu"]].concat(), &[]);
    assert!(plain.status.success(), "{}", text(&plain).1);
    let want: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();

    // wgpu asked for and failing at init (or not built): one line, then the CPU's answer.
    let o = forge(&[&run[..], &["--backend", "wgpu"]].concat(), &[("FORGE_FAULT", "wgpu:init")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("forge: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("forge: wgpu (") && lines[0].contains("; using cpu ("), "{err}");
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["ids"], want["ids"]);
    assert_eq!(got["backend"], "cpu");
    assert_eq!(got["fallbacks"].as_array().unwrap().len(), 1);

    let o = forge(&[&run[..], &["--backend", "wgpu", "--no-fallback"]].concat(), &[("FORGE_FAULT", "wgpu:init")]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("fallback is disabled"), "{err}");

    // The CPU failing to allocate with nothing else to run on is an error that lists the attempts.
    let o = forge(&[&run[..], &["--backend", "cpu"]].concat(), &[("FORGE_FAULT", "cpu:alloc,wgpu:init")]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no device could run the model") && err.contains("injected fault at alloc"), "{err}");
}

#[test]
fn doctor_checks_every_device_against_the_f64_reference_and_the_model() {
    let Some(m) = model() else { return };
    let o = forge(&["doctor", "--json", "--model", m.to_str().unwrap(), "--backend", "cpu"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o).1));
    let checks = v["checks"].as_array().unwrap();
    assert!(o.status.success() && v["failed"] == 0, "{checks:#?}");
    let field = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap().to_string();
    let verdict = |needle: &str| checks.iter().find(|c| field(c, "name").contains(needle)).map(|c| field(c, "verdict"));
    // One row per weight format and device: `<backend> <device>: tiny llama, <type> weights`.
    let kernel_rows = |backend: &str| -> Vec<&serde_json::Value> { checks.iter().filter(|c| field(c, "name").starts_with(&format!("{backend} ")) && field(c, "name").ends_with(" weights")).collect() };
    // Every device's rows, the CPU's included, are held to the plain f64 forward pass (no
    // backend is compared with itself), and must pass.
    let cpu = kernel_rows("cpu");
    assert_eq!(cpu.len(), forge_engine::devices::check::CHECKED_TYPES.len(), "{checks:#?}");
    let wgpu = kernel_rows("wgpu");
    if forge_tests::required("FORGE_REQUIRE_WGPU") {
        assert_eq!(wgpu.len(), forge_engine::devices::check::CHECKED_TYPES.len(), "FORGE_REQUIRE_WGPU=1 but doctor checked no wgpu device: {checks:#?}");
    }
    for row in cpu.iter().chain(&wgpu) {
        assert!(field(row, "verdict") == "PASS" && field(row, "detail").contains("from the f64 reference"), "{row:#}");
        // Not a comparison with itself: some error is always left (8-bit activations, f32 sums).
        let err: f64 = field(row, "detail").split("max relative error ").nth(1).and_then(|d| d.split(' ').next()).unwrap().parse().unwrap();
        assert!(err > 0.0, "{row:#}");
    }
    assert_eq!(verdict("copy bandwidth").as_deref(), Some("PASS"));
    assert_eq!(verdict("GGUF structure").as_deref(), Some("PASS"));
    assert_eq!(verdict("SHA-256").as_deref(), Some("PASS"));
    assert_eq!(verdict("fits cpu").as_deref(), Some("PASS"));
}
