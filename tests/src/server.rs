//! `forge serve` as a child process for the HTTP tests (`tests/tests/server.rs`): the release
//! binary on a tiny model and an ephemeral port, and a small HTTP client around it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The release binary: `FORGE_BIN`, else `target/release/forge` beside the tests crate.
pub fn forge_binary() -> PathBuf {
    let p = std::env::var_os("FORGE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/forge"));
    assert!(p.is_file(), "{} is missing: run `cargo build --release -p forge` first (the server tests drive the real binary)", p.display());
    p
}

/// A running `forge serve`, killed on drop. Its stderr is kept and printed if the test failed.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    key: Option<String>,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("status {}: body is not JSON ({e}): {}", self.status, self.body))
    }

    /// The `error` object of an OpenAI-style failure, checked for its shape.
    pub fn error(&self) -> Value {
        let v = self.json();
        let e = v.get("error").unwrap_or_else(|| panic!("status {}: no `error` in {}", self.status, self.body)).clone();
        assert!(e["message"].is_string() && e["type"].is_string(), "malformed error object: {e}");
        e
    }
}

/// A streamed response: its `data:` events (JSON) and whether `data: [DONE]` ended it.
#[derive(Debug)]
pub struct Stream {
    pub status: u16,
    pub events: Vec<Value>,
    pub done: bool,
}

impl Server {
    /// Starts `forge serve --model MODEL --port 0 --backend cpu ARGS...` and waits for its
    /// `listening on http://ADDR` line.
    pub fn start(model: &Path, args: &[&str]) -> Server {
        let key = args.iter().position(|a| *a == "--api-key").map(|i| args[i + 1].to_owned());
        let mut child = Command::new(forge_binary())
            .args(["serve", "--port", "0", "--backend", "cpu", "--model"])
            .arg(model)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning forge serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (l, err) = (log.clone(), child.stderr.take().expect("piped"));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            // Keep draining so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(120));
        let line = match first {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("forge serve did not announce its address ({other:?}); stderr:\n{}", log.lock().unwrap());
            }
        };
        let addr = line.strip_prefix("listening on http://").unwrap_or_else(|| panic!("unexpected first line: {line}")).parse().expect("a socket address");
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300))).build().into();
        Server { child, addr, key, log, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn reply(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut resp = resp.expect("HTTP request");
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
        let body = resp.body_mut().read_to_string().expect("reading the body");
        Reply { status: resp.status().as_u16(), retry_after, body }
    }

    /// GET with the server's API key (if it has one).
    pub fn get(&self, path: &str) -> Reply {
        let mut req = self.agent.get(self.url(path));
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        Self::reply(req.call())
    }

    /// POST raw bytes as JSON with the given bearer token (`None`: no Authorization header).
    pub fn post_bytes(&self, path: &str, body: &[u8], key: Option<&str>) -> Reply {
        let mut req = self.agent.post(self.url(path)).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        Self::reply(req.send(body))
    }

    /// POST JSON with the server's API key.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_bytes(path, body.to_string().as_bytes(), self.key.as_deref())
    }

    /// POST a streaming request and read every event. `stop_after`: hang up after that many
    /// events (a client that goes away mid-stream).
    pub fn stream(&self, path: &str, body: &Value, stop_after: Option<usize>) -> Stream {
        let mut req = self.agent.post(self.url(path)).header("content-type", "application/json");
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let mut resp = req.send(body.to_string().as_bytes()).expect("HTTP request");
        let status = resp.status().as_u16();
        let (mut events, mut done) = (Vec::new(), false);
        let reader = BufReader::new(resp.body_mut().as_reader());
        for line in reader.lines() {
            let line = line.expect("reading the stream");
            let Some(data) = line.strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                done = true;
                break;
            }
            events.push(serde_json::from_str(data).unwrap_or_else(|e| panic!("event is not JSON ({e}): {data}")));
            if stop_after.is_some_and(|n| events.len() >= n) {
                break;
            }
        }
        Stream { status, events, done }
    }

    /// Sends `bytes` on a fresh connection and returns everything the server answers until it
    /// closes the connection or `timeout` passes.
    pub fn raw(&self, bytes: &[u8], timeout: Duration) -> String {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(timeout)).unwrap();
        // The server may answer (and close) before reading everything: a failed write is fine.
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The value of an unlabelled metric in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' '))).unwrap_or_else(|| panic!("no metric {name} in:\n{text}")).parse().expect("a number")
    }

    /// Waits until no KV block is in use (every sequence ended and was freed), or panics at the
    /// deadline.
    pub fn wait_until_idle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (used, running) = (self.metric("forge_kv_blocks_used"), self.metric("forge_running_sequences"));
            if used == 0.0 && running == 0.0 {
                return;
            }
            assert!(Instant::now() < deadline, "still {used} KV blocks in use and {running} sequences running after {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- forge serve stderr ---\n{}", self.log());
        }
    }
}
