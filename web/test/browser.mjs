// The browser test: serves web/dist (web/build.sh) with web/serve.py, drives the demo page in
// headless Chromium (SwiftShader's WebGPU), loads SmolLM2-135M-Instruct Q4_1 from the server and
// checks that greedy generation through the page's own controls gives llama.cpp's ids
// (tests/fixtures/smollm2-135m-q4_1.llama-cpp.json). Then: the stop button ends a long
// generation, and a reload takes the model from the browser cache instead of the network.
// Any console error or page error fails the test. Screenshot: web/test-output/page.png.
//
//   node web/test/browser.mjs        (after web/build.sh)
//
// Skips (exit 0) without the model or a WebGPU adapter, unless FORGE_REQUIRE_MODEL=1 /
// FORGE_REQUIRE_BROWSER=1. CHROMIUM overrides /usr/bin/chromium; FORGE_WEB_DEBUG=1 prints the
// page's other console messages too.

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ROOT, WEB, hasWebGPU, launch, startServer } from "./chromium.mjs";

const MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf";
const N_GEN = 16;
// Cases: one raw completion, one chat (the chat template is rendered in wasm).
const CASES = ["dev-capital", "dev-chat-hello"];
// Below this logit margin llama.cpp's own choice is a near tie (tests/src/lib.rs NEAR_TIE).
const NEAR_TIE = 0.25;

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

// The first mismatch must be a near tie in llama.cpp's own logits; after it the texts diverge.
function checkGreedy(c, ids) {
  for (let i = 0; i < Math.min(ids.length, c.greedy_ids.length); i++) {
    if (ids[i] !== c.greedy_ids[i]) {
      const margin = c.margins[i] ?? Infinity;
      if (margin < NEAR_TIE) return `${i} ids agree, then a near tie (margin ${margin})`;
      throw new Error(`${c.id}: position ${i}: got ${ids[i]}, llama.cpp chose ${c.greedy_ids[i]} with a clear margin of ${margin} (ours ${JSON.stringify(ids.slice(0, i + 1))})`);
    }
  }
  return `${ids.length} ids agree`;
}

async function main() {
  if (!existsSync(join(WEB, "dist", "index.html"))) finish(false, "web/dist is missing: run web/build.sh first");
  const modelDir = process.env.FORGE_MODEL_DIR || join(homedir(), ".cache", "forge", "models");
  if (!existsSync(join(modelDir, MODEL))) skip(`${MODEL} not in ${modelDir} (forge pull smollm2-135m)`, "FORGE_REQUIRE_MODEL");
  const reference = JSON.parse(readFileSync(join(ROOT, "tests", "fixtures", "smollm2-135m-q4_1.llama-cpp.json"), "utf8"));

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

    await page.fill("input[name=max_tokens]", String(N_GEN));
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

    for (const id of CASES) {
      const c = reference.cases.find((x) => x.id === id);
      const g = await generate(c.mode, c.prompt);
      if (JSON.stringify(g.prompt_ids) !== JSON.stringify(c.prompt_ids)) throw new Error(`${id}: prompt ids ${JSON.stringify(g.prompt_ids)} differ from llama.cpp's ${JSON.stringify(c.prompt_ids)}`);
      const verdict = checkGreedy(c, g.ids);
      if (g.ids.length !== N_GEN) throw new Error(`${id}: ${g.ids.length} ids, expected ${N_GEN}`);
      speeds.push(g.decode_tok_s);
      console.log(`${id}: ${verdict}; prefill ${g.prefill_tok_s.toFixed(1)} tok/s, decode ${g.decode_tok_s.toFixed(1)} tok/s: ${JSON.stringify(g.text)}`);
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

    if (errors.length) throw new Error(`console errors:\n  ${errors.join("\n  ")}`);
    const mean = speeds.reduce((a, b) => a + b, 0) / speeds.length;
    finish(true, `greedy ids match llama.cpp on ${CASES.join(", ")} (${N_GEN} tokens each), decode ${mean.toFixed(1)} tok/s; screenshot web/test-output/page.png`);
  } catch (e) {
    finish(false, `${e.message}${errors.length ? `\n  ${errors.join("\n  ")}` : ""}`);
  }
}

main().catch((e) => finish(false, e.stack || String(e)));
