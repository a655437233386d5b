//! Gemma 3 270M through the Hugging Face path on real weights: a directory written from the GGUF
//! at test time (`forge_tests::hf_export`: transformers' names, norms minus 1, BF16 matrices,
//! `Gemma3TextConfig`, a `GemmaConverter`-style tokenizer.json) loads through `Model::load(dir)`
//! and agrees with the GGUF it came from:
//! - the config, field by field (layers' windows and RoPE bases, attention scale, head width, tied
//!   embedding);
//! - prompt ids of every reference case, from the BPE tokenizer.json against llama.cpp's SPM
//!   loop on the GGUF vocabulary;
//! - teacher-forced on the CPU: each case's prompt plus the GGUF model's own greedy continuation,
//!   the HF model's argmax equal to the GGUF model's at every position but near-ties (each side's
//!   pick within [`NEAR_TIE`] of the other side's best). The HF weights are the GGUF's dequantized
//!   values rounded to BF16, and the GGUF path quantizes activations to 8 bits, so logits differ
//!   by up to about one; an error in names, norm shift, RoPE or windows moves them by far more.
//!
//! The directory (~540 MB) lives in a temp dir removed at the end. Skips without the model
//! unless `FORGE_REQUIRE_MODEL=1`.

use std::path::PathBuf;
use std::time::Instant;

use forge_engine::backend::cpu::CpuBackend;
use forge_engine::formats::gguf::GgufFile;
use forge_engine::session::{BLOCK_SIZE, Forward, Readout};
use forge_engine::{DType, GenerateOptions, Model, ModelConfig, SamplerConfig, Session, generate};
use forge_tests::hf_export::write_gemma3_dir;
use forge_tests::{NEAR_TIE, gemma3_path, gemma3_reference};

/// Continuation positions compared per case.
const N_GEN: usize = 16;

/// Removes the directory when the test ends, passing or not.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_config(gguf: &ModelConfig, hf: &ModelConfig) {
    assert_eq!(hf.family, "gemma3");
    assert_eq!((hf.n_vocab, hf.n_embd, hf.n_layer, hf.n_head, hf.n_kv_head, hf.head_dim, hf.n_ff), (gguf.n_vocab, gguf.n_embd, gguf.n_layer, gguf.n_head, gguf.n_kv_head, gguf.head_dim, gguf.n_ff));
    assert_eq!(hf.layers.len(), gguf.layers.len());
    for (l, (h, g)) in hf.layers.iter().zip(&gguf.layers).enumerate() {
        assert_eq!((h.window, h.rope_base, h.rope_freq_scale), (g.window, g.rope_base, g.rope_freq_scale), "layer {l}");
    }
    assert_eq!(hf.attn_scale, gguf.attn_scale, "attention scale");
    assert_eq!((hf.rope_layout, hf.rope_dim, &hf.rope_factors), (gguf.rope_layout, gguf.rope_dim, &gguf.rope_factors), "RoPE");
    assert_eq!((hf.tied_embeddings, hf.rms_eps, hf.qkv_bias, hf.ctx_train), (gguf.tied_embeddings, gguf.rms_eps, gguf.qkv_bias, gguf.ctx_train));
    // Everything else too: only the architecture's spelling differs.
    assert_eq!(&ModelConfig { arch_name: gguf.arch_name.clone(), ..hf.clone() }, gguf);
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// How the two models' rows compared: positions, near-ties, and the largest difference between
/// their logits for the GGUF model's pick.
struct Agreement {
    positions: usize,
    near_ties: usize,
    worst: f32,
}

/// `gguf` and `hf` hold the same positions' logits, `n_vocab` per row.
fn compare(id: &str, gguf: &[f32], hf: &[f32], n_vocab: usize) -> Result<Agreement, String> {
    let mut a = Agreement { positions: gguf.len() / n_vocab, near_ties: 0, worst: 0.0 };
    let mut errors = Vec::new();
    for (i, (g, h)) in gguf.chunks_exact(n_vocab).zip(hf.chunks_exact(n_vocab)).enumerate() {
        let (gp, hp) = (argmax(g), argmax(h));
        a.worst = a.worst.max((g[gp] - h[gp]).abs());
        if gp == hp {
            continue;
        }
        let (h_gap, g_gap) = (h[hp] - h[gp], g[gp] - g[hp]);
        if h_gap <= NEAR_TIE && g_gap <= NEAR_TIE {
            a.near_ties += 1;
        } else {
            errors.push(format!("{id} position {i}: HF picks {hp}, GGUF picks {gp}; GGUF's pick is {h_gap:.3} below HF's best, HF's {g_gap:.3} below GGUF's (near-tie: both within {NEAR_TIE})"));
        }
    }
    if errors.is_empty() { Ok(a) } else { Err(errors.join("\n")) }
}

