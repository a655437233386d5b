// The browser row of `forge bench --browser`: serves web/dist (web/build.sh) with the model's
// directory, opens the demo page in bench mode in headless Chromium (WebGPU on SwiftShader) and
// prints the page's row (native `forge bench`'s `Row`, backend "browser-webgpu") as one JSON line
// on stdout. Progress and errors go to stderr; a failure exits non-zero.
//
//   node web/test/bench.mjs --model ~/.cache/forge/models/SmolLM2-135M-Instruct.Q4_1.gguf --p 32 --n 8 --r 1
//
// --timeout S bounds the whole page run (default 1800 s: SwiftShader decodes at about 1 tok/s).

import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { WEB, hasWebGPU, launch, startServer } from "./chromium.mjs";

const cleanups = [];

function fail(line) {
  for (const f of cleanups) f();
  console.error(`bench.mjs: ${line}`);
  process.exit(1);
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: "string", default: join(homedir(), ".cache", "forge", "models", "SmolLM2-135M-Instruct.Q4_1.gguf") },
      p: { type: "string", default: "32" },
      n: { type: "string", default: "8" },
      r: { type: "string", default: "1" },
      timeout: { type: "string", default: "1800" },
    },
  });
  const [p, n, r, timeout] = ["p", "n", "r", "timeout"].map((k) => Number(values[k]));
  if (![p, n, r, timeout].every((v) => Number.isInteger(v) && v > 0)) fail("--p, --n, --r and --timeout take positive integers");
  if (!existsSync(join(WEB, "dist", "index.html"))) fail("web/dist is missing: run web/build.sh first");
  const model = resolve(values.model);
  if (!existsSync(model)) fail(`${model} does not exist`);

  const { server, url } = await startServer(dirname(model));
  cleanups.push(() => server.kill());
  const browser = await launch();
  cleanups.push(() => browser.close());
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error") console.error(`console: ${m.text()}`); });
  page.on("pageerror", (e) => console.error(`page: ${e.message}`));
  await page.goto(url);
  if (!(await hasWebGPU(page))) fail("Chromium exposes no WebGPU adapter here");

  const query = new URLSearchParams({ bench: "1", model: `models/${basename(model)}`, p, n, r });
  console.error(`bench.mjs: ${basename(model)} pp${p} tg${n} ×${r} in headless Chromium (SwiftShader is slow: minutes)`);
  await page.goto(`${url}?${query}`);
  await page.waitForFunction(() => document.body.dataset.bench || document.body.dataset.error, null, { timeout: timeout * 1000, polling: 1000 });
  const { bench, error } = await page.evaluate(() => ({ bench: document.body.dataset.bench, error: document.body.dataset.error }));
  if (!bench) fail(`the page failed: ${error}`);
  for (const f of cleanups) f();
  console.log(bench);
}

main().catch((e) => fail(e.stack || String(e)));
