// The browser test: serves web/dist (web/build.sh) with web/serve.py, drives the demo page in
// headless Chromium (SwiftShader's WebGPU) and loads SmolLM2-135M-Instruct Q4_1 from the server.
//
// Against llama.cpp (tests/fixtures/smollm2-135m-q4_1.llama-cpp.json, the fixture the native
// tests read), teacher-forced as tests/src/reference.rs `check_teacher_forced` does it: for every
// case the page's model gets the prompt plus llama.cpp's greedy continuation in one prefill
// (forge.forcedLogits), and at every continuation position our argmax must equal llama.cpp's,
// unless both picks lie within NEAR_TIE of each other's best logit; llama.cpp's recorded top-3
// logits must lie within LOGIT_TOLERANCE of ours. This is the pass criterion.
//
// Then the page's own controls: greedy generation of two cases (one chat, the template rendered
// in wasm) gives llama.cpp's prompt ids, and where its free-running ids first leave llama.cpp's,
// both picks are near-tied (our side read from the teacher-forced pass at the same context); the
// stop button ends a long generation; a reload takes the model from the browser cache instead of
// the network. Any console error or page error fails the test. Screenshot: web/test-output/page.png.
//
// Then Gemma 3 270M Q4_K_M (a second family; tests/fixtures/gemma3-270m-q4_k_m.llama-cpp.json),
// on an adapter whose storage bindings are capped at WebGPU's default 128 MiB (SwiftShader itself
// binds 1 GiB; see SMALL_BINDING), so its 178 MB tied embedding must be paged by the wgpu backend:
// the page loads it through the same controls and reports its architecture and that weight as
// paged; on one short raw prompt, greedy generation through the page gives llama.cpp's prompt ids
// and ids that agree up to a near-tie, and the teacher-forced pass agrees at each of the first
// GEMMA_N positions as above. Screenshot: web/test-output/gemma.png.
//
//   node web/test/browser.mjs        (after web/build.sh)
//
// Skips (exit 0) without SmolLM2 or a WebGPU adapter, and skips the Gemma part without its model,
// unless FORGE_REQUIRE_MODEL=1 / FORGE_REQUIRE_BROWSER=1. Models are read from FORGE_MODEL_DIR, else
// ~/.cache/forge/models (forge pull). CHROMIUM overrides /usr/bin/chromium; FORGE_WEB_DEBUG=1
// prints the page's other console messages too.

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ROOT, WEB, hasWebGPU, launch, startServer } from "./chromium.mjs";

const MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf";
const FIXTURE = join(ROOT, "tests", "fixtures", "smollm2-135m-q4_1.llama-cpp.json");
// Generated through the page's controls: one raw completion, one chat.
const UI_CASES = ["dev-capital", "dev-chat-hello"];
const N_UI = 16;
// tests/src/reference.rs: two picks within NEAR_TIE of each other's best are a near-tie; our
// logits may sit LOGIT_TOLERANCE from llama.cpp's recorded top 3. Compared in f32, as there.
const f32 = Math.fround;
const NEAR_TIE = f32(0.4);
const LOGIT_TOLERANCE = f32(1.0);
// Gemma: one short raw prompt, over its first GEMMA_N continuation positions (SwiftShader is slow,
// and every row Gemma reads out is a 262144-wide product with its embedding).
const GEMMA = "gemma-3-270m-q4_k_m.gguf";
const GEMMA_FIXTURE = join(ROOT, "tests", "fixtures", "gemma3-270m-q4_k_m.llama-cpp.json");
const GEMMA_CASE = "dev-capital";
const GEMMA_N = 8;
// WebGPU's default maxStorageBufferBindingSize, which many adapters keep.
const SMALL_BINDING = 2 ** 27;

// Runs in the page before its scripts: every GPUSupportedLimits (the adapter's, so also those the
// engine requests the device with) reports at most `cap` bytes per storage binding. The browser
// then enforces that limit on the device, as on an adapter that binds no more.
function capStorageBinding(cap) {
  const limit = Object.getOwnPropertyDescriptor(GPUSupportedLimits.prototype, "maxStorageBufferBindingSize");
  Object.defineProperty(GPUSupportedLimits.prototype, "maxStorageBufferBindingSize", {
    configurable: true,
    get() { return Math.min(limit.get.call(this), cap); },
  });
}

const cleanups = [];

