//! `forge bench`: load time, prefill and decode tokens/s on every selected backend × device, with
//! bytes read per decode token against the device's own copy bandwidth, and llama.cpp's
//! `llama-bench` on the same model in the same run when asked, and the browser build in headless
//! Chromium (`--browser`). Writes a table to stdout and,
//! on request, JSON, Markdown and an SVG plot. `forge bench report` puts the JSON of several runs
//! (machines, vendors) into one table and plot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use forge_engine::devices::{self, BackendChoice, BackendKind, Candidate, Opened};
use forge_engine::session::{KvType, Readout};
use forge_engine::session::Forward;
use forge_engine::{Model, Session};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::backends;
use crate::devices::SelectArgs;

mod report;
mod peer;
mod browser;
mod identity;
mod cross;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Model to benchmark (default: SmolLM2-135M-Instruct Q4_1 from the cache).
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Backends to measure, one row per usable device of each: `all` or a comma list of cpu,
    /// wgpu, cuda. Default: the device `forge run` would use (with its fallback) when --backend,
    /// --device, FORGE_BACKEND, FORGE_DEVICE or the config file chooses one; otherwise all.
    #[arg(long, conflicts_with_all = ["backend", "device"])]
    pub backends: Option<String>,
    /// Prompt tokens for the prefill test (pp) [default: 512; 32 for the --browser row].
    #[arg(short = 'p', long)]
    pub prompt: Option<usize>,
    /// Generated tokens for the decode test (tg) [default: 128; 8 for the --browser row].
    #[arg(short = 'n', long = "gen")]
    pub n_gen: Option<usize>,
    /// Repetitions after one warm-up; median, min and max are reported.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Write the full results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a Markdown table.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write an SVG bar chart of tokens/s.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// A `llama-bench` binary to run on the same model and sizes, for ratios.
    #[arg(long)]
    pub compare_llama_cpp: Option<PathBuf>,
    /// Add a `browser-webgpu` row: the demo page's bench mode in headless Chromium
    /// (`node web/test/bench.mjs`; needs web/build.sh and `npm ci --prefix web`).
    #[arg(long)]
    pub browser: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    /// With a chosen device: fail when it cannot run the model instead of falling back.
    #[arg(long)]
    pub no_fallback: bool,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// One Markdown table and SVG across `forge bench --json` files from several machines or
    /// backends; refuses to mix models or sizes unless --allow-mixed.
    Report(cross::ReportArgs),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// A table cell: `median (min–max)`, one decimal.
impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:.1} ({:.1}–{:.1})", self.median, self.min, self.max)
    }
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(f64::total_cmp);
        Stat { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
    }
}

/// One measured device. Fields added after the first release are `Option` so that older files
/// still load (`forge bench report` shows them as unknown).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// `forge` or `llama.cpp`.
    pub engine: String,
    pub backend: String,
    pub device: String,
    /// The driver between forge and the device (see `identity::driver`); `None` where unknown.
    #[serde(default)]
    pub driver: Option<String>,
    /// Opening the model on the device, warm-up token included; `None` where the engine does not
    /// report it (llama-bench).
    pub load_ms: Option<f64>,
    pub pp_tok_s: Stat,
    pub tg_tok_s: Stat,
    pub peak_memory_bytes: Option<u64>,
    pub launches_per_token: Option<usize>,
    pub bytes_per_token: Option<u64>,
    pub effective_gb_s: Option<f64>,
    pub copy_gb_s: Option<f64>,
    /// Decode bandwidth as a fraction of the measured copy bandwidth.
    pub bandwidth_fraction: Option<f64>,
    /// This row's decode and prefill speed over llama.cpp's on the same kind of device.
    pub vs_llama_cpp: Option<(f64, f64)>,
}

