//! The device layer through the engine's public API: the real probe of this machine, and
//! fallback with a real model (fault injection passed in, never through the process env).

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::devices::config::{Flags, resolve};
use forge_engine::devices::{self, BackendKind, Candidate, FaultPlan, OpenOptions, RankOptions};
use forge_engine::models::llama::Readout;
use forge_engine::session::Forward;
use forge_engine::{Model, Session};

#[test]
fn the_real_probe_ranks_a_usable_cpu_and_explains_the_rest() {
    let probe = devices::probe();
    let ranked = devices::rank(&probe, &RankOptions { built: BackendKind::ALL.to_vec(), ..RankOptions::default() });
    assert_eq!(ranked.iter().filter(|c| c.backend == BackendKind::Cpu && c.usable).count(), 1);
    assert!(ranked.iter().all(|c| c.usable != c.reason.is_some()), "{ranked:#?}");
    assert!(ranked.iter().any(|c| c.backend == BackendKind::Cuda), "CUDA is always listed, if only to say why not");
    if std::env::var("FORGE_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
        assert!(probe.wgpu.iter().any(|a| a.compute), "FORGE_REQUIRE_WGPU=1 but no compute-capable wgpu adapter: {:?}", probe.wgpu_error);
    }
    // Software adapters never outrank the native CPU backend without a measurement.
    let cpu = ranked.iter().find(|c| c.backend == BackendKind::Cpu).unwrap().index;
    assert!(ranked.iter().filter(|c| c.class == devices::rank::DeviceClass::Software).all(|c| c.index > cpu));
}

/// Opens every candidate on the CPU: a stand-in GPU, since these tests are about the fallback.
fn stand_in(_: &Candidate) -> forge_engine::Result<Box<dyn Backend>> {
    Ok(Box::new(CpuBackend::try_new()?))
}

fn greedy(s: &mut Session, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut next = prompt.to_vec();
    for _ in 0..n {
        match s.forward(&next, Readout::ArgmaxLast).unwrap() {
            Forward::Token(t) => {
                out.push(t);
                next = vec![t];
            }
            other => panic!("{other:?}"),
        }
    }
    out
}

#[test]
fn a_wgpu_init_fault_falls_back_to_the_cpu_with_the_same_tokens() {
    let Some(path) = forge_tests::smollm2_path() else { return };
    let model = Model::load(&path).unwrap();
    let probe = devices::Probe {
        cpu: devices::probe_cpu::probe(),
        wgpu: vec![devices::probe_wgpu::WgpuAdapter::synthetic("Test GPU", 0x1002, 1, devices::probe_wgpu::GpuType::Discrete, devices::probe_wgpu::Api::Vulkan)],
        wgpu_error: None,
        cuda: devices::probe_cuda::CudaProbe::Absent { reason: "test".into() },
    };
    let ranked = devices::rank(&probe, &RankOptions { built: vec![BackendKind::Cpu, BackendKind::Wgpu], ..RankOptions::default() });
    let settings = resolve(&Flags::default(), &Default::default(), None).unwrap();
    let order = devices::plan(&ranked, &settings).unwrap();
    assert_eq!(order[0].backend, BackendKind::Wgpu, "a discrete GPU outranks the CPU");
    let opts = OpenOptions { ctx: 64, memory_fraction: 0.9, no_fallback: false, faults: FaultPlan::parse("FORGE_FAULT", "wgpu:init").unwrap(), host_memory: None, warmup: true };
    let mut opened = devices::open_session(&model, &order, &opts, &mut stand_in, &mut |_, _, _| {}).unwrap();
    assert_eq!(opened.candidate.backend, BackendKind::Cpu);
    assert_eq!(opened.events.len(), 1);
    assert!(devices::fallback_line(&opened.events, &opened.candidate).starts_with("wgpu (Test GPU (Vulkan)) failed to start: "));
    let prompt = model.tokenizer.encode("The capital of France is", true, false).unwrap();
    let mut direct = Session::new(&model, Box::new(CpuBackend::new()), 64, &mut |_, _| {}).unwrap();
    assert_eq!(greedy(&mut opened.session, &prompt, 8), greedy(&mut direct, &prompt, 8));

    // The same with no_fallback is an error, and nothing is loaded.
    let strict = OpenOptions { no_fallback: true, ..opts };
    assert!(devices::open_session(&model, &order, &strict, &mut stand_in, &mut |_, _, _| {}).is_err());
}
