//! The browser row in `forge bench --browser`: `node web/test/bench.mjs` drives the demo page's
//! bench mode in headless Chromium (WebGPU) and prints the page's `Row` as one JSON line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::{Row, Stat};

/// The page's row: the fields it measures; the rest of `Row` stays empty.
#[derive(Deserialize)]
struct PageRow {
    engine: String,
    backend: String,
    device: String,
    load_ms: f64,
    pp_tok_s: PageStat,
    tg_tok_s: PageStat,
}

#[derive(Deserialize)]
struct PageStat {
    median: f64,
    min: f64,
    max: f64,
}

impl From<PageStat> for Stat {
    fn from(s: PageStat) -> Stat {
        Stat { median: s.median, min: s.min, max: s.max }
    }
}

/// `web/` of this checkout: from the working directory, else from where this binary was built.
fn web_dir() -> Option<PathBuf> {
    [PathBuf::from("web"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")].into_iter().find(|d| d.join("test/bench.mjs").exists())
}

fn parse(stdout: &str) -> anyhow::Result<Row> {
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).context("web/test/bench.mjs printed no JSON row")?;
    let r: PageRow = serde_json::from_str(line).with_context(|| format!("parsing the browser row {line}"))?;
    Ok(Row::timings(r.engine, r.backend, r.device, Some(r.load_ms), r.pp_tok_s.into(), r.tg_tok_s.into()))
}

/// Runs the page's bench on `model` with `prompt` and `n_gen` tokens, `reps` times.
pub fn run(model: &Path, prompt: usize, n_gen: usize, reps: usize) -> anyhow::Result<Row> {
    let web = web_dir().context("--browser: web/test/bench.mjs not found; run forge from the repository root")?;
    if !web.join("dist/index.html").exists() {
        bail!("--browser: {} is missing: run web/build.sh first (and `npm ci --prefix web`)", web.join("dist").display());
    }
    if !web.join("node_modules/playwright-core").exists() {
        bail!("--browser: playwright-core is not installed: run `npm ci --prefix web` (and web/build.sh)");
    }
    let model = model.canonicalize().with_context(|| format!("--browser: {}", model.display()))?;
    let out = Command::new("node")
        .arg(web.join("test/bench.mjs"))
        .args(["--p", &prompt.to_string(), "--n", &n_gen.to_string(), "--r", &reps.max(1).to_string(), "--model"])
        .arg(&model)
        .stderr(Stdio::inherit())
        .output()
        .context("--browser: running node (is Node.js installed?)")?;
    if !out.status.success() {
        bail!("web/test/bench.mjs exited with {} (its messages are above)", out.status);
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_row_becomes_a_report_row() {
        let line = r#"{"engine":"forge","backend":"browser-webgpu","device":"google swiftshader","load_ms":486.1,"pp_tok_s":{"median":2,"min":1,"max":3},"tg_tok_s":{"median":0.7,"min":0.7,"max":0.7},"peak_memory_bytes":null,"vs_llama_cpp":null}"#;
        let row = super::parse(&format!("noise\n{line}\n")).unwrap();
        assert_eq!((row.backend.as_str(), row.pp_tok_s.max, row.tg_tok_s.median), ("browser-webgpu", 3.0, 0.7));
        assert!(super::parse("no row").is_err());
    }
}
