//! `forge perplexity`: perplexity of a model over a text file, llama.cpp's convention, on any backend.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use forge_engine::devices;
use forge_engine::Model;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backends;
use crate::devices::SelectArgs;

#[derive(Args)]
pub struct PerplexityArgs {
    /// Model (default: SmolLM2-135M-Instruct Q4_1 from the cache).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Text file to score.
    #[arg(long, short)]
    file: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    select: SelectArgs,
    /// Fail instead of falling back to another device.
    #[arg(long)]
    no_fallback: bool,
}

pub fn perplexity(a: PerplexityArgs) -> anyhow::Result<()> {
    let path = match &a.model {
        Some(p) => p.clone(),
        None => crate::cache::default_model()?,
    };
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let tokens = model.tokenizer.encode(&text, true, false)?;
    let machine = crate::devices::detect(&a.select)?;
    let order = devices::plan(&machine.candidates, &machine.settings)?;
    let opts = machine.open_options(a.ctx, a.no_fallback, false);
    let opened = devices::open_session(&model, &order, &opts, &mut backends::open, &mut |_, _, _| {})?;
    if !opened.events.is_empty() {
        eprintln!("forge: {}", devices::fallback_line(&opened.events, &opened.candidate));
    }
    let mut session = opened.session;
    let bos = model.tokenizer.bos_id().filter(|_| tokens.first() == model.tokenizer.bos_id().as_ref());
    let bar = ProgressBar::new((tokens.len() / a.ctx.max(1)) as u64)
        .with_style(ProgressStyle::with_template("perplexity [{bar:30}] {pos}/{len} chunks, eta {eta}").expect("valid template").progress_chars("=> "));
    let p = forge_engine::perplexity::perplexity(&mut session, &tokens, a.ctx, bos, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::json!({ "ppl": p.ppl, "stderr": p.stderr, "chunks": p.chunks, "scored_tokens": p.scored_tokens, "ctx": a.ctx, "backend": session.backend_name(), "device": session.device(), "model": path.display().to_string(), "file": a.file.display().to_string() }));
    } else {
        println!("perplexity {:.4} ± {:.4} ({} chunks of {}, {} on {})", p.ppl, p.stderr, p.chunks, a.ctx, session.backend_name(), session.device());
    }
    Ok(())
}
