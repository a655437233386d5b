//! Continuous batching over the paged KV cache (`forge_engine::batching`): every sequence of a
//! batch must come out exactly as if it had run alone.
//!
//! - All llama.cpp reference prompts of SmolLM2-135M at once, greedy, on the CPU and on wgpu,
//!   with a small prefill chunk so prompts are split across steps while others decode, checked
//!   against llama.cpp's ids (the same rule as the single-sequence tests).
//! - A tiny random model: staggered requests (joining a running batch), seeded sampling, every
//!   sequence equal to `generate()` alone with the same seed; all KV blocks back afterwards.

use std::sync::mpsc;
use std::time::Duration;

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::backend::wgpu::WgpuBackend;
use forge_engine::batching::{Engine, EngineConfig, Event, Request, pool_tokens};
use forge_engine::{FinishReason, GenerateOptions, Model, SamplerConfig, Session, generate};
use forge_tests::tiny::{TinyArch, TinySpec, TinyModel, temp_dir};
use forge_tests::reference::{check_batched_teacher_forced, check_free_running};
use forge_tests::{llama_cpp_reference, smollm2_path};

/// What one sequence produced.
struct Outcome {
    ids: Vec<u32>,
    /// Each generated position's top `(id, logprob)` alternatives, when asked for.
    top: Vec<Vec<(u32, f32)>>,
    text: String,
    finish: Option<FinishReason>,
    completion_tokens: usize,
    error: Option<String>,
}

fn start(model: Model, backend: Box<dyn Backend>, cfg: EngineConfig) -> Engine {
    let session = Session::new(&model, backend, pool_tokens(&cfg), &mut |_, _| {}).expect("the session opens");
    Engine::start(model, session, cfg).expect("the engine starts")
}

/// Submits a request and returns the receiver of its events.
fn submit(engine: &Engine, req: Request) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    engine.submit(req, Box::new(move |e| tx.send(e).is_ok())).expect("the request is accepted");
    rx
}

fn collect(rx: mpsc::Receiver<Event>) -> Outcome {
    let mut o = Outcome { ids: Vec::new(), top: Vec::new(), text: String::new(), finish: None, completion_tokens: 0, error: None };
    loop {
        match rx.recv_timeout(Duration::from_secs(600)).expect("the engine answers within 10 minutes") {
            Event::Delta { text, tokens, logprobs } => {
                o.top.extend(logprobs.into_iter().map(|l| l.top));
                o.text.push_str(&text);
                o.ids.extend(tokens);
            }
            Event::Done { finish, usage } => {
                o.finish = Some(finish);
                o.completion_tokens = usage.completion_tokens;
                return o;
            }
            Event::Error { message } => {
                o.error = Some(message);
                return o;
            }
        }
    }
}

