//! `forge run`'s sampling: each setting from its flag, else the model's recommendation (its
//! GGUF `general.sampling.*` keys, its `generation_config.json`, or for the default model its
//! model card), else llama.cpp's defaults; and the README's first command answers correctly.

mod common;

use std::path::Path;

use common::{forge, text};
use forge_tests::forge_engine::DType;
use forge_tests::forge_engine::formats::gguf::MetaValue;
use forge_tests::tiny::{TinyArch, TinyModel, TinySpec, temp_dir};

/// The sampling `forge run --json` reports using, as (temperature, top_k, top_p, min_p).
fn sampling(model: &Path, flags: &[&str]) -> (f64, u64, f64, f64) {
    let args = [&["run", "-m", model.to_str().unwrap(), "-p", "hi", "-n", "2", "--json"][..], flags].concat();
    let o = forge(&args, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let s = &v["sampling"];
    (s["temperature"].as_f64().unwrap(), s["top_k"].as_u64().unwrap(), s["top_p"].as_f64().unwrap(), s["min_p"].as_f64().unwrap())
}

fn close(a: (f64, u64, f64, f64), b: (f64, u64, f64, f64)) -> bool {
    (a.0 - b.0).abs() < 1e-6 && a.1 == b.1 && (a.2 - b.2).abs() < 1e-6 && (a.3 - b.3).abs() < 1e-6
}

#[test]
fn the_model_file_s_recommendation_is_the_default_and_flags_win() {
    let spec = TinySpec::new(TinyArch::Llama, DType::Q8_0);
    let plain = TinyModel::write(&spec, &temp_dir("sampling-plain"));
    let s = sampling(&plain.gguf, &[]);
    assert!(close(s, (0.8, 40, 0.95, 0.05)), "no recommendation: llama.cpp's defaults, got {s:?}");

    let hints = vec![
        ("general.sampling.temp".to_string(), MetaValue::F32(0.3)),
        ("general.sampling.top_k".to_string(), MetaValue::I32(7)),
        ("general.sampling.top_p".to_string(), MetaValue::F32(0.5)),
    ];
    let hinted = TinyModel::write_with_meta(&spec, &temp_dir("sampling-hinted"), hints);
    let s = sampling(&hinted.gguf, &[]);
    assert!(close(s, (0.3, 7, 0.5, 0.05)), "the file's general.sampling.* keys, got {s:?}");
    let s = sampling(&hinted.gguf, &["--temperature", "0.7", "--top-k", "3"]);
    assert!(close(s, (0.7, 3, 0.5, 0.05)), "flags over the file, got {s:?}");

    // A Hugging Face directory: generation_config.json; do_sample false is greedy.
    std::fs::write(hinted.hf_dir.join("generation_config.json"), r#"{"do_sample": false, "temperature": 0.6, "top_p": 0.8}"#).unwrap();
    let s = sampling(&hinted.hf_dir, &[]);
    assert!(close(s, (0.0, 40, 0.8, 0.05)), "generation_config.json, got {s:?}");
}

/// The prompt of the README's first command.
fn readme_prompt() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let line = readme.lines().find(|l| l.contains("-- run --prompt")).expect("the README's first command runs a prompt");
    let start = line.find("--prompt \"").unwrap() + "--prompt \"".len();
    line[start..][..line[start..].find('"').unwrap()].to_string()
}

/// The README's first command, as a new user runs it (default model, default sampling), gives
/// a right answer; three seeds, so a lucky draw cannot pass it. Its sampling is the model card's.
#[test]
fn the_readme_s_first_command_answers_correctly() {
    let Some(model) = forge_tests::smollm2_path() else { return };
    let prompt = readme_prompt();
    assert_eq!(prompt, "What is the capital of Japan?", "update the expected answer below with the README");
    let dir = model.parent().unwrap().to_str().unwrap();
    for seed in ["1", "2", "3"] {
        let o = forge(&["run", "--prompt", &prompt, "--seed", seed, "--json"], &[("FORGE_MODEL_DIR", Some(dir))]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let answer = v["text"].as_str().unwrap();
        assert!(answer.contains("Tokyo"), "seed {seed}: {answer:?}");
        assert!((v["sampling"]["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6, "{}", v["sampling"]);
        assert!((v["sampling"]["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6, "{}", v["sampling"]);
    }
}
