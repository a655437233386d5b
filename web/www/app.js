// The demo page: adapter info, model loading (file, drop, or same-origin URL; kept in the Cache
// API), and a chat that streams tokens from forge-web (../src/bindings.rs) as they are generated.
// `?model=models/<file>.gguf` loads that model on start (the browser test uses it).
// Bench mode: `?bench=1&model=models/<file>.gguf&p=32&n=8&r=1` loads the model, then runs
// `forgeBench({p, n, r})` and publishes its row (native `forge bench`'s `Row`) as JSON in #bench
// and `document.body.dataset.bench`; web/test/bench.mjs reads it for `forge bench --browser`.
// `forgeForced({ids, first, probe})` gives web/test/browser.mjs teacher-forced logits, and
// `window.forgeInfo` the loaded model's info (`Forge.info()`, plus the wasm memory's size).

import init, { adapterInfo, Forge, ModelBytes } from "./pkg/forge_web.js";

const $ = (id) => document.getElementById(id);
const CACHE = "forge-models-v1";
// wasm32 addresses 4 GiB; the file is read into wasm memory (ModelBytes) before the weights go
// to the GPU, and uploading takes room for a page of weights besides.
const MAX_MODEL_BYTES = 2 ** 31;

let forge = null;
let messages = [];
let generating = false;
let adapterName = "";
let loadMs = null;
let wasmMemory = null;

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function fmtBytes(n) {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

function setBusy(busy) {
  generating = busy;
  document.body.dataset.state = busy ? "generating" : forge ? "ready" : "idle";
  $("send").disabled = busy || !forge;
  $("prompt").disabled = !forge;
  $("stop").disabled = !busy;
  $("unload").disabled = !forge;
}

// ---- GPU ---------------------------------------------------------------------------------

async function showAdapter() {
  if (!("gpu" in navigator)) {
    throw new Error("WebGPU is not available in this browser (navigator.gpu is missing). Use Chrome or Edge 113+, Safari 26+, or Firefox with WebGPU enabled; on Linux Chromium may need --enable-unsafe-webgpu.");
  }
  const info = JSON.parse(await adapterInfo());
  // wgpu reports little about a browser adapter; the browser's own GPUAdapterInfo says more.
  const web = (await navigator.gpu.requestAdapter())?.info;
  const name = info.name || [web?.vendor, web?.architecture, web?.description].filter(Boolean).join(" ") || "unnamed adapter";
  adapterName = name;
  $("adapter").textContent = `${name} (${info.backend}, ${info.device_type}${info.driver ? ", " + info.driver : ""}); shader-f16: ${info.features.includes("shader_f16") ? "yes" : "no"}`;
  $("limits").innerHTML = "";
  for (const [k, v] of Object.entries(info.limits)) {
    const row = $("limits").insertRow();
    row.insertCell().textContent = k;
    row.insertCell().textContent = k.endsWith("size") ? `${v} (${fmtBytes(v)})` : v;
  }
  return info;
}

// ---- Model bytes: files, URLs, the cache --------------------------------------------------

function progress(done, total, what) {
  $("progress").hidden = false;
  $("progress").value = total ? done / total : 0;
  status(`${what}: ${fmtBytes(done)}${total ? " of " + fmtBytes(total) : ""}`);
}

function tooLarge(what, size) {
  return new Error(`${what} is ${fmtBytes(size)}; the browser build holds the model in WebAssembly memory, which allows at most ${fmtBytes(MAX_MODEL_BYTES)}. Pick a smaller model or quantization.`);
}

// Reads a Response body chunk by chunk into wasm memory (a ModelBytes, which Forge.load takes
// over), showing progress: the page itself never holds the whole file.
async function readBody(response, what) {
  const total = Number(response.headers.get("Content-Length")) || 0;
  if (total > MAX_MODEL_BYTES) throw tooLarge("the model", total);
  const bytes = new ModelBytes(total);
  try {
    const reader = response.body.getReader();
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      if (bytes.bytesRead() + value.length > MAX_MODEL_BYTES) throw tooLarge("the model", bytes.bytesRead() + value.length);
      bytes.push(value);
      progress(bytes.bytesRead(), total, what);
    }
  } catch (e) {
    bytes.free();
    throw e;
  }
  return bytes;
}

