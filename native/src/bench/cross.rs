//! `forge bench report A.json B.json …`: the JSON of several `forge bench` runs (machines,
//! vendors, backends) as one Markdown table and one SVG, a row per measured device, each with its
//! machine, driver and model checksum.
//!
//! Tokens/s from different models or different prompt/generation lengths do not compare, so a
//! report refuses them, naming the files and values, unless `--allow-mixed` says the mix is
//! deliberate; then the table and the plot say so. Fields older files lack are shown as unknown.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::report::{Bars, plot_bars};
use super::{Report, Row};

#[derive(Args)]
pub struct ReportArgs {
    /// Files written by `forge bench --json`, one per machine or run.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the Markdown table here instead of stdout.
    #[arg(short = 'o', long)]
    pub markdown: Option<PathBuf>,
    /// Write an SVG bar chart of prefill and decode tokens/s.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write the combined rows as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Compare files of different models or sizes anyway; the table and plot mark the mix.
    #[arg(long)]
    pub allow_mixed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {path}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is empty; expected the JSON that `forge bench --json` writes")]
    Empty { path: String },
    #[error("{path} is not a `forge bench --json` file")]
    Parse { path: String, source: serde_json::Error },
    #[error("{path} has no rows: its run measured no device")]
    NoRows { path: String },
    #[error("refusing to mix models: {}; pass --allow-mixed to compare them anyway", listing(.files))]
    MixedModels { files: Vec<(String, String)> },
    #[error("refusing to mix sizes: {}; run `forge bench` with the same -p and -n everywhere, or pass --allow-mixed", listing(.files))]
    MixedSizes { files: Vec<(String, String)> },
}

/// `a.json has X; b.json has Y`.
fn listing(files: &[(String, String)]) -> String {
    files.iter().map(|(f, v)| format!("{f} has {v}")).collect::<Vec<_>>().join("; ")
}

/// One file's run.
struct Run {
    path: String,
    report: Report,
}

fn load(path: &Path) -> Result<Run, ReportError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ReportError::Read { path: shown.clone(), source })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ReportError::Empty { path: shown });
    }
    let report: Report = serde_json::from_slice(&bytes).map_err(|source| ReportError::Parse { path: shown.clone(), source })?;
    if report.rows.is_empty() {
        return Err(ReportError::NoRows { path: shown });
    }
    Ok(Run { path: shown, report })
}

fn model_name(r: &Report) -> &str {
    Path::new(&r.model).file_name().and_then(|n| n.to_str()).unwrap_or(&r.model)
}

fn short_sha(r: &Report) -> String {
    r.model_sha256.as_deref().map_or_else(|| "unknown".into(), |s| format!("{}…", s.chars().take(12).collect::<String>()))
}

/// The model as the error and the table name it: file name and checksum.
fn model_text(r: &Report) -> String {
    format!("{} (sha256 {})", model_name(r), short_sha(r))
}

fn sizes_text(r: &Report) -> String {
    format!("pp{} / tg{}", r.prompt_tokens, r.gen_tokens)
}

/// Same model: equal checksums where both files have one; else (older files) the same file name.
fn same_model(a: &Report, b: &Report) -> bool {
    match (&a.model_sha256, &b.model_sha256) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => model_name(a) == model_name(b),
    }
}

fn same_sizes(a: &Report, b: &Report) -> bool {
    (a.prompt_tokens, a.gen_tokens) == (b.prompt_tokens, b.gen_tokens)
}

/// The first file and every file that differs from it, each with its value; empty when none does.
fn differing(runs: &[Run], same: fn(&Report, &Report) -> bool, text: fn(&Report) -> String) -> Vec<(String, String)> {
    let first = &runs[0];
    let others: Vec<(String, String)> = runs[1..].iter().filter(|r| !same(&first.report, &r.report)).map(|r| (r.path.clone(), text(&r.report))).collect();
    if others.is_empty() {
        return others;
    }
    std::iter::once((first.path.clone(), text(&first.report))).chain(others).collect()
}

/// Refuses a mix of models or sizes, unless allowed; then returns one line per kind of mix.
fn check_mix(runs: &[Run], allow_mixed: bool) -> Result<Vec<String>, ReportError> {
    let models = differing(runs, same_model, model_text);
    let sizes = differing(runs, same_sizes, sizes_text);
    if !allow_mixed {
        if !models.is_empty() {
            return Err(ReportError::MixedModels { files: models });
        }
        if !sizes.is_empty() {
            return Err(ReportError::MixedSizes { files: sizes });
        }
    }
    let mut notes = Vec::new();
    if !models.is_empty() {
        notes.push(format!("models differ: {}", listing(&models)));
    }
    if !sizes.is_empty() {
        notes.push(format!("sizes differ: {}", listing(&sizes)));
    }
    Ok(notes)
}