fn wait_for_free_blocks(engine: &Engine) {
    for _ in 0..100 {
        if engine.stats().kv_blocks_used == 0 && engine.stats().running == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("KV blocks still in use after every sequence ended: {:?}", engine.stats());
}

fn reference_prompts_batched(backend: Box<dyn Backend>, n_gen: usize) {
    let Some(path) = smollm2_path() else { return };
    let model = Model::load(&path).expect("the model loads");
    let reference = llama_cpp_reference();
    let prompts: Vec<Vec<u32>> = reference.cases.iter().map(|c| model.tokenizer.encode(&c.text_fed, reference.add_bos, true).expect("encodes")).collect();
    // A chunk smaller than most prompts: prefill spans several steps, interleaved with decodes.
    let cfg = EngineConfig { max_seqs: 4, ctx: 256, max_queue: 16, prefill_chunk: 24 };
    let engine = start(model, backend, cfg);
    let greedy = SamplerConfig { temperature: 0.0, ..SamplerConfig::default() };
    let rxs: Vec<_> = prompts.iter().map(|p| submit(&engine, Request { prompt: p.clone(), max_tokens: n_gen, sampling: greedy.clone(), stop: vec![], logprobs: Some(10), grammar: None })).collect();
    let mut failures = Vec::new();
    for (case, rx) in reference.cases.iter().zip(rxs) {
        let o = collect(rx);
        assert!(o.error.is_none(), "{}: {:?}", case.id, o.error);
        // Log-probabilities differ from logits by one constant per position, so gaps are the same.
        match check_free_running(case, &o.ids, &o.top) {
            Ok(n) => eprintln!("{}: {n} ids agree", case.id),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    wait_for_free_blocks(&engine);
}

#[test]
fn reference_prompts_teacher_forced_in_one_batch_on_cpu() {
    let Some(path) = smollm2_path() else { return };
    let model = Model::load(&path).expect("the model loads");
    check_batched_teacher_forced(&model, Box::new(CpuBackend::try_new().expect("cpu backend")), llama_cpp_reference().n_gen);
}

#[test]
fn reference_prompts_teacher_forced_in_one_batch_on_wgpu() {
    let Some(path) = smollm2_path() else { return };
    let backend = match WgpuBackend::new() {
        Ok(b) => b,
        Err(e) if std::env::var("FORGE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_WGPU=1 but no wgpu device: {e}"),
        Err(e) => return eprintln!("skipping: no wgpu device ({e})"),
    };
    let model = Model::load(&path).expect("the model loads");
    check_batched_teacher_forced(&model, Box::new(backend), 16);
}

#[test]
fn reference_prompts_batched_match_llama_cpp_on_cpu() {
    reference_prompts_batched(Box::new(CpuBackend::try_new().expect("cpu backend")), 32);
}

#[test]
fn reference_prompts_batched_match_llama_cpp_on_wgpu() {
    let backend = match WgpuBackend::new() {
        Ok(b) => b,
        Err(e) if std::env::var("FORGE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_WGPU=1 but no wgpu device: {e}"),
        Err(e) => return eprintln!("skipping: no wgpu device ({e})"),
    };
    reference_prompts_batched(Box::new(backend), 16);
}

/// A tiny model in a directory of the test's own (tests run in parallel).
fn tiny(test: &str) -> (TinyModel, Model) {
    let dir = temp_dir(&format!("batching-{test}"));
    let t = TinyModel::write(&TinySpec::new(TinyArch::Llama, forge_engine::DType::Q8_0), &dir);
    let m = Model::load(&t.gguf).expect("tiny model loads");
    (t, m)
}

#[test]
fn every_sequence_of_a_batch_equals_running_it_alone() {
    let (t, model) = tiny("alone");
    let prompts: Vec<Vec<u32>> = (0..9).map(|i| (0..(3 + i * 7)).map(|j| ((j * 31 + i * 17) % 250) as u32 + 1).collect()).collect();
    let sampling = |i: usize| SamplerConfig { temperature: if i % 3 == 0 { 0.0 } else { 0.9 }, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 100 + i as u64, ..SamplerConfig::default() };
    let max_tokens = |i: usize| 5 + (i * 3) % 11;

    // Alone: one sequence at a time through generate().
    let mut session = Session::new(&model, Box::new(CpuBackend::try_new().unwrap()), 256, &mut |_, _| {}).unwrap();
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let opts = GenerateOptions { max_tokens: max_tokens(i), sampler: sampling(i), ..GenerateOptions::default() };
            generate(&mut session, &model.tokenizer, p, &opts, &mut |_| {}).unwrap().ids
        })
        .collect();

    let model = Model::load(&t.gguf).unwrap();
    let engine = start(model, Box::new(CpuBackend::try_new().unwrap()), EngineConfig { max_seqs: 4, ctx: 128, max_queue: 32, prefill_chunk: 16 });
    // Staggered: the later requests join a batch that is already running.
    let mut rxs = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        rxs.push(submit(&engine, Request { prompt: p.clone(), max_tokens: max_tokens(i), sampling: sampling(i), stop: vec![], logprobs: None, grammar: None }));
        if i % 3 == 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (i, rx) in rxs.into_iter().enumerate() {
        let o = collect(rx);
        assert!(o.error.is_none(), "sequence {i}: {:?}", o.error);
        // An end-of-generation id ends `generate` too, but it is not streamed by the engine.
        let want: Vec<u32> = alone[i].iter().copied().filter(|id| !engine.tokenizer().stop_ids().contains(id)).collect();
        assert_eq!(o.ids, want, "sequence {i} differs from running it alone");
        assert_eq!(o.completion_tokens, o.ids.len(), "sequence {i}: usage");
        assert!(o.finish.is_some());
    }
    wait_for_free_blocks(&engine);
}

#[test]
fn stop_strings_logprobs_and_bad_requests() {
    let (_t, model) = tiny("stops");
    let engine = start(model, Box::new(CpuBackend::try_new().unwrap()), EngineConfig { max_seqs: 2, ctx: 64, max_queue: 4, prefill_chunk: 16 });
    let greedy = SamplerConfig { temperature: 0.0, ..SamplerConfig::default() };
    let req = |max_tokens: usize, stop: Vec<String>, logprobs: Option<usize>| Request { prompt: vec![5, 6, 7], max_tokens, sampling: greedy.clone(), stop, logprobs, grammar: None };

    let full = collect(submit(&engine, req(20, vec![], Some(3))));
    assert_eq!(full.finish, Some(FinishReason::Length));
    // A stop string taken from the greedy text, so that it occurs: its first two printable
    // characters in a row after the first character (the random model's text is mostly bytes
    // that are not UTF-8 on their own). The same request with it stops there.
    let chars: Vec<char> = full.text.chars().collect();
    let at = (1..chars.len().saturating_sub(1))
        .find(|&i| chars[i..i + 2].iter().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| panic!("the greedy text {:?} has no two printable characters in a row to take a stop string from", full.text));
    let stop: String = chars[at..at + 2].iter().collect();
    let cut = collect(submit(&engine, req(20, vec![stop.clone()], None)));
    assert_eq!(cut.finish, Some(FinishReason::Stop), "stop string {stop:?} in {:?}", full.text);
    assert_eq!(cut.text, full.text[..full.text.find(&stop).unwrap()], "text is cut before the stop string {stop:?}");

    // Log-probabilities: ≤ 0, the greedy token is the most likely alternative.
    let (tx, rx) = mpsc::channel();
    engine.submit(req(4, vec![], Some(3)), Box::new(move |e| tx.send(e).is_ok())).unwrap();
    let mut n = 0;
    while let Ok(Event::Delta { logprobs, tokens, .. }) = rx.recv_timeout(Duration::from_secs(60)) {
        for (lp, id) in logprobs.iter().zip(&tokens) {
            assert_eq!(lp.id, *id);
            assert!(lp.logprob <= 0.0 && lp.top.len() == 3 && lp.top[0].0 == *id, "{lp:?}");
            n += 1;
        }
    }
    assert_eq!(n, 4);

    // Refused before queueing: too long for the context, empty, zero tokens.
    assert!(engine.submit(req(64, vec![], None), Box::new(|_| true)).is_err());
    assert!(engine.submit(Request { prompt: vec![], ..req(4, vec![], None) }, Box::new(|_| true)).is_err());
    assert!(engine.submit(req(0, vec![], None), Box::new(|_| true)).is_err());
    wait_for_free_blocks(&engine);
}

#[test]
fn a_client_that_goes_away_frees_its_blocks() {
    let (_t, model) = tiny("goes-away");
    let engine = start(model, Box::new(CpuBackend::try_new().unwrap()), EngineConfig { max_seqs: 2, ctx: 128, max_queue: 4, prefill_chunk: 16 });
    let greedy = SamplerConfig { temperature: 0.0, ..SamplerConfig::default() };
    let (tx, rx) = mpsc::channel();
    engine.submit(Request { prompt: vec![1, 2, 3], max_tokens: 100, sampling: greedy, stop: vec![], logprobs: None, grammar: None }, Box::new(move |e| tx.send(e).is_ok())).unwrap();
    // Read one token, then hang up.
    assert!(matches!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), Event::Delta { .. }));
    drop(rx);
    wait_for_free_blocks(&engine);
    assert!(engine.stats().generated_tokens < 100, "the sequence was cancelled, not run to the end");
}

