//! Running the real `forge` binary in a controlled environment, and a tiny model to run it on.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::PathBuf;
use std::process::{Command, Output};

use forge_tests::forge_engine::DType;
use forge_tests::tiny::{TinyArch, TinyModel, TinySpec};

/// `forge` with the device settings of this test only: no inherited FORGE_* variables, an empty
/// config directory, and `env` on top (a value of `None` removes the variable).
pub fn forge(args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let cfg = std::env::temp_dir().join(format!("forge-cli-config-home-{}", std::process::id()));
    std::fs::create_dir_all(&cfg).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.args(args).env("XDG_CONFIG_HOME", &cfg);
    for k in ["FORGE_BACKEND", "FORGE_DEVICE", "FORGE_CONFIG", "FORGE_FAULT", "RUST_LOG"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

/// Stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A tiny random-weight Q8_0 llama as GGUF, written once per test binary under `name`.
pub fn tiny_gguf(name: &str) -> PathBuf {
    let dir = forge_tests::tiny::temp_dir(name);
    TinyModel::write(&TinySpec::new(TinyArch::Llama, DType::Q8_0), &dir).gguf
}