/// A row of the combined report: where it ran and on what, then the run's own row.
#[derive(Serialize)]
struct CrossRow<'a> {
    file: &'a str,
    machine: Option<&'a str>,
    forge_version: &'a str,
    model: &'a str,
    model_sha256: Option<&'a str>,
    prompt_tokens: usize,
    gen_tokens: usize,
    #[serde(flatten)]
    row: &'a Row,
}

fn hostname(r: &Report) -> Option<&str> {
    r.machine.get("hostname").and_then(|h| h.as_str()).filter(|h| !h.is_empty())
}

/// Decode bandwidth over the device's copy bandwidth: as recorded, else from the two figures.
fn fraction(row: &Row) -> Option<f64> {
    row.bandwidth_fraction.or_else(|| Some(row.effective_gb_s? / row.copy_gb_s.filter(|c| *c > 0.0)?))
}

fn unknown<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "unknown".into())
}

fn markdown(runs: &[Run], notes: &[String]) -> String {
    let first = &runs[0].report;
    let mut s = if notes.is_empty() {
        format!("Model: {} — {}; median (min–max) of each run's repetitions\n\n", model_text(first), sizes_text(first))
    } else {
        let mut s = format!("**Mixed comparison (--allow-mixed)**: cells marked ≠ differ from {}.\n\n", runs[0].path);
        for n in notes {
            s += &format!("- {n}\n");
        }
        s + "\n"
    };
    s += "| machine | engine | backend | device | driver | model sha256 | sizes | prefill tok/s | decode tok/s | decode GB/s | copy GB/s | % of copy | file |\n";
    s += "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---|\n";
    for run in runs {
        let r = &run.report;
        let mark = |same: bool, text: String| if same { text } else { format!("≠ {text}") };
        let model = mark(same_model(first, r), short_sha(r));
        let sizes = mark(same_sizes(first, r), sizes_text(r));
        for row in &r.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                hostname(r).unwrap_or("unknown"),
                row.engine,
                row.backend,
                row.device,
                row.driver.as_deref().unwrap_or("unknown"),
                model,
                sizes,
                row.pp_tok_s,
                row.tg_tok_s,
                unknown(row.effective_gb_s, |v| format!("{v:.2}")),
                unknown(row.copy_gb_s, |v| format!("{v:.2}")),
                unknown(fraction(row), |v| format!("{:.0}%", v * 100.0)),
                run.path,
            );
        }
    }
    s
}

fn plot(runs: &[Run], mixed: bool, path: &Path) -> anyhow::Result<()> {
    let first = &runs[0].report;
    let mut bars = Vec::new();
    for run in runs {
        let r = &run.report;
        for row in &r.rows {
            let mut label = vec![
                hostname(r).unwrap_or("unknown machine").to_string(),
                format!("{} {}", row.engine, row.backend),
                row.device.clone(),
                row.driver.clone().unwrap_or_else(|| "driver unknown".into()),
            ];
            if mixed {
                label.push(format!("{} {}", model_name(r), sizes_text(r)));
            }
            let tg_note = fraction(row).map(|f| format!("({:.0}% bw)", f * 100.0));
            bars.push(Bars { label, pp: row.pp_tok_s.median, tg: row.tg_tok_s.median, tg_note });
        }
    }
    let caption = if mixed {
        "tokens/s — MIXED models or sizes (--allow-mixed)".to_string()
    } else {
        format!("tokens/s — {} — {}", model_name(first), sizes_text(first))
    };
    plot_bars(path, &caption, &bars)
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let runs = a.files.iter().map(|p| load(p)).collect::<Result<Vec<_>, _>>()?;
    let notes = check_mix(&runs, a.allow_mixed)?;
    let table = markdown(&runs, &notes);
    match &a.markdown {
        Some(p) => std::fs::write(p, &table).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{table}"),
    }
    if let Some(p) = &a.plot {
        plot(&runs, !notes.is_empty(), p)?;
    }
    if let Some(p) = &a.json {
        let rows: Vec<CrossRow> = runs
            .iter()
            .flat_map(|run| {
                let r = &run.report;
                r.rows.iter().map(move |row| CrossRow {
                    file: &run.path,
                    machine: hostname(r),
                    forge_version: &r.forge_version,
                    model: &r.model,
                    model_sha256: r.model_sha256.as_deref(),
                    prompt_tokens: r.prompt_tokens,
                    gen_tokens: r.gen_tokens,
                    row,
                })
            })
            .collect();
        let out = serde_json::json!({ "mixed": notes, "rows": rows });
        std::fs::write(p, serde_json::to_string_pretty(&out)?).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