impl Row {
    /// A row with timings only: a peer engine or a browser, where launches, bytes and bandwidth
    /// are not observable from outside.
    pub fn timings(engine: String, backend: String, device: String, load_ms: Option<f64>, pp_tok_s: Stat, tg_tok_s: Stat) -> Row {
        Row {
            engine,
            backend,
            device,
            driver: None,
            load_ms,
            pp_tok_s,
            tg_tok_s,
            peak_memory_bytes: None,
            launches_per_token: None,
            bytes_per_token: None,
            effective_gb_s: None,
            copy_gb_s: None,
            bandwidth_fraction: None,
            vs_llama_cpp: None,
        }
    }
}

/// What `forge bench --json` writes and `forge bench report` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub forge_version: String,
    pub model: String,
    #[serde(default)]
    pub model_sha256: Option<String>,
    /// `os`, `arch`, `cpu`, `adapters` and (since `forge bench report`) `hostname`.
    #[serde(default)]
    pub machine: serde_json::Value,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    #[serde(default)]
    pub reps: usize,
    /// What the KV cache kept keys and values in (for every row, llama.cpp's too).
    #[serde(default)]
    pub kv_type: Option<KvType>,
    pub rows: Vec<Row>,
}

/// Bytes a decode step reads: every weight a matmul touches (the tied embedding is the output
/// projection, read whole), one embedding row, and the keys and values up to `pos` as the
/// cache keeps them.
fn bytes_per_token(model: &Model, pos: usize, kv_type: KvType) -> u64 {
    let c = &model.config;
    let mut bytes: u64 = model.weights.iter().filter(|(n, _)| n.as_str() != "token_embd.weight" || c.tied_embeddings).map(|(_, t)| t.as_bytes().len() as u64).sum();
    bytes += (c.n_layer * 2 * pos) as u64 * kv_type.row_bytes(c.kv_dim());
    bytes
}

fn copy_bandwidth(c: &Candidate) -> Option<f64> {
    match c.backend {
        BackendKind::Cpu => Some(devices::bench::cpu_copy_gbps(256 << 20, 5)),
        BackendKind::Wgpu => c.adapter.as_ref().and_then(|a| devices::bench::wgpu_copy_gbps(a, 64 << 20, 5).ok()),
        BackendKind::Cuda => None,
    }
}

fn prefill(s: &mut Session, toks: &[u32]) -> anyhow::Result<u32> {
    s.reset();
    let mut last = 0;
    for chunk in toks.chunks(512) {
        if let Forward::Token(t) = s.forward(chunk, Readout::ArgmaxLast)? {
            last = t;
        }
    }
    Ok(last)
}

fn decode(s: &mut Session, first: u32, n: usize) -> anyhow::Result<usize> {
    let mut t = first;
    let mut launches = 0;
    for _ in 0..n {
        if let Forward::Token(next) = s.forward(&[t], Readout::ArgmaxLast)? {
            t = next;
        }
        launches = s.backend().last_launches().unwrap_or(0);
    }
    Ok(launches)
}

/// Prompt and generated tokens per run, and timed runs.
struct Sizes {
    prompt: usize,
    n_gen: usize,
    reps: usize,
}

/// Which devices to measure and how they are opened.
enum Targets {
    /// `--backends`, or nothing chosen anywhere: every usable device of those kinds, a row each,
    /// without fallback (a failing device is reported and has no row).
    Each(Vec<Candidate>),
    /// A backend or device chosen by flag, environment or config file: the order `forge run`
    /// tries, falling back the same way; one row, for the device that opened.
    Planned(Vec<Candidate>),
}

impl Targets {
    fn runs(&self) -> usize {
        match self {
            Targets::Each(c) => c.len(),
            Targets::Planned(_) => 1,
        }
    }
}

fn parse_backends(list: &str) -> anyhow::Result<Vec<BackendKind>> {
    if list == "all" {
        return Ok(vec![BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda]);
    }
    list.split(',')
        .map(|s| match s.trim() {
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => bail!("--backends: unknown backend `{other}`; expected all or a comma list of cpu, wgpu, cuda"),
        })
        .collect()
}

