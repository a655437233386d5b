//! `forge serve`: an OpenAI-compatible HTTP server over the batching engine.
//!
//! Each request becomes one engine [`Request`](forge_engine::batching::Request) per choice. A
//! sequence's sink sends its events into an unbounded channel read by the response (a JSON body
//! or a server-sent event stream); when the response is dropped — the client went away — the
//! engine's next send fails, which cancels the sequence and frees its KV blocks. Nothing on the
//! async side blocks: templating, tokenizing and grammar compilation run on tokio's blocking
//! pool, the model on the engine's own thread.
//!
//! Files: `routes.rs` (handlers, body reading, errors), `choices.rs` (submitting choices,
//! collecting a whole response), `sse.rs` (the event stream), `grammar.rs` (structured output,
//! cached), `metrics.rs` (Prometheus), `auth.rs` (API key). The wire format itself — parsing,
//! validation, response shapes — is the library's `forge::serve_api`.

mod auth;
mod choices;
mod grammar;
mod listen;
mod metrics;
mod routes;
mod sse;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use forge::serve_api::{ApiError, Limits};
use forge_engine::Model;
use forge_engine::batching::{self, Engine, EngineConfig};
use forge_engine::devices;

use crate::backends;
use crate::devices::SelectArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// A .gguf file or a Hugging Face model directory. Default: SmolLM2-135M-Instruct Q4_1 from
    /// the model cache. Its file stem is the model id clients pass (`GET /v1/models` lists it).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Address to listen on. The default accepts local connections only; to serve a network, use
    /// 0.0.0.0 (or ::) and set an API key.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one. The first line on stdout is always
    /// `listening on http://ADDRESS`, with the port actually bound.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health. Prefer the environment
    /// variable: other users of the machine can read a process's arguments, not its environment.
    #[arg(long, env = "FORGE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Sequences generated together (continuous batching): more raises throughput and memory use.
    #[arg(long, default_value_t = 16)]
    max_seqs: usize,
    /// Context per sequence in tokens, prompt and completion together (default: the model's,
    /// capped at 4096). The KV cache holds about max-seqs × ctx tokens.
    #[arg(long)]
    ctx: Option<usize>,
    /// Requests that may wait for a free sequence; beyond them the server answers 429 with
    /// Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Prompt tokens processed per step across sequences in prefill (bounds how long a long
    /// prompt holds up running decodes).
    #[arg(long, default_value_t = 256)]
    prefill_chunk: usize,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Seconds a client has to send a request's headers (on a kept-alive connection, counted from
    /// the previous response, so idle connections close too), and then as long for its body. A
    /// client that stalls on headers is disconnected; one that stalls on its body gets 408.
    #[arg(long, default_value_t = 30)]
    read_timeout: u64,
    /// Connections open at once; more wait in the kernel's backlog until one closes.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    #[command(flatten)]
    select: SelectArgs,
    /// Fail when the chosen device cannot run the model instead of falling back to the next one.
    #[arg(long)]
    no_fallback: bool,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub engine: Engine,
    pub limits: Limits,
    pub api_key: Option<auth::Key>,
    pub metrics: Arc<metrics::Metrics>,
    pub grammars: grammar::Cache,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// Unix seconds at start, `created` of the model card.
    pub started: u64,
    /// Slots for request preparation on the blocking pool (see [`AppState::blocking`]).
    pub prep: tokio::sync::Semaphore,
}

impl AppState {
    /// Runs CPU-heavy request preparation (templating, tokenizing, compiling a grammar) on the
    /// blocking pool, a few at a time, so that a flood of large requests waits here rather than
    /// taking a thread each from the engine and the runtime.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _slot = self.prep.acquire().await.map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("preparing the request failed: {e}")))
    }
}

pub(crate) type Shared = Arc<AppState>;

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.max_seqs >= 1, "--max-seqs must be at least 1");
    anyhow::ensure!(a.prefill_chunk >= 1, "--prefill-chunk must be at least 1");
    let path = match &a.model {
        Some(p) => p.clone(),
        None => crate::cache::default_model()?,
    };
    let t0 = Instant::now();
    let model = Model::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let ctx = a.ctx.unwrap_or(model.config.ctx_train.min(4096));
    anyhow::ensure!(ctx >= 2, "--ctx must be at least 2 tokens");
    let config = EngineConfig { max_seqs: a.max_seqs, ctx, max_queue: a.max_queue, prefill_chunk: a.prefill_chunk };

    let machine = crate::devices::detect(&a.select)?;
    let order = devices::plan(&machine.candidates, &machine.settings)?;
    // The session's KV cache becomes the engine's block pool.
    let opts = machine.open_options(batching::pool_tokens(&config), a.no_fallback, true);
    let opened = backends::open_with_progress(&model, &order, &opts)?;
    let engine = Engine::start(model, opened.session, config).context("starting the engine")?;
    tracing::info!(model = engine.model_name(), backend = engine.backend(), ctx, max_seqs = a.max_seqs, load_ms = t0.elapsed().as_millis() as u64, "model loaded");

    let limits = Limits::new(engine.model_name(), ctx, engine.tokenizer().vocab_size());
    let state = Arc::new(AppState {
        engine,
        limits,
        api_key: a.api_key.as_deref().map(auth::Key::new),
        metrics: Arc::new(metrics::Metrics::default()),
        grammars: grammar::Cache::default(),
        max_body_bytes: a.max_body_bytes,
        body_timeout: Duration::from_secs(a.read_timeout.max(1)),
        started: unix_now(),
        prep: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let limits = listen::ConnectionLimits { header_timeout: Duration::from_secs(a.read_timeout.max(1)), max_connections: a.max_connections };
    runtime.block_on(run(state, &a.host, a.port, limits))
}

async fn run(state: Shared, host: &str, port: u16, limits: listen::ConnectionLimits) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("binding {host}:{port}"))?;
    let addr = listener.local_addr()?;
    // The first line on stdout, which scripts and tests wait for (with --port 0, the only way to
    // learn the port).
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    drop(out);
    if state.api_key.is_none() && !addr.ip().is_loopback() {
        tracing::warn!("serving {addr} without an API key: anyone who can reach it can use it (--api-key)");
    }
    listen::serve(listener, routes::router(state), limits, shutdown_signal()).await;
    Ok(())
}

/// Ctrl-C, or SIGTERM where there is one: stop accepting, let open responses finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
