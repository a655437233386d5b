//! `scripts/gpu-check.sh` on stand-ins, so that every path through it runs without a GPU: shell
//! scripts in place of the test binaries and `forge` (each logs how it was called), a stand-in
//! `nvidia-smi` and `compute-sanitizer` first on PATH, and a manifest naming them
//! (`GPU_CHECK_PREBUILT=1`, `GPU_CHECK_MANIFEST`). What runs for real is the script: its order,
//! exit codes, environment per step, skips, timeouts and report.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BINS: [&str; 6] = ["forge_engine", "greedy_cuda", "rope_scaling", "devices", "greedy_wgpu", "forge"];
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A folder of stand-ins; `gpu` says whether the stand-in `nvidia-smi` lists one.
struct Fakes {
    dir: PathBuf,
}

struct Run {
    code: i32,
    output: String,
    report: String,
    trace: String,
}

impl Fakes {
    fn new(tag: &str, gpu: bool) -> Fakes {
        let dir = std::env::temp_dir().join(format!("forge-gpu-check-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["bin", "path", "models", "report"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let trace = dir.join("trace");
        let mut manifest = format!("# test manifest\nroot {}\n", repo().display());
        for name in BINS {
            let exe = dir.join("bin").join(name);
            write_exe(
                &exe,
                &format!(
                    "#!/bin/sh\necho \"{name} graph=${{FORGE_CUDA_GRAPH:-1}} cuda=${{FORGE_REQUIRE_CUDA:-0}} wgpu=${{FORGE_REQUIRE_WGPU:-0}} model=${{FORGE_REQUIRE_MODEL:-0}} dir=$(basename \"$PWD\") $*\" >>'{}'\n\
                     case \" $FAKE_SLEEP \" in *\" {name} \"*) exec sleep 60 ;; esac\n\
                     case \" $FAKE_FAIL \" in *\" {name} \"*) echo '{name} failed on purpose'; exit 1 ;; esac\n\
                     echo '{name} ok'\n",
                    trace.display()
                ),
            );
            manifest.push_str(&format!("{name} {}\n", exe.display()));
        }
        std::fs::write(dir.join("manifest"), manifest).unwrap();
        let smi = if gpu {
            "#!/bin/sh\ncase \"$1\" in -L) echo 'GPU 0: Stand-in H200 (UUID: GPU-0)' ;; --version) echo 'NVIDIA-SMI version : 0.0' ;; *) echo 'stand-in nvidia-smi' ;; esac\n"
        } else {
            "#!/bin/sh\necho 'No devices were found'\nexit 6\n"
        };
        write_exe(&dir.join("path/nvidia-smi"), smi);
        write_exe(
            &dir.join("path/compute-sanitizer"),
            &format!(
                "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho \"compute-sanitizer $*\" >>'{}'\n\
                 if [ -n \"$FAKE_SANITIZER_REFUSES\" ]; then echo '========= Error: Device not supported'; exit 1; fi\n\
                 shift 4\nexec \"$@\"\n",
                trace.display()
            ),
        );
        std::fs::write(dir.join("models").join(MODEL_FILE), b"").unwrap();
        Fakes { dir }
    }

    fn run(&self, env: &[(&str, &str)]) -> Run {
        let path = format!("{}:{}", self.dir.join("path").display(), std::env::var("PATH").unwrap_or_default());
        let report_dir = self.dir.join("report");
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("scripts/gpu-check.sh")).arg(&report_dir);
        cmd.env("PATH", path)
            .env("GPU_CHECK_PREBUILT", "1")
            .env("GPU_CHECK_MANIFEST", self.dir.join("manifest"))
            .env("FORGE_MODEL_DIR", self.dir.join("models"))
            .env_remove("OUT")
            .env_remove("GPU_CHECK_BUDGET_S")
            .env_remove("VK_DRIVER_FILES")
            .env_remove("VK_ICD_FILENAMES");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("bash runs");
        Run {
            code: o.status.code().expect("exits"),
            output: format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            report: std::fs::read_to_string(report_dir.join("report.md")).unwrap_or_default(),
            trace: std::fs::read_to_string(self.dir.join("trace")).unwrap_or_default(),
        }
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn status(run: &Run, step: &str) -> String {
    let row = format!("| {step} | ");
    let line = run.report.lines().find(|l| l.starts_with(&row)).unwrap_or_else(|| panic!("no row for {step} in:\n{}", run.report));
    line[row.len()..].split(' ').next().unwrap().to_string()
}

#[test]
fn without_a_gpu_it_stops_with_exit_3_before_any_test() {
    let f = Fakes::new("nogpu", false);
    let r = f.run(&[]);
    assert_eq!(r.code, 3, "{}", r.output);
    assert!(r.output.contains("no NVIDIA GPU (nvidia-smi lists no GPU: No devices were found)"), "{}", r.output);
    assert_eq!(status(&r, "build"), "PASS");
    assert_eq!(status(&r, "gpu"), "SKIP");
    assert_eq!(r.trace, "", "nothing ran");
}

#[test]
fn with_a_gpu_every_step_runs_with_its_requirements() {
    let f = Fakes::new("pass", true);
    let r = f.run(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.output, r.report);
    for step in ["cuda-kernels", "cuda-rope-scaling", "cuda-rope-scaling-no-graphs", "cuda-greedy", "cuda-greedy-no-graphs", "cuda-devices-check", "cuda-memcheck", "wgpu-greedy", "bench"] {
        assert_eq!(status(&r, step), "PASS", "{step}");
    }
    for call in [
        "forge_engine graph=1 cuda=1 wgpu=0 model=1 dir=engine backend::cuda",
        "greedy_cuda graph=1 cuda=1 wgpu=0 model=1 dir=tests",
        "greedy_cuda graph=0 cuda=1 wgpu=0 model=1 dir=tests",
        "rope_scaling graph=0 cuda=1",
        "greedy_wgpu graph=1 cuda=0 wgpu=1 model=1 dir=tests",
        "compute-sanitizer --tool memcheck --error-exitcode 99",
        "forge_engine graph=1 cuda=1 wgpu=0 model=1 dir=engine backend::cuda --skip every_kernel_compiles_with_nvrtc --test-threads=1",
        &format!("bench -m {} --backends cuda,wgpu -p 512 -n 128 --json", f.dir.join("models").join(MODEL_FILE).display()),
    ] {
        assert!(r.trace.contains(call), "no call like `{call}` in:\n{}", r.trace);
    }
    assert!(r.report.contains("stand-in nvidia-smi"), "nvidia-smi's output is in the report");
}

#[test]
fn a_failing_step_is_recorded_and_the_next_ones_still_run() {
    let f = Fakes::new("fail", true);
    let r = f.run(&[("FAKE_FAIL", "greedy_cuda")]);
    assert_eq!(r.code, 1, "{}", r.output);
    assert_eq!(status(&r, "cuda-greedy"), "FAIL");
    assert_eq!(status(&r, "bench"), "PASS");
    assert!(r.report.contains("greedy_cuda failed on purpose"), "the output tail is in the report");
}

#[test]
fn without_the_model_its_steps_are_skipped_and_the_exit_says_so() {
    let f = Fakes::new("nomodel", true);
    std::fs::remove_file(f.dir.join("models").join(MODEL_FILE)).unwrap();
    let r = f.run(&[]);
    assert_eq!(r.code, 4, "{}", r.output);
    for step in ["cuda-greedy", "cuda-greedy-no-graphs", "wgpu-greedy", "bench"] {
        assert_eq!(status(&r, step), "SKIP", "{step}");
    }
    assert_eq!(status(&r, "cuda-kernels"), "PASS");
    assert!(!r.trace.contains("greedy_cuda"), "{}", r.trace);
}

#[test]
fn a_sanitizer_that_refuses_the_device_is_a_skip_not_a_failure() {
    let f = Fakes::new("sanitizer", true);
    let r = f.run(&[("FAKE_SANITIZER_REFUSES", "1")]);
    assert_eq!(r.code, 4, "{}", r.output);
    assert_eq!(status(&r, "cuda-memcheck"), "SKIP");
    assert_eq!(status(&r, "bench"), "PASS");
}

#[test]
fn a_step_past_the_budget_is_killed_and_the_rest_are_not_started() {
    let f = Fakes::new("budget", true);
    // 16 s: the first step gets 11 (5 are kept for the report) and sleeps past them.
    let r = f.run(&[("GPU_CHECK_BUDGET_S", "16"), ("FAKE_SLEEP", "forge")]);
    assert_eq!(r.code, 1, "{}", r.output);
    assert_eq!(status(&r, "forge-devices"), "TIMEOUT");
    assert_eq!(status(&r, "cuda-kernels"), "TIMEOUT");
    assert!(r.report.contains("not started: the 16s budget is spent"), "{}", r.report);
}
