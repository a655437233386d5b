//! What `forge` prints on a machine without a desktop session, and how it reports errors: nothing
//! on stderr beyond its own lines, and every message once.

mod common;

use common::{forge, text, tiny_gguf};

/// `forge run` with the default device choice and no `XDG_RUNTIME_DIR` (a server, a container,
/// CI): stdout is the answer, stderr only the one summary line. Mesa's Vulkan device-select
/// layer used to add `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice.
#[test]
fn run_without_a_desktop_session_prints_only_the_answer_and_the_summary() {
    let m = tiny_gguf("quiet-run");
    let m = m.to_str().unwrap();
    let args = ["run", "-m", m, "-p", "hi", "--temperature", "0", "-n", "4"];
    let o = forge(&args, &[("XDG_RUNTIME_DIR", None)]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr should be the summary line alone:\n{err}");
    assert!(lines[0].starts_with('[') && lines[0].contains(" generated at ") && lines[0].ends_with(']'), "{err}");

    let json = forge(&[&args[..], &["--json"]].concat(), &[("XDG_RUNTIME_DIR", None)]);
    let (json_out, json_err) = text(&json);
    assert!(json.status.success() && json_err.is_empty(), "{json_err}");
    let v: serde_json::Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(out, format!("{}\n", v["text"].as_str().unwrap()), "stdout should be the answer alone");
}

#[test]
fn devices_without_a_desktop_session_prints_nothing_on_stderr() {
    for args in [&["devices"][..], &["devices", "--json"][..]] {
        let o = forge(args, &[("XDG_RUNTIME_DIR", None)]);
        let (_, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert_eq!(err, "", "forge {args:?} wrote to stderr");
    }
}

/// A missing model file: the OS reason appears once (it was printed twice, once by the error's
/// own message and again by anyhow's chain through `source()`).
#[test]
fn a_missing_model_says_why_once() {
    let o = forge(&["run", "--model", "/nonexistent/forge-model.gguf", "-p", "hi"], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    let os = std::io::Error::from_raw_os_error(2).to_string(); // ENOENT, as the OS words it
    assert_eq!(err.matches(&os).count(), 1, "{err}");
    assert!(err.contains("cannot read /nonexistent/forge-model.gguf: "), "{err}");
}
