//! The JavaScript API (see `www/app.js` for its use):
//!
//! - `adapterInfo()` → JSON: the WebGPU adapter wgpu picks, its limits and features.
//! - `new ModelBytes(capacity)`, `.push(chunk)`, `.bytesRead()`, `.magic()`: a model file read
//!   into wasm memory chunk by chunk as the page streams it, so JavaScript never holds a whole
//!   copy.
//! - `Forge.load(modelBytes, name, ctx, onProgress)` → a `Forge`: the GGUF parsed in wasm through
//!   the family registry (`Model::from_gguf`), weights uploaded to the GPU (`onProgress(done,
//!   total)` per tensor), then dropped from wasm memory. `modelBytes` is consumed.
//! - `forge.info()`, `forge.tokenize(text, addBos, parseSpecial)`, `forge.decode(ids)`,
//!   `forge.applyChatTemplate(messagesJson, addGenerationPrompt)`.
//! - `forge.generate(ids, optionsJson, onText)` → a Promise of a JSON summary; `onText(piece)` is
//!   called with each complete piece of text. `forge.stop()` ends it before the next forward pass.
//! - `forge.bench(nPrompt, nGen, seed)` → a Promise of JSON `{prefill_ms, decode_ms}`: a greedy
//!   prefill of `nPrompt` deterministic ids (`devices::bench`), then `nGen` decode steps, as native
//!   `forge bench` times them.
//! - `forge.forcedLogits(ids, first, probe)` → a Promise of JSON `{argmax, best, probe, ms}`: one
//!   prefill of all of `ids` (teacher-forced: the model sees them whatever it would have picked),
//!   reduced from row `first` on to each row's argmax, best logit and the logits of the `probe`
//!   ids (`forced.rs`). web/test/browser.mjs checks the page against llama.cpp's reference with it.
//! - `forge.unload()` frees the GPU buffers (also done by `free()`, wasm-bindgen's destructor).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

use forge_engine::backend::wgpu::WgpuBackend;
use forge_engine::formats::FileBytes;
use forge_engine::formats::gguf::GgufFile;
use forge_engine::session::Readout;
use forge_engine::session::Forward;
use forge_engine::tokenizer::{ChatMessage, Tokenizer};
use forge_engine::{Model, Session, generate_async};
use serde_json::json;
use wasm_bindgen::prelude::*;
use web_time::Instant;

use crate::forced::ForcedRows;
use crate::options::{Message, WebOptions};
use crate::stop::{StopSignal, Stoppable};

/// Panics reach the browser console with their message instead of "unreachable executed", and
/// so do the engine's warnings and errors.
#[wasm_bindgen(start)]
fn start() {
    crate::console::install();
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("forge panicked: {info}")))
    }));
}

fn err(what: impl std::fmt::Display) -> JsError {
    JsError::new(&what.to_string())
}

async fn request_adapter() -> Result<wgpu::Adapter, JsError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::BROWSER_WEBGPU,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    instance
        .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
        .await
        .map_err(|e| err(format!("WebGPU is not available: no adapter ({e}). Use a browser with WebGPU enabled (Chrome/Edge 113+, or Chromium with --enable-unsafe-webgpu).")))
}

fn limits_json(l: &wgpu::Limits) -> serde_json::Value {
    json!({
        "max_buffer_size": l.max_buffer_size,
        "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
        "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
        "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
        "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
        "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
    })
}

/// The adapter a model would run on, as JSON: `{name, vendor, device, device_type, driver,
/// backend, features, limits}`. Rejects with a readable message when there is no WebGPU.
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Result<String, JsError> {
    let adapter = request_adapter().await?;
    let i = adapter.get_info();
    let features: Vec<String> = adapter
        .features()
        .iter_names()
        .map(|(n, _)| n.to_lowercase())
        .collect();
    Ok(json!({
        "name": i.name, "vendor": i.vendor, "device": i.device, "device_type": format!("{:?}", i.device_type),
        "driver": i.driver, "driver_info": i.driver_info, "backend": format!("{:?}", i.backend),
        "features": features, "limits": limits_json(&adapter.limits()),
    })
    .to_string())
}

/// A model file's bytes in wasm memory, appended chunk by chunk as the page reads a fetch, the
/// Cache API or a picked file. `Forge.load` takes them over: the file is copied once, from each
/// JavaScript chunk to its place here, and weights are views into it until they are uploaded.
#[wasm_bindgen]
pub struct ModelBytes {
    bytes: Vec<u8>,
}