function cacheKey(source) {
  return new URL(source, location.href).href;
}

async function cached(key) {
  if (!("caches" in self)) return null;
  const cache = await caches.open(CACHE);
  return cache.match(key);
}

// Keeps `response` (a stream or a file) in the Cache API under `key`.
async function remember(key, response) {
  if (!("caches" in self)) return;
  try {
    const cache = await caches.open(CACHE);
    await cache.put(key, response);
  } catch (e) {
    status(`loaded, but not cached (${e.message})`);
  }
  await listCached();
}

async function listCached() {
  const box = $("cached");
  box.innerHTML = "";
  if (!("caches" in self)) return;
  const keys = await (await caches.open(CACHE)).keys();
  if (!keys.length) return;
  box.append("Cached in this browser: ");
  for (const req of keys) {
    const name = decodeURIComponent(new URL(req.url).pathname.split("/").pop());
    const load = document.createElement("button");
    load.textContent = name;
    load.title = req.url;
    load.onclick = () => loadFrom(req.url, name);
    const del = document.createElement("button");
    del.textContent = "×";
    del.title = `remove ${name} from the cache`;
    del.onclick = async () => { await (await caches.open(CACHE)).delete(req); listCached(); };
    box.append(load, del, " ");
  }
}

async function fetchModel(url) {
  const key = cacheKey(url);
  const hit = await cached(key);
  if (hit) return { bytes: await readBody(hit, "reading from the browser cache"), fromCache: true };
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status} ${response.statusText}`);
  const length = Number(response.headers.get("Content-Length")) || 0;
  if (length > MAX_MODEL_BYTES) throw tooLarge(url, length);
  // The body goes to wasm memory and to the cache at once, as it arrives.
  const headers = { "Content-Type": "application/octet-stream", ...(length ? { "Content-Length": String(length) } : {}) };
  const [toWasm, toCache] = response.body.tee();
  const caching = remember(key, new Response(toCache, { headers }));
  const bytes = await readBody(new Response(toWasm, { headers }), `downloading ${url}`);
  await caching;
  return { bytes, fromCache: false };
}

async function fileModel(file) {
  if (file.size > MAX_MODEL_BYTES) throw tooLarge(file.name, file.size);
  const headers = { "Content-Type": "application/octet-stream", "Content-Length": String(file.size) };
  const bytes = await readBody(new Response(file, { headers }), `reading ${file.name}`);
  // Local files are cached under a same-origin key, so a reload can offer them again.
  await remember(cacheKey(`local/${encodeURIComponent(file.name)}`), new Response(file, { headers }));
  return bytes;
}

// ---- Loading --------------------------------------------------------------------------------

// Loads a ModelBytes (consumed, also on failure).
async function load(bytes, name) {
  const magic = bytes.magic();
  if (magic !== "GGUF") {
    bytes.free();
    throw new Error(`${name} is not a GGUF file (it starts with ${JSON.stringify(magic)}, not "GGUF"). Forge's browser build loads .gguf models (f32/f16/bf16/q4_0/q4_1/q5_0/q5_1/q8_0/q4_K/q5_K/q6_K).`);
  }
  unload();
  const ctx = Number(new FormData($("sampler")).get("ctx")) || 1024;
  status(`uploading ${name} to the GPU…`);
  const t0 = performance.now();
  forge = await Forge.load(bytes, name, ctx, (done, total) => progress(done, total, "uploading weights to the GPU"));
  const info = JSON.parse(forge.info());
  info.wasm_memory_bytes = wasmMemory.buffer.byteLength;
  window.forgeInfo = info;
  const paged = info.paged.length ? `; paged (larger than one ${fmtBytes(info.max_binding)} binding): ${info.paged.map((w) => `${w.name} ${fmtBytes(w.bytes)}`).join(", ")}` : "";
  $("model-info").textContent = `${info.name}: ${info.arch}, ${info.n_layer} layers, ${info.n_embd} wide, vocabulary ${info.n_vocab}, ${info.dtypes.join(", ")}; ${fmtBytes(info.weight_bytes)} of weights, ${fmtBytes(info.gpu_bytes || 0)} on ${info.device.replace(/^ \(/, `${adapterName} (`)}${paged}; context ${info.ctx}; WebAssembly memory ${fmtBytes(info.wasm_memory_bytes)}`;
  $("mode").value = info.chat_template ? "chat" : "raw";
  $("progress").hidden = true;
  setBusy(false);
  loadMs = performance.now() - t0;
  status(`ready: ${name} loaded in ${(loadMs / 1000).toFixed(1)} s`);
}