/// `--backends` when given; else the user's choice of backend or device (flag > environment >
/// config file), as `forge run` plans it; else every usable device.
fn targets(a: &BenchArgs, machine: &crate::devices::Machine) -> anyhow::Result<Targets> {
    let s = &machine.settings;
    if a.backends.is_none() && (s.backend.value != BackendChoice::Auto || s.device.is_some()) {
        return Ok(Targets::Planned(devices::plan(&machine.candidates, s)?));
    }
    let list = a.backends.as_deref().unwrap_or("all");
    let wanted = parse_backends(list)?;
    for c in machine.candidates.iter().filter(|c| !c.usable && wanted.contains(&c.backend)) {
        eprintln!("skipping {} ({}): {}", c.backend.name(), c.label, c.reason.as_deref().unwrap_or("not usable"));
    }
    let chosen: Vec<Candidate> = machine.candidates.iter().filter(|c| c.usable && wanted.contains(&c.backend)).cloned().collect();
    if chosen.is_empty() {
        bail!("no usable device for --backends {list}; see `forge devices`");
    }
    Ok(Targets::Each(chosen))
}

/// Opens `order` as `forge run` does (the machine's memory fraction, host memory and
/// `FORGE_FAULT`), with one line naming any device passed over; and the time it took.
fn open(model: &Model, order: &[Candidate], opts: &devices::OpenOptions) -> anyhow::Result<(Opened, f64)> {
    let t0 = Instant::now();
    let opened = devices::open_session(model, order, opts, &mut backends::open, &mut |_, _, _| {})?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    if !opened.events.is_empty() {
        eprintln!("forge: {}", devices::fallback_line(&opened.events, &opened.candidate));
    }
    Ok((opened, load_ms))
}

/// One prefill of `prompt` tokens from an empty context, then `n_gen` decode steps from an empty
/// context again (as llama-bench's pp and tg tests); seconds for each, and launches per token.
fn repetition(s: &mut Session, vocab: usize, seed: u64, prompt: usize, n_gen: usize) -> anyhow::Result<(f64, f64, Option<usize>)> {
    let toks = devices::bench::synthetic_tokens(prompt, vocab, seed);
    let t = Instant::now();
    let first = prefill(s, &toks)?;
    let pp = t.elapsed().as_secs_f64();
    s.reset();
    let t = Instant::now();
    let l = decode(s, first, n_gen)?;
    let tg = t.elapsed().as_secs_f64();
    Ok((pp, tg, s.backend().last_launches().or(if l > 0 { Some(l) } else { None })))
}

fn measure(model: &Model, opened: Opened, load_ms: f64, a: &Sizes, bar: &ProgressBar, probe: &devices::Probe) -> anyhow::Result<Row> {
    let (mut s, c) = (opened.session, opened.candidate);
    let vocab = model.config.n_vocab;
    // Warm-up: the same prefill (so every chunk shape's graph and plan are built here, not in the
    // first timed repetition) and two decode steps (the one decode shape).
    tracing::debug!("bench {}: warm-up", c.backend.name());
    repetition(&mut s, vocab, 1, a.prompt, 2)?;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    let mut launches = None;
    for r in 0..a.reps.max(1) {
        tracing::debug!("bench {}: timed repetition {}", c.backend.name(), r + 1);
        let (pp_s, tg_s, l) = repetition(&mut s, vocab, 2 + r as u64, a.prompt, a.n_gen)?;
        pp.push(a.prompt as f64 / pp_s);
        tg.push(a.n_gen as f64 / tg_s);
        launches = l;
        bar.inc(1);
    }
    let tg = Stat::of(tg);
    let bpt = bytes_per_token(model, a.n_gen / 2, s.kv_type());
    let eff = bpt as f64 * tg.median / 1e9;
    let copy = copy_bandwidth(&c);
    let peak = s.backend().memory_used().or_else(peak_rss);
    Ok(Row {
        engine: "forge".into(),
        backend: c.backend.name().into(),
        device: c.label.clone(),
        driver: identity::driver(&c, probe),
        load_ms: Some(load_ms),
        pp_tok_s: Stat::of(pp),
        tg_tok_s: tg,
        peak_memory_bytes: peak,
        launches_per_token: launches,
        bytes_per_token: Some(bpt),
        effective_gb_s: Some(eff),
        copy_gb_s: copy,
        bandwidth_fraction: copy.map(|c| eff / c),
        vs_llama_cpp: None,
    })
}