#[wasm_bindgen]
impl ModelBytes {
    /// Room for `capacity` bytes reserved up front (the Content-Length; 0 when unknown), so a
    /// known size grows wasm memory once. Rejects when wasm memory cannot hold them.
    #[wasm_bindgen(constructor)]
    pub fn new(capacity: usize) -> Result<ModelBytes, JsError> {
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(capacity)
            .map_err(|_| err(format!("WebAssembly memory cannot hold a model of {capacity} bytes")))?;
        Ok(ModelBytes { bytes })
    }

    /// Appends `chunk`, copied straight from the JavaScript array into wasm memory.
    pub fn push(&mut self, chunk: &js_sys::Uint8Array) -> Result<(), JsError> {
        let start = self.bytes.len();
        let n = chunk.length() as usize;
        self.bytes
            .try_reserve(n)
            .map_err(|_| err(format!("WebAssembly memory cannot hold a model of more than {start} bytes")))?;
        self.bytes.resize(start + n, 0);
        chunk.copy_to(&mut self.bytes[start..]);
        Ok(())
    }

    /// Bytes read so far.
    #[wasm_bindgen(js_name = bytesRead)]
    pub fn bytes_read(&self) -> usize {
        self.bytes.len()
    }

    /// The first four bytes as text ("GGUF" for a GGUF file).
    pub fn magic(&self) -> String {
        self.bytes.iter().take(4).map(|&b| char::from(b)).collect()
    }
}

/// A model on the page's GPU.
#[wasm_bindgen]
pub struct Forge {
    /// `None` while a generation holds the session, or after `unload`.
    session: Rc<RefCell<Option<Session>>>,
    busy: Rc<Cell<bool>>,
    tokenizer: Rc<Tokenizer>,
    stop: StopSignal,
    info: String,
}