#[test]
fn a_full_queue_refuses_instead_of_growing() {
    let (_t, model) = tiny("full-queue");
    let engine = start(model, Box::new(CpuBackend::try_new().unwrap()), EngineConfig { max_seqs: 1, ctx: 128, max_queue: 3, prefill_chunk: 16 });
    let greedy = SamplerConfig { temperature: 0.0, ..SamplerConfig::default() };
    let mut refused = 0;
    let mut rxs = Vec::new();
    for _ in 0..50 {
        let (tx, rx) = mpsc::channel();
        match engine.submit(Request { prompt: vec![1, 2, 3], max_tokens: 50, sampling: greedy.clone(), stop: vec![], logprobs: None, grammar: None }, Box::new(move |e| tx.send(e).is_ok())) {
            Ok(()) => rxs.push(rx),
            Err(forge_engine::batching::SubmitError::QueueFull { .. }) => refused += 1,
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert!(refused >= 40, "only {refused} of 50 refused with a queue of 3");
    for rx in rxs {
        assert!(collect(rx).finish.is_some());
    }
    wait_for_free_blocks(&engine);
}

/// A backend that fails its forward passes while `fail` is set: a device lost mid-generation.
struct Flaky {
    inner: CpuBackend,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Backend for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn device(&self) -> String {
        "a device that comes and goes".into()
    }
    fn supports(&self, op: &forge_engine::graph::Op, dtype: forge_engine::DType) -> bool {
        self.inner.supports(op, dtype)
    }
    fn create_param(&mut self, desc: &forge_engine::backend::ParamDesc, data: Option<&forge_engine::tensor::HostTensor>) -> forge_engine::Result<forge_engine::backend::ParamId> {
        self.inner.create_param(desc, data)
    }
    fn execute(&mut self, graph: &forge_engine::graph::Graph, inputs: &[forge_engine::tensor::HostTensor]) -> forge_engine::Result<Vec<forge_engine::tensor::HostTensor>> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(forge_engine::ForgeError::Backend { backend: "flaky".into(), what: "device lost".into() });
        }
        self.inner.execute(graph, inputs)
    }
}

