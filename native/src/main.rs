//! `forge`: run language models on whatever this machine has.

mod backends;
mod bench;
mod cache;
mod devices;
mod doctor;
mod perplexity;
mod pull;
mod run;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "forge", version, about = "Forge: a portable inference engine for Llama-family models (GGUF and safetensors)", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (streams tokens to stdout).
    Run(run::RunArgs),
    /// Download a known model into the model cache, checking its SHA-256.
    Pull(pull::PullArgs),
    /// List every device (CPU, GPUs through wgpu, CUDA), ranked, with why each unusable one is.
    Devices(devices::DevicesArgs),
    /// Check each usable backend against the CPU reference, measure bandwidth, verify a model file.
    Doctor(doctor::DoctorArgs),
    /// Measure load time, prefill and decode speed on each backend, optionally against llama.cpp.
    Bench(bench::BenchArgs),
    /// Perplexity of a model over a text file (llama.cpp's convention: score the second half of each chunk).
    Perplexity(perplexity::PerplexityArgs),
    /// Serve an OpenAI-compatible HTTP API (chat and text completions, streaming, structured output) with continuous batching.
    ///
    /// With RUST_LOG=info it logs one line per request: id, outcome, tokens, time to first token.
    Serve(serve::ServeArgs),
}

/// Keeps Mesa's Vulkan device-select layer from printing
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` (twice) on every command
/// of a machine without a desktop session.
///
/// The layer is implicit: it sits under every Vulkan instance, and when the application enables
/// `VK_KHR_wayland_surface` (wgpu always does where the driver offers it) it calls
/// `wl_display_connect` to find the compositor's GPU and put it first, and libwayland logs that
/// line to stderr when there is no session. Without `XDG_RUNTIME_DIR` there is no compositor to
/// find, and `forge` ranks devices itself, so the layer is switched off (`NODEVICE_SELECT=1`)
/// exactly then — unless the user set `NODEVICE_SELECT` or chose a device through the layer
/// (`MESA_VK_DEVICE_SELECT`, `DRI_PRIME`).
fn quiet_vulkan_device_select() {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("XDG_RUNTIME_DIR") || set("NODEVICE_SELECT") || set("MESA_VK_DEVICE_SELECT") || set("DRI_PRIME") {
        return;
    }
    // SAFETY: called first thing in `main`, before any thread exists that could read the
    // environment concurrently.
    unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
}

fn main() -> std::process::ExitCode {
    quiet_vulkan_device_select();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Pull(a) => pull::pull(a),
        Command::Devices(a) => devices::devices(a),
        Command::Doctor(a) => doctor::doctor(a),
        Command::Bench(a) => bench::bench(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
        Command::Serve(a) => serve::serve(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