#[wasm_bindgen]
impl Forge {
    /// Parses `bytes` as GGUF (any family the engine knows), opens the adapter and uploads the
    /// weights; `ctx` positions of KV cache. `on_progress(done_bytes, total_bytes)` follows the
    /// upload.
    pub async fn load(
        bytes: ModelBytes,
        name: String,
        ctx: usize,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Forge, JsError> {
        let ModelBytes { bytes } = bytes;
        let file_bytes = bytes.len();
        let file = GgufFile::from_bytes(FileBytes::from_vec(bytes))
            .map_err(|e| err(format!("{name} is not a supported GGUF file: {e}")))?;
        let model = Model::from_gguf(file, Path::new(&name))
            .map_err(|e| err(format!("{name} cannot be loaded: {e}")))?;
        let adapter = request_adapter().await?;
        let limits = adapter.limits();
        let stop = StopSignal::default();
        let backend = WgpuBackend::with_adapter_async(adapter)
            .await
            .map_err(|e| err(format!("cannot open the WebGPU device: {e}")))?;
        let backend = Stoppable {
            inner: backend,
            signal: stop.clone(),
        };
        let mut progress = |done: u64, total: u64| {
            if let Some(f) = &on_progress {
                let _ = f.call2(
                    &JsValue::NULL,
                    &JsValue::from_f64(done as f64),
                    &JsValue::from_f64(total as f64),
                );
            }
        };
        let session = Session::new(&model, Box::new(backend), ctx, &mut progress).map_err(|e| {
            err(format!(
                "{name} exceeds this adapter's limits (max storage binding {} bytes, max buffer {} bytes): {e}",
                limits.max_storage_buffer_binding_size, limits.max_buffer_size
            ))
        })?;
        let c = &model.config;
        // A weight larger than one storage binding cannot be bound whole: the wgpu backend pages
        // it by rows (engine/src/backend/wgpu/buffers.rs: pages of at most `binding` bytes, 4 of
        // them padding). Reported so the page and the test can see it happen.
        let binding = (limits.max_storage_buffer_binding_size as u64).min(limits.max_buffer_size) & !3;
        let paged: Vec<_> = model
            .weights
            .iter()
            .filter(|(_, t)| t.as_bytes().len() as u64 + 4 > binding)
            .map(|(n, t)| json!({ "name": n, "bytes": t.as_bytes().len() }))
            .collect();
        let dtypes: Vec<String> = model
            .dtype_counts()
            .iter()
            .map(|(d, n)| format!("{n}× {d:?}"))
            .collect();
        let info = json!({
            "name": model.source.name.clone().unwrap_or(name), "arch": c.arch_name, "n_layer": c.n_layer, "n_embd": c.n_embd,
            "n_head": c.n_head, "n_vocab": c.n_vocab, "ctx": ctx, "ctx_train": c.ctx_train, "file_bytes": file_bytes,
            "weight_bytes": model.weight_bytes(), "dtypes": dtypes, "device": session.device(),
            "gpu_bytes": session.backend().memory_used(), "max_binding": binding, "paged": paged,
            "chat_template": model.tokenizer.chat_template().is_some(),
        })
        .to_string();
        // The weights now live on the GPU: only the tokenizer stays in wasm memory.
        let Model { tokenizer, .. } = model;
        Ok(Forge {
            session: Rc::new(RefCell::new(Some(session))),
            busy: Rc::new(Cell::new(false)),
            tokenizer: Rc::new(tokenizer),
            stop,
            info,
        })
    }

    /// The model and device, as JSON.
    pub fn info(&self) -> String {
        self.info.clone()
    }

    /// Token ids of `text`; BOS is added only if `add_bos` and the model asks for it.
    pub fn tokenize(
        &self,
        text: &str,
        add_bos: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, JsError> {
        self.tokenizer
            .encode(text, add_bos, parse_special)
            .map_err(err)
    }

    pub fn decode(&self, ids: Vec<u32>) -> Result<String, JsError> {
        self.tokenizer.decode(&ids).map_err(err)
    }

    /// Renders `messages_json` (`[{"role": "user", "content": "..."}]`) with the model's chat
    /// template, at the page's clock.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
    ) -> Result<String, JsError> {
        let template = self
            .tokenizer
            .chat_template()
            .ok_or_else(|| err("this model has no chat template: use raw mode"))?;
        let messages: Vec<ChatMessage> = Message::parse_list(messages_json)
            .map_err(err)?
            .into_iter()
            .map(|m| ChatMessage::new(m.role, m.content))
            .collect();
        template.set_clock(Some((js_sys::Date::now() / 1000.0) as i64));
        template
            .render(&messages, add_generation_prompt)
            .map_err(err)
    }

    /// Generates from `prompt` (ids), calling `on_text(piece)` as text streams out. Resolves to
    /// JSON `{ids, text, finish, n_prompt, n_gen, prefill_ms, decode_ms, prefill_tok_s,
    /// decode_tok_s}`; after `stop()`, `finish` is "stopped" and `ids` is empty.
    pub fn generate(
        &self,
        prompt: Vec<u32>,
        options_json: &str,
        on_text: js_sys::Function,
    ) -> js_sys::Promise {
        let opts = WebOptions::parse(options_json).map(|o| o.to_generate());
        let (session, busy, tokenizer, stop) = (
            self.session.clone(),
            self.busy.clone(),
            self.tokenizer.clone(),
            self.stop.clone(),
        );
        wasm_bindgen_futures::future_to_promise(async move {
            let opts = opts.map_err(|e| JsValue::from(err(e)))?;
            let mut s = take_session(&session, &busy)?;
            stop.reset();
            let start = Instant::now();
            let mut callback_error = None;
            let mut on_piece = |piece: &str| {
                if let Err(e) = on_text.call1(&JsValue::NULL, &JsValue::from_str(piece)) {
                    callback_error.get_or_insert(e);
                    stop.request();
                }
            };
            let mut streamed = String::new();
            let result = generate_async(&mut s, &tokenizer, &prompt, &opts, &mut |p| {
                streamed.push_str(p);
                on_piece(p)
            })
            .await;
            busy.set(false);
            let unloaded = stop.unload_requested();
            if !unloaded {
                *session.borrow_mut() = Some(s);
            }
            if let Some(e) = callback_error {
                return Err(e);
            }
            let n_prompt = prompt.len();
            let summary = match result {
                Ok(g) => json!({
                    "ids": g.ids, "text": g.text, "finish": g.finish, "n_prompt": n_prompt, "n_gen": g.ids.len(),
                    "prefill_ms": g.prefill.as_secs_f64() * 1e3, "decode_ms": g.decode.as_secs_f64() * 1e3,
                    "prefill_tok_s": g.prefill_tok_s(n_prompt), "decode_tok_s": g.decode_tok_s(),
                }),
                Err(e) if StopSignal::is_stop(&e) => {
                    let chunks = n_prompt.div_ceil(opts.prefill_chunk.max(1));
                    let n_gen = (stop.forwards() + 1).saturating_sub(chunks);
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    json!({
                        "ids": [], "text": streamed, "finish": "stopped", "n_prompt": n_prompt, "n_gen": n_gen,
                        "prefill_ms": null, "decode_ms": ms, "prefill_tok_s": null, "decode_tok_s": n_gen as f64 / (ms / 1e3).max(1e-9),
                    })
                }
                Err(e) => return Err(err(e).into()),
            };
            Ok(JsValue::from_str(&summary.to_string()))
        })
    }

    /// Times a greedy prefill of `n_prompt` ids from `forge_engine::devices::bench::synthetic_tokens(.., seed)` (in chunks of 512,
    /// like native `forge bench`) and `n_gen` decode steps that feed back the argmax. Resolves to
    /// JSON `{prefill_ms, decode_ms}`.
    pub fn bench(&self, n_prompt: usize, n_gen: usize, seed: u64) -> js_sys::Promise {
        let (session, busy) = (self.session.clone(), self.busy.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let mut s = take_session(&session, &busy)?;
            let result = bench_once(&mut s, n_prompt, n_gen, seed).await;
            busy.set(false);
            *session.borrow_mut() = Some(s);
            let (prefill_ms, decode_ms) = result.map_err(|e| JsValue::from(err(e)))?;
            Ok(JsValue::from_str(
                &json!({ "prefill_ms": prefill_ms, "decode_ms": decode_ms }).to_string(),
            ))
        })
    }

