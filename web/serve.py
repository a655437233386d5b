#!/usr/bin/env python3
"""Serves the browser demo (web/dist, from web/build.sh) and the model files.

    python3 web/serve.py [--port 8080] [--models DIR]

/models/<name>.gguf is read from --models, else $FORGE_MODEL_DIR, else ~/.cache/forge/models
(where `forge pull` puts them); only *.gguf names directly in that directory are served.
"""
import argparse
import http.server
import os
import pathlib

WEB = pathlib.Path(__file__).resolve().parent


def model_dir() -> pathlib.Path:
    env = os.environ.get("FORGE_MODEL_DIR")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "forge" / "models"


class Handler(http.server.SimpleHTTPRequestHandler):
    models = model_dir()
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean.startswith("/models/"):
            name = pathlib.PurePosixPath(clean[len("/models/"):]).name
            if name.endswith(".gguf") and "/" not in clean[len("/models/"):]:
                return str(self.models / name)
            return str(self.models / "__not_served__")
        return super().translate_path(path)

    def end_headers(self):
        # The page checks for a new build on every load; models are cached by the page itself.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("FORGE_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--models", type=pathlib.Path, help="directory of .gguf files served under /models/")
    ap.add_argument("--root", type=pathlib.Path, default=WEB / "dist", help="the built page (web/build.sh)")
    args = ap.parse_args()
    if not (args.root / "index.html").exists():
        raise SystemExit(f"{args.root}/index.html is missing: run web/build.sh first")
    if args.models:
        Handler.models = args.models
    handler = lambda *a, **k: Handler(*a, directory=str(args.root), **k)  # noqa: E731
    with http.server.ThreadingHTTPServer((args.bind, args.port), handler) as httpd:
        host, port = httpd.server_address[:2]
        print(f"serving {args.root} on http://{host}:{port}/ (models from {Handler.models})", flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