/// The process's peak resident memory (Linux), a stand-in for the CPU backend's footprint.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchCommand::Report(r)) = a.command {
        return cross::report(r);
    }
    let path = match &a.model {
        Some(p) => p.clone(),
        None => crate::cache::default_model()?,
    };
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let machine = crate::devices::detect(&a.select)?;
    let targets = targets(&a, &machine)?;
    let sizes = Sizes { prompt: a.prompt.unwrap_or(512), n_gen: a.n_gen.unwrap_or(128), reps: a.reps };
    let bar = ProgressBar::new((targets.runs() * a.reps.max(1)) as u64)
        .with_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} runs").expect("valid template").progress_chars("=> "));
    let ctx = sizes.prompt.saturating_add(sizes.n_gen).saturating_add(8);
    let mut rows = Vec::new();
    match &targets {
        Targets::Planned(order) => {
            bar.set_message(format!("bench {} ({})", order[0].backend.name(), order[0].label));
            let row = open(&model, order, &machine.open_options(ctx, a.no_fallback, true)).and_then(|(o, ms)| measure(&model, o, ms, &sizes, &bar, &machine.probe));
            rows.push(row?);
        }
        Targets::Each(chosen) => {
            for c in chosen {
                bar.set_message(format!("bench {} ({})", c.backend.name(), c.label));
                let opts = machine.open_options(ctx, true, true);
                match open(&model, std::slice::from_ref(c), &opts).and_then(|(o, ms)| measure(&model, o, ms, &sizes, &bar, &machine.probe)) {
                    Ok(r) => rows.push(r),
                    Err(e) => eprintln!("{} ({}) failed: {e:#}", c.backend.name(), c.label),
                }
            }
            if rows.is_empty() {
                bar.finish_and_clear();
                bail!("no device could be measured (the reasons are above)");
            }
        }
    }
    if let Some(bin) = &a.compare_llama_cpp {
        bar.set_message("llama.cpp");
        let threads = machine.probe.cpu.threads;
        match peer::llama_bench(bin, &path, sizes.prompt, sizes.n_gen, a.reps, threads, machine.settings.kv_type.value) {
            Ok(peers) => {
                for row in rows.iter_mut() {
                    if let Some(p) = peers.iter().find(|p| peer::same_kind(&p.backend, &row.backend)) {
                        row.vs_llama_cpp = Some((row.tg_tok_s.median / p.tg_tok_s.median, row.pp_tok_s.median / p.pp_tok_s.median));
                    }
                }
                rows.extend(peers);
            }
            Err(e) => eprintln!("llama-bench failed: {e:#}"),
        }
    }
    bar.finish_and_clear();
    if a.browser {
        // SwiftShader decodes at about 1 tok/s: small sizes unless asked for.
        let (p, n) = (a.prompt.unwrap_or(32), a.n_gen.unwrap_or(8));
        match browser::run(&path, p, n, a.reps) {
            Ok(mut row) => {
                if (p, n) != (sizes.prompt, sizes.n_gen) {
                    row.device = format!("{} (pp{p} / tg{n})", row.device);
                }
                rows.push(row);
            }
            Err(e) => eprintln!("browser-webgpu failed: {e:#}"),
        }
    }
    let report = Report {
        forge_version: env!("CARGO_PKG_VERSION").into(),
        model: path.display().to_string(),
        model_sha256: crate::pull::sha256_file(&path).ok(),
        machine: serde_json::json!({
            "hostname": identity::hostname(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "cpu": machine.probe.cpu,
            "adapters": machine.probe.wgpu,
        }),
        prompt_tokens: sizes.prompt,
        gen_tokens: sizes.n_gen,
        reps: a.reps,
        kv_type: Some(machine.settings.kv_type.value),
        rows,
    };
    let table = report::markdown(&report);
    println!("{table}");
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.markdown {
        std::fs::write(p, &table).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.plot {
        report::plot(&report, p)?;
    }
    Ok(())
}