    /// One prefill of `ids` from an empty cache, every row read out (row `j` predicts the id
    /// after `ids[j]`), reduced from row `first` on by [`ForcedRows::of`] to argmax, best logit
    /// and the logits of `probe`. Resolves to JSON `{argmax, best, probe, ms}`, one entry per row
    /// from `first` to `ids.len() - 1`.
    #[wasm_bindgen(js_name = forcedLogits)]
    pub fn forced_logits(&self, ids: Vec<u32>, first: usize, probe: Vec<u32>) -> js_sys::Promise {
        let (session, busy, stop) = (self.session.clone(), self.busy.clone(), self.stop.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let mut s = take_session(&session, &busy)?;
            stop.reset();
            let t = Instant::now();
            s.reset();
            let result = s.forward_async(&ids, Readout::LogitsAll).await;
            s.reset();
            busy.set(false);
            let n_vocab = s.config().n_vocab;
            if !stop.unload_requested() {
                *session.borrow_mut() = Some(s);
            }
            let Forward::Logits { values, .. } = result.map_err(|e| JsValue::from(err(e)))? else {
                return Err(err("the prefill returned no logits").into());
            };
            let rows = ForcedRows::of(&values, n_vocab, first, &probe)
                .map_err(|e| JsValue::from(err(e)))?;
            let mut out = serde_json::to_value(rows).map_err(|e| JsValue::from(err(e)))?;
            out["ms"] = json!(t.elapsed().as_secs_f64() * 1e3);
            Ok(JsValue::from_str(&out.to_string()))
        })
    }

    /// Ends a running generation before its next forward pass.
    pub fn stop(&self) {
        self.stop.request();
    }

    /// Frees the model's GPU buffers now (a running generation is stopped first).
    pub fn unload(&self) {
        if self.busy.get() {
            self.stop.request_unload();
        }
        self.session.borrow_mut().take();
    }
}

/// One prefill and decode, timed in milliseconds (native/src/bench.rs `prefill` and `decode`).
async fn bench_once(
    s: &mut Session,
    n_prompt: usize,
    n_gen: usize,
    seed: u64,
) -> forge_engine::Result<(f64, f64)> {
    let toks = forge_engine::devices::bench::synthetic_tokens(n_prompt.max(1), s.config().n_vocab, seed);
    s.reset();
    let t = Instant::now();
    let mut last = 0;
    for chunk in toks.chunks(512) {
        if let Forward::Token(id) = s.forward_async(chunk, Readout::ArgmaxLast).await? {
            last = id;
        }
    }
    let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    for _ in 0..n_gen {
        if let Forward::Token(id) = s.forward_async(&[last], Readout::ArgmaxLast).await? {
            last = id;
        }
    }
    Ok((prefill_ms, t.elapsed().as_secs_f64() * 1e3))
}

/// The session for one task of the page (a generation, a bench, a scoring pass), marked busy;
/// the caller puts it back and clears `busy`. An error while another task holds it, or after an
/// unload.
fn take_session(session: &RefCell<Option<Session>>, busy: &Cell<bool>) -> Result<Session, JsValue> {
    if busy.get() {
        return Err(err("a generation is already running: stop it first").into());
    }
    let s = session.borrow_mut().take().ok_or_else(|| JsValue::from(err("the model was unloaded")))?;
    busy.set(true);
    Ok(s)
}