function finish(ok, line) {
  for (const f of cleanups) f();
  console.log(`${ok ? "PASS" : "FAIL"}: browser: ${line}`);
  process.exit(ok ? 0 : 1);
}

function skip(line, requireVar) {
  if (process.env[requireVar] === "1") finish(false, `${line} (${requireVar}=1)`);
  console.log(`SKIP: browser: ${line}`);
  process.exit(0);
}

// A lower bound on llama.cpp's best logit minus its logit for `id` at position i (reference.rs
// `their_gap`): exact where `id` is in its recorded top list, else below the list's last entry;
// where no top list is recorded, its top-1 minus top-2 margin.
function theirGap(c, i, id) {
  if (id === c.greedy_ids[i]) return 0;
  const top = c.top_logits[i];
  if (top) {
    const hit = top.find(([t]) => t === id) ?? top[top.length - 1];
    return f32(f32(top[0][1]) - f32(hit[1]));
  }
  return c.margins[i] === undefined ? Infinity : f32(c.margins[i]);
}

// llama.cpp's logit for `id` at position i where recorded, for messages.
function theirLogit(c, i, id) {
  const hit = (c.top_logits[i] ?? []).find(([t]) => t === id);
  return hit ? hit[1].toFixed(3) : "unrecorded";
}

// One case teacher-forced through the page (window.forgeForced) over `n` positions, checked as
// reference.rs `check_teacher_forced` checks it. `extra` ids are probed too (the free-running
// picks). Returns {positions, nearTies, differ, worst, errors, logit(i, id), best, argmax, ms}.
async function teacherForced(page, c, n, extra) {
  const p = c.prompt_ids.length;
  const ids = [...c.prompt_ids, ...c.greedy_ids.slice(0, n - 1)];
  const probe = [...new Set([...c.greedy_ids.slice(0, n), ...c.top_logits.flatMap((t) => t.map(([id]) => id)), ...extra])];
  const r = await page.evaluate((args) => window.forgeForced(args), { ids, first: p - 1, probe, text: c.text_fed });
  if (JSON.stringify(r.text_ids) !== JSON.stringify(c.prompt_ids)) throw new Error(`${c.id}: the page tokenizes the prompt to ${JSON.stringify(r.text_ids)}, llama.cpp to ${JSON.stringify(c.prompt_ids)}`);
  if (r.argmax.length !== n) throw new Error(`${c.id}: ${r.argmax.length} rows read out, expected ${n}`);
  // f32 as the wasm computed them (JSON carries the shortest decimal; non-finite values as null).
  const asF32 = (v) => (v === null ? NaN : f32(v));
  r.best = r.best.map(asF32);
  r.probe = r.probe.map((row) => row.map(asF32));
  const column = new Map(probe.map((id, k) => [id, k]));
  const logit = (i, id) => r.probe[i][column.get(id)];
  const out = { positions: n, nearTies: 0, differ: 0, worst: 0, errors: [], logit, best: r.best, argmax: r.argmax, ms: r.ms };
  for (let i = 0; i < n; i++) {
    const ours = r.argmax[i];
    const theirs = c.greedy_ids[i];
    if (ours !== theirs) {
      const ourGap = f32(r.best[i] - logit(i, theirs));
      const gap = theirGap(c, i, ours);
      if (ourGap <= NEAR_TIE && gap <= NEAR_TIE) {
        out.nearTies += 1;
      } else {
        out.differ += 1;
        out.errors.push(`${c.id} position ${i}: we pick ${ours} (logit ${r.best[i].toFixed(3)}; llama.cpp's ${theirLogit(c, i, ours)}), llama.cpp picks ${theirs} (logit ${theirLogit(c, i, theirs)}; ours ${logit(i, theirs).toFixed(3)}); their pick is ${ourGap.toFixed(3)} below our best, ours at least ${gap.toFixed(3)} below theirs (a near-tie needs both within ${NEAR_TIE.toFixed(1)})`);
      }
    }
    for (const [id, theirLogitValue] of (c.top_logits[i] ?? []).slice(0, 3)) {
      const d = Math.abs(f32(logit(i, id) - f32(theirLogitValue)));
      out.worst = Math.max(out.worst, d);
      if (d > LOGIT_TOLERANCE) out.errors.push(`${c.id} position ${i}: id ${id} logit ${logit(i, id)} vs llama.cpp's ${theirLogitValue}`);
    }
  }
  return out;
}