async function guarded(task) {
  try {
    await task();
  } catch (e) {
    $("progress").hidden = true;
    setBusy(false);
    status(e.message || String(e), true);
    document.body.dataset.error = e.message || String(e);
  }
}

function loadFrom(url, name) {
  return guarded(async () => {
    const { bytes, fromCache } = await fetchModel(url);
    await load(bytes, name);
    if (fromCache) status($("status").textContent + " (from the browser cache)");
  });
}

function loadFile(file) {
  return guarded(async () => load(await fileModel(file), file.name));
}

function unload() {
  if (forge) {
    forge.unload();
    forge.free();
    forge = null;
    window.forgeInfo = null;
    $("model-info").textContent = "";
  }
  setBusy(false);
}

// ---- Chat -----------------------------------------------------------------------------------

function samplerOptions() {
  const f = new FormData($("sampler"));
  const num = (k) => Number(f.get(k));
  return { max_tokens: num("max_tokens"), temperature: num("temperature"), top_k: num("top_k"), top_p: num("top_p"), min_p: num("min_p"), repeat_penalty: num("repeat_penalty"), seed: num("seed") };
}

function bubble(cls, text = "") {
  const div = document.createElement("div");
  div.className = `msg ${cls}`;
  div.textContent = text;
  $("log").append(div);
  return div;
}

async function send(text) {
  if (!forge || generating || !text.trim()) return;
  const mode = $("mode").value;
  let prompt;
  let out;
  if (mode === "chat") {
    messages.push({ role: "user", content: text });
    bubble("user", text);
    prompt = forge.applyChatTemplate(JSON.stringify(messages), true);
    out = bubble("assistant");
  } else {
    out = bubble("raw");
    const p = document.createElement("span");
    p.className = "prompt";
    p.textContent = text;
    out.append(p);
    prompt = text;
  }
  const ids = forge.tokenize(prompt, true, true);
  setBusy(true);
  const t0 = performance.now();
  let pieces = 0;
  let first = 0;
  const onText = (piece) => {
    if (!pieces) first = performance.now();
    pieces += 1;
    out.append(piece);
    $("log").scrollTop = $("log").scrollHeight;
    if (pieces > 1) $("speed").textContent = `${((pieces - 1) / ((performance.now() - first) / 1000)).toFixed(1)} tok/s`;
  };
  try {
    const g = JSON.parse(await forge.generate(Uint32Array.from(ids), JSON.stringify(samplerOptions()), onText));
    g.prompt_ids = Array.from(ids);
    window.lastGeneration = g;
    if (mode === "chat") messages.push({ role: "assistant", content: g.text });
    const prefill = g.prefill_tok_s ? `prefill ${g.n_prompt} tok at ${g.prefill_tok_s.toFixed(1)} tok/s, ` : "";
    $("speed").textContent = `${prefill}${g.n_gen} tok at ${g.decode_tok_s.toFixed(1)} tok/s (${g.finish}), first token after ${(first ? first - t0 : 0).toFixed(0)} ms`;
    status(`ready (${g.finish})`);
  } catch (e) {
    bubble("error", e.message || String(e));
    if (mode === "chat") messages.pop();
    throw e;
  } finally {
    setBusy(false);
  }
}

// ---- Bench ---------------------------------------------------------------------------------

// Median, min and max as native `Stat::of` takes them (the upper median for an even count).
function stat(values) {
  const v = [...values].sort((a, b) => a - b);
  return { median: v[Math.floor(v.length / 2)], min: v[0], max: v[v.length - 1] };
}

