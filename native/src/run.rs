//! `forge run`: load a model, apply its chat template, generate, stream or print JSON.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use forge_engine::tokenizer::ChatMessage;
use forge_engine::devices;
use forge_engine::model::SamplingDefaults;
use forge_engine::{GenerateOptions, Model, SamplerConfig, Session, generate};

use crate::backends;
use crate::devices::SelectArgs;

#[derive(Args)]
pub struct RunArgs {
    /// A .gguf file or a Hugging Face model directory. Default: SmolLM2-135M-Instruct Q4_1 from the model cache.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// The prompt. Read from stdin when absent.
    #[arg(long, short)]
    prompt: Option<String>,
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy (deterministic). [default: the model's recommendation
    /// (its file or, for `forge pull` models, its model card), else 0.8; likewise below]
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep only the K most likely tokens (0: all). [default: 40]
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass. [default: 0.95]
    #[arg(long)]
    top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the most likely one. [default: 0.05]
    #[arg(long)]
    min_p: Option<f32>,
    /// Penalise recently generated tokens (1.0: off). [default: 1.0]
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Random seed (default: from the clock). The same seed gives the same text on every backend.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Feed the prompt as plain text instead of through the model's chat template.
    #[arg(long)]
    raw: bool,
    /// System message for the chat template (default: the template's own).
    #[arg(long)]
    system: Option<String>,
    /// Context length in tokens (default: the model's, capped at 4096).
    #[arg(long)]
    ctx: Option<usize>,
    #[command(flatten)]
    select: SelectArgs,
    /// Fail when the chosen device cannot run the model instead of falling back to the next one.
    #[arg(long)]
    no_fallback: bool,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    json: bool,
    /// With --json, also report the K highest logits at each generated position.
    #[arg(long, default_value_t = 0)]
    top_logits: usize,
}

/// The sampler: each setting from its flag, else the model's recommendation, else llama.cpp's
/// default.
fn sampler_config(a: &RunArgs, model: &Model, path: &std::path::Path, seed: u64) -> SamplerConfig {
    let base = SamplerConfig { seed, ..SamplerConfig::default() };
    let base = match crate::cache::recommended_sampling(model, path) {
        Some((hints, from)) => {
            tracing::info!("sampling defaults from {from}: {hints:?}");
            hints.apply(base)
        }
        None => base,
    };
    // The flags are settings given or not, as the model's are: the same overlay, applied last.
    let flags = SamplingDefaults { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, min_p: a.min_p, repeat_penalty: a.repeat_penalty };
    flags.apply(base)
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let path = match &a.model {
        Some(p) => p.clone(),
        None => crate::cache::default_model()?,
    };
    let prompt = match &a.prompt {
        Some(p) => p.clone(),
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the prompt from stdin")?;
            s
        }
    };

    let t0 = Instant::now();
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let ctx = a.ctx.unwrap_or(model.config.ctx_train.min(4096));
    let machine = crate::devices::detect(&a.select)?;
    let order = devices::plan(&machine.candidates, &machine.settings)?;
    let opts = machine.open_options(ctx, a.no_fallback, true);
    let opened = backends::open_with_progress(&model, &order, &opts)?;
    let mut session: Session = opened.session;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    let tok = &model.tokenizer;
    let text_fed = match (a.raw, tok.chat_template()) {
        (false, Some(tpl)) => {
            let mut msgs = Vec::new();
            if let Some(s) = &a.system {
                msgs.push(ChatMessage { role: "system".into(), content: s.clone() });
            }
            msgs.push(ChatMessage { role: "user".into(), content: prompt.clone() });
            tpl.render(&msgs, true)?
        }
        _ => prompt.clone(),
    };
    let prompt_ids = tok.encode(&text_fed, true, true)?;
    let seed = a.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler: sampler_config(&a, &model, &path, seed),
        stop: a.stop.clone(),
        top_logits: if a.json { a.top_logits } else { 0 },
        ..GenerateOptions::default()
    };
    let mut stdout = std::io::stdout().lock();
    let json = a.json;
    let g = generate(&mut session, tok, &prompt_ids, &opts, &mut |piece| {
        if !json {
            // A closed pipe (`forge run | head`) is not an error worth a panic.
            let _ = stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush());
        }
    })?;

    if json {
        let out = serde_json::json!({
            "text": g.text,
            "prompt_ids": prompt_ids,
            "ids": g.ids,
            "finish_reason": g.finish,
            "backend": session.backend_name(),
            "device": session.device(),
            "fallbacks": opened.events,
            "model": path.display().to_string(),
            "load_ms": load_ms,
            "sampling": {
                "temperature": opts.sampler.temperature,
                "top_k": opts.sampler.top_k,
                "top_p": opts.sampler.top_p,
                "min_p": opts.sampler.min_p,
                "repeat_penalty": opts.sampler.repeat_penalty,
                "seed": opts.sampler.seed,
            },
            "prefill_tok_s": g.prefill_tok_s(prompt_ids.len()),
            "decode_tok_s": g.decode_tok_s(),
            "top_logits": if a.top_logits > 0 { serde_json::to_value(&g.top_logits)? } else { serde_json::Value::Null },
        });
        writeln!(stdout, "{out}")?;
    } else {
        writeln!(stdout)?;
        eprintln!(
            "[{} on {}: {} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s, {:?}]",
            session.backend_name(),
            session.device(),
            prompt_ids.len(),
            g.prefill_tok_s(prompt_ids.len()),
            g.ids.len(),
            g.decode_tok_s(),
            g.finish
        );
    }
    Ok(())
}