#[test]
fn a_device_fault_fails_the_batch_not_the_engine_until_it_persists() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_t, model) = tiny("flaky");
    let fail = Arc::new(AtomicBool::new(false));
    let backend = Flaky { inner: CpuBackend::try_new().unwrap(), fail: fail.clone() };
    let engine = start(model, Box::new(backend), EngineConfig { max_seqs: 2, ctx: 128, max_queue: 8, prefill_chunk: 16 });
    let greedy = SamplerConfig { temperature: 0.0, ..SamplerConfig::default() };
    let req = || Request { prompt: vec![1, 2, 3], max_tokens: 8, sampling: greedy.clone(), stop: vec![], logprobs: None, grammar: None };

    let healthy = collect(submit(&engine, req()));
    assert!(healthy.error.is_none() && healthy.ids.len() == 8);
    // One failed step: the request in it gets an error; the engine and its blocks recover.
    fail.store(true, Ordering::SeqCst);
    let failed = collect(submit(&engine, req()));
    assert!(failed.error.as_deref().is_some_and(|m| m.contains("device lost")), "{:?}", failed.error);
    fail.store(false, Ordering::SeqCst);
    wait_for_free_blocks(&engine);
    let again = collect(submit(&engine, req()));
    assert_eq!(again.ids, healthy.ids, "the engine serves normally after a transient fault");
    // A fault that persists stops the engine: requests are refused with a reason, not hung.
    fail.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let _ = engine.submit(req(), Box::new(|_| true));
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stopped = false;
    for _ in 0..100 {
        if engine.stats().failed.is_some() {
            stopped = true;
            break;
        }
        let _ = engine.submit(req(), Box::new(|_| true));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stopped, "the engine should give up on a device that keeps failing");
    assert!(matches!(engine.submit(req(), Box::new(|_| true)), Err(forge_engine::batching::SubmitError::Stopped(_))));
}

#[test]
fn a_shared_prefix_is_computed_once_and_gives_the_same_tokens() {
    let (_t, model) = tiny("prefix");
    let engine = start(model, Box::new(CpuBackend::try_new().unwrap()), EngineConfig { max_seqs: 2, ctx: 128, max_queue: 4, prefill_chunk: 32 });
    let greedy = SamplerConfig { temperature: 0.0, ..SamplerConfig::default() };
    let system: Vec<u32> = (0..40).map(|i| (i * 7 % 200) as u32 + 3).collect();
    let with = |tail: &[u32]| Request { prompt: [system.as_slice(), tail].concat(), max_tokens: 6, sampling: greedy.clone(), stop: vec![], logprobs: None, grammar: None };
    let run = |req: Request| {
        let (tx, rx) = mpsc::channel();
        engine.submit(req, Box::new(move |e| tx.send(e).is_ok())).unwrap();
        let mut ids = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
                Event::Delta { tokens, .. } => ids.extend(tokens),
                Event::Done { usage, .. } => return (ids, usage.cached_prompt_tokens),
                Event::Error { message } => panic!("{message}"),
            }
        }
    };
    let (first, cached) = run(with(&[9, 9, 9]));
    assert_eq!(cached, 0, "nothing is cached before the first request");
    let (again, cached) = run(with(&[9, 9, 9]));
    assert_eq!(cached, 32, "the two full blocks of the shared 43-token prompt come from the cache");
    assert_eq!(again, first, "cached keys and values give the same tokens");
    let (_, cached) = run(with(&[1, 2]));
    assert_eq!(cached, 32, "a different tail after the same system prompt reuses its blocks");
    // The prefix cache must not be mistaken for a different prompt of the same length.
    let other: Vec<u32> = (0..43).map(|i| (i * 11 % 200) as u32 + 3).collect();
    let (_, cached) = run(Request { prompt: other, max_tokens: 6, sampling: greedy.clone(), stop: vec![], logprobs: None, grammar: None });
    assert_eq!(cached, 0);
    wait_for_free_blocks(&engine);
}