// Like native `forge bench`: a warm-up (a prefill of up to 64 ids, 2 decode steps), then `r`
// timed runs of a greedy prefill of `p` ids and `n` decode steps, each on its own seed.
async function forgeBench({ p = 32, n = 8, r = 1 } = {}) {
  if (!forge) throw new Error("forgeBench: no model is loaded");
  if (generating) throw new Error("forgeBench: a generation is running");
  setBusy(true);
  try {
    status(`bench: warm-up`);
    await forge.bench(Math.min(p, 64), 2, 1n);
    const pp = [];
    const tg = [];
    for (let i = 0; i < Math.max(r, 1); i++) {
      status(`bench: run ${i + 1} of ${Math.max(r, 1)} (pp${p}, tg${n})`);
      const t = JSON.parse(await forge.bench(p, n, BigInt(2 + i)));
      pp.push(p / (t.prefill_ms / 1000));
      tg.push(n / (t.decode_ms / 1000));
    }
    const row = {
      engine: "forge", backend: "browser-webgpu", device: adapterName, load_ms: loadMs,
      pp_tok_s: stat(pp), tg_tok_s: stat(tg),
      peak_memory_bytes: null, launches_per_token: null, bytes_per_token: null, effective_gb_s: null,
      copy_gb_s: null, bandwidth_fraction: null, vs_llama_cpp: null,
    };
    $("bench").textContent = JSON.stringify(row);
    $("bench").hidden = false;
    document.body.dataset.bench = JSON.stringify(row);
    status(`bench: prefill ${row.pp_tok_s.median.toFixed(1)} tok/s, decode ${row.tg_tok_s.median.toFixed(1)} tok/s`);
    return row;
  } finally {
    setBusy(false);
  }
}
window.forgeBench = forgeBench;

// ---- Teacher-forced logits (web/test/browser.mjs) -------------------------------------------

// One prefill of `ids`, read out from row `first` on: each row's argmax, best logit and the logits
// of the `probe` ids (forge.forcedLogits). `text`, when given, is also tokenized as send() does it,
// so the caller can check that the page's tokenizer gives the ids it fed.
async function forgeForced({ ids, first, probe, text = null }) {
  if (!forge) throw new Error("forgeForced: no model is loaded");
  if (generating) throw new Error("forgeForced: a generation is running");
  setBusy(true);
  try {
    const r = JSON.parse(await forge.forcedLogits(Uint32Array.from(ids), first, Uint32Array.from(probe)));
    if (text !== null) r.text_ids = Array.from(forge.tokenize(text, true, true));
    return r;
  } finally {
    setBusy(false);
  }
}
window.forgeForced = forgeForced;

// ---- Wiring ---------------------------------------------------------------------------------

function wire() {
  $("file").onchange = (e) => e.target.files[0] && loadFile(e.target.files[0]);
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) loadFile(f);
  };
  $("load-url").onclick = () => loadFrom($("url").value, $("url").value.split("/").pop());
  $("unload").onclick = () => { unload(); status("unloaded"); };
  $("prompt-form").onsubmit = (e) => {
    e.preventDefault();
    const text = $("prompt").value;
    $("prompt").value = "";
    guarded(() => send(text));
  };
  $("prompt").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("prompt-form").requestSubmit(); }
  };
  $("stop").onclick = () => forge && forge.stop();
  $("clear").onclick = () => { messages = []; $("log").innerHTML = ""; $("speed").textContent = ""; };
}

async function main() {
  wire();
  setBusy(false);
  wasmMemory = (await init()).memory;
  await showAdapter();
  await listCached();
  status("no model loaded: pick a .gguf file or load one from the server");
  const params = new URLSearchParams(location.search);
  const model = params.get("model");
  const bench = params.get("bench") === "1";
  const size = (k, d) => Number(params.get(k)) || d;
  const sizes = { p: size("p", 32), n: size("n", 8), r: size("r", 1) };
  // The bench needs room for its prompt and decode steps.
  if (bench) $("sampler").elements.ctx.value = Math.max(Number($("sampler").elements.ctx.value), sizes.p + sizes.n + 8);
  if (model) {
    $("url").value = model;
    await loadFrom(model, model.split("/").pop());
  }
  if (bench && forge) await forgeBench(sizes);
}

guarded(main).finally(() => { document.body.dataset.started = "1"; });
