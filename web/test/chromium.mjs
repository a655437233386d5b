// What web/test/browser.mjs and web/test/bench.mjs share: web/serve.py on a free port, and
// headless Chromium with WebGPU on SwiftShader (CHROMIUM overrides /usr/bin/chromium).

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const WEB = dirname(dirname(fileURLToPath(import.meta.url)));
export const ROOT = dirname(WEB);

const ARGS = [
  "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
  "--use-angle=swiftshader", "--use-webgpu-adapter=swiftshader", "--disable-gpu-sandbox",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
];

// Serves web/dist with the .gguf files of `modelDir` under /models/; resolves to {server, url}.
export function startServer(modelDir) {
  return new Promise((resolve, reject) => {
    const server = spawn("python3", [join(WEB, "serve.py"), "--port", "0", "--models", modelDir], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, FORGE_SERVE_QUIET: "1" } });
    server.on("error", reject);
    server.on("exit", (code) => reject(new Error(`web/serve.py exited with ${code}`)));
    server.stdout.on("data", (d) => {
      const m = /http:\/\/([\d.]+):(\d+)\//.exec(String(d));
      if (m) resolve({ server, url: `http://${m[1]}:${m[2]}/` });
    });
  });
}

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ARGS, headless: true });
}

// Whether the page at its current origin gets a WebGPU adapter.
export function hasWebGPU(page) {
  return page.evaluate(async () => !!(navigator.gpu && (await navigator.gpu.requestAdapter())));
}