/// Logits of the rows predicting each continuation token, in one pass from position 0 that
/// reads out only rows `p - 1..` (every row of a 262k vocabulary would not fit in memory).
fn teacher_forced(session: &mut Session, input: &[u32], p: usize) -> Vec<f32> {
    session.reset();
    let Forward::Logits { values, .. } = session.forward(input, Readout::LogitsFrom(p - 1)).expect("forward") else { unreachable!() };
    values
}

#[test]
fn gemma3_from_a_hugging_face_directory_matches_the_gguf() {
    let Some(path) = gemma3_path() else { return };
    let start = Instant::now();
    let gguf = Model::load(&path).expect("the GGUF loads");
    let dir = TempDir(forge_tests::tiny::temp_dir("gemma3-hf"));
    let meta = GgufFile::open(&path).expect("the GGUF opens").metadata;
    write_gemma3_dir(&gguf, &meta, &dir.0, DType::BF16);
    let written = start.elapsed();
    let hf = Model::load(&dir.0).expect("the Hugging Face directory loads");
    eprintln!("wrote the directory in {:.1?}, loaded it in {:.1?}", written, start.elapsed() - written);
    assert_eq!(hf.source.format, "safetensors");

    check_config(&gguf.config, &hf.config);
    assert_eq!(hf.tokenizer.bos_id(), gguf.tokenizer.bos_id());
    assert_eq!(hf.tokenizer.stop_ids(), gguf.tokenizer.stop_ids());

    let reference = gemma3_reference();
    for case in &reference.cases {
        let ours = hf.tokenizer.encode(&case.text_fed, true, true).expect("the HF tokenizer encodes");
        let theirs = gguf.tokenizer.encode(&case.text_fed, true, true).expect("the GGUF tokenizer encodes");
        assert_eq!(ours, theirs, "{}: prompt ids from tokenizer.json differ from the GGUF tokenizer's", case.id);
    }

    let longest = reference.cases.iter().map(|c| c.prompt_ids.len() + N_GEN).max().unwrap_or(0);
    let ctx = longest.next_multiple_of(BLOCK_SIZE);
    let mut g_session = Session::new(&gguf, Box::new(CpuBackend::new()), ctx, &mut |_, _| {}).expect("the GGUF session opens");
    let mut h_session = Session::new(&hf, Box::new(CpuBackend::new()), ctx, &mut |_, _| {}).expect("the HF session opens");
    let n_vocab = gguf.config.n_vocab;
    let mut failures = Vec::new();
    for case in &reference.cases {
        let t = Instant::now();
        let prompt = &case.prompt_ids;
        g_session.reset();
        let opts = GenerateOptions { max_tokens: N_GEN, sampler: SamplerConfig::greedy(), ..GenerateOptions::default() };
        let greedy = generate(&mut g_session, &gguf.tokenizer, prompt, &opts, &mut |_| {}).expect("the GGUF model generates").ids;
        let input = [&prompt[..], &greedy[..greedy.len().saturating_sub(1)]].concat();
        let g_rows = teacher_forced(&mut g_session, &input, prompt.len());
        let h_rows = teacher_forced(&mut h_session, &input, prompt.len());
        assert_eq!(g_rows.len(), h_rows.len());
        assert_eq!(hf.tokenizer.decode(&greedy).unwrap(), gguf.tokenizer.decode(&greedy).unwrap(), "{}: decoded text", case.id);
        match compare(&case.id, &g_rows, &h_rows, n_vocab) {
            Ok(a) => eprintln!(
                "{} ({} prompt tokens): {}/{} positions agree, {} near-ties; largest logit difference at the GGUF's pick {:.3}; {:.1?}",
                case.id,
                prompt.len(),
                a.positions - a.near_ties,
                a.positions,
                a.near_ties,
                a.worst,
                t.elapsed()
            ),
            Err(e) => failures.push(e),
        }
    }
    eprintln!("total {:.1?}", start.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
