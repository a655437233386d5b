"""Fixtures for the OpenAI-compatibility suite: one `forge serve` for the whole session, on the real
model (SmolLM2-135M-Instruct Q4_1), driven by the official `openai` package.

    python -m venv .venv && .venv/bin/pip install -r tests/openai/requirements.txt
    FORGE_REQUIRE_MODEL=1 .venv/bin/python -m pytest -q tests/openai

Environment:
  FORGE_SERVE_TEST_DEVICE  cpu (default) or wgpu: the backend of the server (`forge serve --backend`)
                           and of `forge run` where a test compares with it
  FORGE_REQUIRE_MODEL=1    a missing model is a failure, not a skip (CI sets it), as in the Rust tests
  FORGE_BIN                the binary (default target/release/forge)
  FORGE_MODEL_DIR          the model cache, by `forge pull`'s rule
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forge_server import ForgeServer, forge_bin, smollm2_path  # noqa: E402

# Small enough that "max_tokens over the context" is cheap to provoke, large enough for every test.
CTX = 1024
API_KEY = "forge-test-key"


def pytest_report_header(config):
    return [f"forge: {forge_bin()}", f"model: {smollm2_path()}", f"device: {device_name()}"]


def device_name() -> str:
    return os.environ.get("FORGE_SERVE_TEST_DEVICE", "cpu")


def require_prerequisites() -> None:
    exe = forge_bin()
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: build it with `cargo build --release -p forge` (or set FORGE_BIN)", pytrace=False)
    if not smollm2_path().is_file():
        msg = f"{smollm2_path()} is missing: run `cargo run --release -p forge -- pull smollm2-135m`"
        if os.environ.get("FORGE_REQUIRE_MODEL") == "1":
            pytest.fail("FORGE_REQUIRE_MODEL=1 but " + msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def device() -> str:
    return device_name()


def start(tmp_path_factory, name: str, **kw) -> ForgeServer:
    require_prerequisites()
    log = tmp_path_factory.mktemp(name) / "serve.log"
    try:
        return ForgeServer(backend=device_name(), ctx=CTX, log_path=log, **kw)
    except RuntimeError as e:
        pytest.fail(f"could not start forge serve: {e}", pytrace=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The shared server: no API key, up to 4 sequences at once."""
    srv = start(tmp_path_factory, "serve", max_seqs=4, max_queue=64)
    yield srv
    code = srv.stop()
    # Any exit on SIGTERM is acceptable; a server that died during the run is reported by the tests.
    print(f"\nforge serve exited with {code}; log {srv.log_path}", file=sys.stderr)


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory):
    """A second server that demands `Authorization: Bearer forge-test-key`."""
    srv = start(tmp_path_factory, "serve-keyed", api_key=API_KEY, max_seqs=1)
    yield srv
    srv.stop()


def make_client(base_url: str, api_key: str = "unused") -> openai.OpenAI:
    # No retries: a retried 5xx or 429 would hide a server fault and slow the suite down.
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300.0)


@pytest.fixture(scope="session")
def client(server) -> openai.OpenAI:
    return make_client(server.base_url)


@pytest.fixture(scope="session")
def model_id(client) -> str:
    """The id the server serves the model under (from GET /v1/models)."""
    models = client.models.list().data
    assert models, "GET /v1/models lists no model"
    return models[0].id


@pytest.fixture(autouse=True)
def server_still_alive(request):
    """After every test that used the shared server: it must still be running."""
    yield
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        assert srv.alive(), f"forge serve died (exit {srv.proc.returncode}); log tail:\n{srv.log_tail()}"