// Free-running ids from the page's controls: equal to llama.cpp's up to the first difference,
// where both picks must be near-tied, our side by the teacher-forced logits at that same context
// (reference.rs `check_free_running`); after it the continuations legitimately part.
function checkFreeRunning(c, ids, forced) {
  for (let i = 0; i < Math.min(ids.length, forced.positions); i++) {
    const ours = ids[i];
    const theirs = c.greedy_ids[i];
    if (ours === theirs) continue;
    const ourGaps = [ours, theirs].map((id) => f32(forced.best[i] - forced.logit(i, id)));
    const gap = theirGap(c, i, ours);
    if (Math.max(...ourGaps) <= NEAR_TIE && gap <= NEAR_TIE) return `${i}/${ids.length} ids agree, then a near-tie`;
    throw new Error(`${c.id}: free-running position ${i}: generated ${ours}, llama.cpp chose ${theirs} (ours ${ourGaps[0].toFixed(3)} and theirs ${ourGaps[1].toFixed(3)} below our best, ours at least ${gap.toFixed(3)} below llama.cpp's best: not a near-tie)`);
  }
  return `${ids.length}/${ids.length} ids agree`;
}

// Gemma 3 270M through the page, storage bindings capped at SMALL_BINDING: loaded from the
// server, its architecture and paged embedding reported, then GEMMA_CASE generated greedily
// through the page's controls and teacher-forced over GEMMA_N positions against llama.cpp.
// Returns the summary line; throws on a failure.
async function checkGemma(page, url, reference, generate) {
  const t0 = Date.now();
  const own = await page.evaluate(async () => (await navigator.gpu.requestAdapter()).limits.maxStorageBufferBindingSize);
  await page.addInitScript(capStorageBinding, SMALL_BINDING);
  await page.goto(`${url}?model=models/${GEMMA}`);
  await page.waitForFunction(() => document.body.dataset.state === "ready" || document.body.dataset.error, null, { timeout: 300_000 });
  const loadError = await page.evaluate(() => document.body.dataset.error);
  if (loadError) throw new Error(`the page could not load ${GEMMA}: ${loadError}`);
  const loadS = (Date.now() - t0) / 1000;
  const info = await page.evaluate(() => window.forgeInfo);
  const panel = await page.textContent("#model-info");
  console.log(`gemma: loaded in ${loadS.toFixed(1)} s: ${panel}`);
  if (info.arch !== "gemma3" || !panel.includes("gemma3")) throw new Error(`${GEMMA}: the page reports architecture ${info.arch} (panel: ${panel}), not gemma3`);
  const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  const embd = info.paged.find((w) => w.name === "token_embd.weight");
  if (!embd || info.max_binding > SMALL_BINDING) throw new Error(`${GEMMA}: with storage bindings capped at ${mib(SMALL_BINDING)} the page reports a ${mib(info.max_binding)} binding and paged weights ${JSON.stringify(info.paged)}: token_embd.weight should be among them`);
  const paging = `token_embd.weight (${mib(embd.bytes)}) paged over ${mib(info.max_binding)} bindings (the adapter's own: ${mib(own)})`;
  console.log(`gemma: ${paging}; ${info.paged.length} weight(s) paged in all; WebAssembly memory ${mib(info.wasm_memory_bytes)} after loading a ${mib(info.file_bytes)} file`);

  const c = reference.cases.find((x) => x.id === GEMMA_CASE);
  await page.fill("input[name=max_tokens]", String(GEMMA_N));
  await page.fill("input[name=temperature]", "0");
  const g = await generate(c.mode, c.prompt);
  if (JSON.stringify(g.prompt_ids) !== JSON.stringify(c.prompt_ids)) throw new Error(`gemma ${c.id}: prompt ids ${JSON.stringify(g.prompt_ids)} differ from llama.cpp's ${JSON.stringify(c.prompt_ids)}`);
  if (g.ids.length !== GEMMA_N) throw new Error(`gemma ${c.id}: ${g.ids.length} ids, expected ${GEMMA_N}`);

  const a = await teacherForced(page, c, GEMMA_N, g.ids);
  const forcedLine = `gemma ${c.id}: teacher-forced ${a.positions - a.nearTies - a.differ}/${a.positions} positions agree with llama.cpp, ${a.nearTies} near-ties, ${a.differ} differ, in one pass of ${c.prompt_ids.length + a.positions - 1} ids, ${(a.ms / 1000).toFixed(1)} s; largest difference from llama.cpp's recorded top-3 logits ${a.worst.toFixed(3)}; argmax ${JSON.stringify(a.argmax)}, llama.cpp ${JSON.stringify(c.greedy_ids.slice(0, GEMMA_N))}`;
  console.log(forcedLine);
  if (a.errors.length) throw new Error(`gemma teacher-forced against llama.cpp:\n  ${a.errors.join("\n  ")}`);
  const verdict = checkFreeRunning(c, g.ids, a);
  console.log(`gemma ${c.id}: free-running through the page: prompt ids ${JSON.stringify(g.prompt_ids)} as llama.cpp's; ${verdict}; prefill ${g.prefill_tok_s.toFixed(1)} tok/s, decode ${g.decode_tok_s.toFixed(1)} tok/s: ${JSON.stringify(g.text)}`);
  await page.screenshot({ path: join(WEB, "test-output", "gemma.png"), fullPage: true });
  return `gemma3 (${c.id}): ${a.positions - a.nearTies - a.differ}/${a.positions} teacher-forced positions agree, ${a.nearTies} near-ties; free-running ${verdict}; ${paging}; in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
}

async function main() {
  if (!existsSync(join(WEB, "dist", "index.html"))) finish(false, "web/dist is missing: run web/build.sh first");
  const modelDir = process.env.FORGE_MODEL_DIR || join(homedir(), ".cache", "forge", "models");
  if (!existsSync(join(modelDir, MODEL))) skip(`${MODEL} not in ${modelDir} (forge pull smollm2-135m)`, "FORGE_REQUIRE_MODEL");
  const reference = JSON.parse(readFileSync(FIXTURE, "utf8"));
  let gemma = null;
  if (existsSync(join(modelDir, GEMMA))) gemma = JSON.parse(readFileSync(GEMMA_FIXTURE, "utf8"));
  else if (process.env.FORGE_REQUIRE_MODEL === "1") finish(false, `${GEMMA} not in ${modelDir} (forge pull gemma3-270m) (FORGE_REQUIRE_MODEL=1)`);
  else console.log(`SKIP: browser: the Gemma part: ${GEMMA} not in ${modelDir} (forge pull gemma3-270m)`);

  const { server, url } = await startServer(modelDir);
  cleanups.push(() => server.kill());
  const browser = await launch();
  const errors = [];
  let modelRequests = 0;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
      else if (process.env.FORGE_WEB_DEBUG === "1") console.log(`console.${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
    page.on("request", (r) => { if (r.url().includes("/models/")) modelRequests += 1; });

    await page.goto(url);
    if (!(await hasWebGPU(page))) skip("Chromium exposes no WebGPU adapter here", "FORGE_REQUIRE_BROWSER");

    const t0 = Date.now();
    await page.goto(`${url}?model=models/${MODEL}`);
    await page.waitForFunction(() => document.body.dataset.state === "ready" || document.body.dataset.error, null, { timeout: 300_000 });
    const loadError = await page.evaluate(() => document.body.dataset.error);
    if (loadError) throw new Error(`the page could not load the model: ${loadError}`);
    console.log(`model loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${await page.textContent("#model-info")}`);
    console.log(`adapter: ${await page.textContent("#adapter")}`);

    // The page's controls first: their free-running ids are probed in the teacher-forced pass.
    await page.fill("input[name=max_tokens]", String(N_UI));
    await page.fill("input[name=temperature]", "0");
    const speeds = [];
    const generate = async (mode, prompt) => {
      await page.click("#clear");
      await page.selectOption("#mode", mode);
      await page.evaluate(() => { window.lastGeneration = null; });
      await page.fill("#prompt", prompt);
      await page.click("#send");
      await page.waitForFunction(() => window.lastGeneration || document.body.dataset.error, null, { timeout: 300_000 });
      const g = await page.evaluate(() => window.lastGeneration);
      if (!g) throw new Error(`generation failed: ${await page.evaluate(() => document.body.dataset.error)}`);
      return g;
    };
    const free = new Map();
    for (const id of UI_CASES) {
      const c = reference.cases.find((x) => x.id === id);
      const g = await generate(c.mode, c.prompt);
      if (JSON.stringify(g.prompt_ids) !== JSON.stringify(c.prompt_ids)) throw new Error(`${id}: prompt ids ${JSON.stringify(g.prompt_ids)} differ from llama.cpp's ${JSON.stringify(c.prompt_ids)}`);
      if (g.ids.length !== N_UI) throw new Error(`${id}: ${g.ids.length} ids, expected ${N_UI}`);
      free.set(id, g);
      speeds.push(g.decode_tok_s);
    }

    // Teacher-forced against llama.cpp, every case, every continuation position: the pass criterion.
    const n = reference.n_gen;
    const forced = new Map();
    const failures = [];
    let positions = 0;
    let nearTies = 0;
    let differ = 0;
    let worst = 0;
    const t1 = Date.now();
    for (const c of reference.cases) {
      const a = await teacherForced(page, c, Math.min(n, c.greedy_ids.length), free.get(c.id)?.ids ?? []);
      forced.set(c.id, a);
      positions += a.positions;
      nearTies += a.nearTies;
      differ += a.differ;
      worst = Math.max(worst, a.worst);
      failures.push(...a.errors);
      console.log(`${c.id}: teacher-forced ${a.positions - a.nearTies - a.differ}/${a.positions} positions agree, ${a.nearTies} near-ties, ${a.differ} differ, in one pass of ${c.prompt_ids.length + a.positions - 1} ids, ${(a.ms / 1000).toFixed(1)} s`);
    }
    const forcedLine = `teacher-forced: ${positions - nearTies - differ}/${positions} positions agree with llama.cpp, ${nearTies} near-ties (within ${NEAR_TIE.toFixed(1)}), ${differ} differ, ${reference.cases.length} cases in ${((Date.now() - t1) / 1000).toFixed(1)} s; largest difference from llama.cpp's recorded top-3 logits ${worst.toFixed(3)}`;
    console.log(forcedLine);
    if (failures.length) throw new Error(`teacher-forced against llama.cpp:\n  ${failures.join("\n  ")}`);

    for (const [id, g] of free) {
      const verdict = checkFreeRunning(reference.cases.find((x) => x.id === id), g.ids, forced.get(id));
      console.log(`${id}: free-running through the page: ${verdict}; prefill ${g.prefill_tok_s.toFixed(1)} tok/s, decode ${g.decode_tok_s.toFixed(1)} tok/s: ${JSON.stringify(g.text)}`);
    }
    mkdirSync(join(WEB, "test-output"), { recursive: true });
    await page.screenshot({ path: join(WEB, "test-output", "page.png"), fullPage: true });

    // Stop: a long generation ends early when the button is pressed, and the page stays usable.
    await page.fill("input[name=max_tokens]", "400");
    await page.click("#clear");
    await page.selectOption("#mode", "raw");
    await page.evaluate(() => { window.lastGeneration = null; });
    await page.fill("#prompt", "Once upon a time");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelector(".msg.raw")?.textContent.length > 40, null, { timeout: 120_000 });
    await page.click("#stop");
    await page.waitForFunction(() => window.lastGeneration, null, { timeout: 120_000 });
    const stopped = await page.evaluate(() => window.lastGeneration);
    if (stopped.finish !== "stopped" || stopped.n_gen >= 400) throw new Error(`stop: finish ${stopped.finish} after ${stopped.n_gen} tokens`);
    console.log(`stop: ended after ${stopped.n_gen} tokens`);

    // Cache: a reload loads the model without fetching it again.
    const before = modelRequests;
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.state === "ready" || document.body.dataset.error, null, { timeout: 300_000 });
    const status = await page.textContent("#status");
    if (modelRequests !== before || !status.includes("from the browser cache")) throw new Error(`reload fetched the model again (${modelRequests - before} requests; status: ${status})`);
    console.log("reload: the model came from the browser cache");

    let gemmaLine = `Gemma skipped (no ${GEMMA})`;
    if (gemma) gemmaLine = await checkGemma(page, url, gemma, generate);

    if (errors.length) throw new Error(`console errors:\n  ${errors.join("\n  ")}`);
    const mean = speeds.reduce((a, b) => a + b, 0) / speeds.length;
    finish(true, `${forcedLine}; page controls: ${UI_CASES.join(", ")} (${N_UI} tokens each), decode ${mean.toFixed(1)} tok/s; ${gemmaLine}; screenshots in web/test-output/`);
  } catch (e) {
    finish(false, `${e.message}${errors.length ? `\n  ${errors.join("\n  ")}` : ""}`);
  }
}

main().catch((e) => finish(false, e.stack || String(e)));
