//! `forge doctor`: is this machine ready to run models? For each usable backend, its kernels
//! against the CPU reference (a tiny random Llama in every weight format) and its memory
//! bandwidth; then the model file's structure, pinned hash and memory fit. One verdict per line.

use std::path::{Path, PathBuf};

use clap::Args;
use forge_engine::devices::check::{self, CheckResult, Verdict};
use forge_engine::devices::fit::{self, gib};
use forge_engine::devices::{self as dev, BackendKind, Candidate};
use forge_engine::formats::gguf::GgufFile;
use sha2::{Digest, Sha256};

use crate::backends;
use crate::devices::{Machine, SelectArgs};

#[derive(Args)]
pub struct DoctorArgs {
    /// A model to check (default: the cached default model, when present).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Context length to size the memory check for.
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    #[command(flatten)]
    select: SelectArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn line(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> CheckResult {
    CheckResult { name: name.into(), verdict, detail: detail.into() }
}

fn backend_checks(c: &Candidate, m: &Machine, out: &mut Vec<CheckResult>) {
    let who = format!("{} {}", c.backend.name(), c.label);
    let mut open = || m.faults.scope(|| backends::open(c));
    for mut r in check::compare_with_reference(&mut open) {
        r.name = format!("{who}: {}", r.name);
        out.push(r);
    }
    let bw = match c.backend {
        BackendKind::Cpu => Ok(dev::bench::cpu_copy_gbps(256 << 20, 5)),
        BackendKind::Wgpu => match &c.adapter {
            Some(a) => dev::bench::wgpu_copy_gbps(a, 256 << 20, 10),
            None => Err("no adapter handle".into()),
        },
        BackendKind::Cuda => Err("no CUDA benchmark yet".into()),
    };
    out.push(match bw {
        Ok(g) => line(format!("{who}: copy bandwidth"), Verdict::Pass, format!("{g:.1} GB/s")),
        Err(e) if c.backend == BackendKind::Cuda => line(format!("{who}: copy bandwidth"), Verdict::Skip, e),
        Err(e) => line(format!("{who}: copy bandwidth"), Verdict::Fail, e),
    });
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

fn model_checks(path: &Path, ctx: usize, m: &Machine, out: &mut Vec<CheckResult>) {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    if path.is_file() {
        match GgufFile::open(path) {
            Ok(g) => out.push(line(format!("model {name}: GGUF structure"), Verdict::Pass, format!("{} tensors, architecture {}", g.tensors.len(), g.architecture().unwrap_or("?")))),
            Err(e) => {
                out.push(line(format!("model {name}: GGUF structure"), Verdict::Fail, e.to_string()));
                return;
            }
        }
        match crate::cache::KNOWN.iter().find(|k| k.file == name) {
            Some(k) => out.push(match sha256_file(path) {
                Ok(h) if h == k.sha256 => line(format!("model {name}: SHA-256"), Verdict::Pass, format!("matches the pinned hash of {}", k.name)),
                Ok(h) => line(format!("model {name}: SHA-256"), Verdict::Fail, format!("{h}, expected {}; re-download with `forge pull {}`", k.sha256, k.name)),
                Err(e) => line(format!("model {name}: SHA-256"), Verdict::Fail, e.to_string()),
            }),
            None => out.push(line(format!("model {name}: SHA-256"), Verdict::Skip, "not a known model; no pinned hash")),
        }
    }
    let model = match forge_engine::Model::load(path) {
        Ok(model) => model,
        Err(e) => {
            out.push(line(format!("model {name}: loads"), Verdict::Fail, e.to_string()));
            return;
        }
    };
    let ctx = ctx.min(model.config.ctx_train);
    let kv_type = m.settings.kv_type.value;
    let est = fit::estimate(&model.config, model.weight_bytes() as u64, fit::largest_row(&model), ctx, kv_type);
    let host = m.probe.cpu.ram_available.or(m.probe.cpu.ram_total);
    if let Ok(order) = dev::plan(&m.candidates, &m.settings) {
        let c = &order[0];
        let verdict = fit::check(&est, c, m.settings.memory_fraction.value, host);
        out.push(match verdict {
            Ok(()) => line(format!("model {name}: fits {} at ctx {ctx}", c.backend.name()), Verdict::Pass, format!("needs {} (weights {} + {kv_type} KV cache {} + activations {})", gib(est.total()), gib(est.weights), gib(est.kv_cache), gib(est.activations))),
            Err(why) => line(format!("model {name}: fits {} at ctx {ctx}", c.backend.name()), Verdict::Fail, why),
        });
    }
}

pub fn doctor(a: DoctorArgs) -> anyhow::Result<()> {
    let m = crate::devices::detect(&a.select)?;
    let mut out = Vec::new();
    let usable = m.candidates.iter().filter(|c| c.usable).count();
    out.push(line("devices", if usable > 0 { Verdict::Pass } else { Verdict::Fail }, format!("{} found, {usable} usable (see `forge devices`)", m.candidates.len())));
    for c in &m.candidates {
        if c.usable {
            backend_checks(c, &m, &mut out);
        } else {
            out.push(line(format!("{} {}", c.backend.name(), c.label), Verdict::Skip, c.reason.clone().unwrap_or_default()));
        }
    }
    let model = a.model.clone().or_else(|| crate::cache::default_model().ok());
    match &model {
        Some(p) => model_checks(p, a.ctx, &m, &mut out),
        None => out.push(line("model", Verdict::Skip, "no --model given and the default model is not cached (`forge pull smollm2-135m`)")),
    }
    let failed = out.iter().filter(|r| r.verdict == Verdict::Fail).count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "checks": out, "failed": failed }))?);
    } else {
        let w = out.iter().map(|r| r.name.chars().count()).max().unwrap_or(5);
        println!("{:<w$}  VERDICT  DETAIL", "CHECK");
        for r in &out {
            let v = match r.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            };
            println!("{:<w$}  {v:<7}  {}", r.name, r.detail);
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}
