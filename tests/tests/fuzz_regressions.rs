//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and every crash the fuzzers ever found
//! (`fuzz/regressions/<target>/`) through the fuzz entry points: none may panic. The fuzzers
//! themselves run outside CI (`fuzz/run.sh`).

use std::path::PathBuf;

use forge_tests::fuzz;

fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz").join(kind).join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

#[test]
fn corpus_and_crashes_replay_without_panicking() {
    let mut n = 0;
    for target in fuzz::TARGETS {
        let corpus = files("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} has no seeds");
        for p in corpus.iter().chain(&files("regressions", target)) {
            let data = std::fs::read(p).unwrap();
            fuzz::run(target, &data);
            n += 1;
        }
    }
    eprintln!("replayed {n} inputs");
}

#[test]
fn the_gguf_seed_is_a_real_model_description() {
    // The seed must reach the deep code (metadata → config → tokenizer), not stop at the header.
    use forge_engine::formats::{FileBytes, gguf::GgufFile};
    let seed = &files("corpus", "gguf")[0];
    let f = GgufFile::from_bytes(FileBytes::from_vec(std::fs::read(seed).unwrap())).expect("seed parses");
    forge_engine::models::config_from_gguf(&f.metadata, &|_| false).expect("seed has a model description");
    let tok = forge_engine::tokenizer::Tokenizer::from_gguf(&f.metadata).expect("seed has a tokenizer");
    assert_eq!(tok.encode("ab", false, true).unwrap(), vec![3], "the seed's one merge applies");
}
