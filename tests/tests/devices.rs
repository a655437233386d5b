//! The device layer through the engine's public API on this machine's real devices: the probe,
//! every usable candidate opened on its own backend (as `forge` opens it) and held to llama.cpp's
//! reference, and fallback with a real model (fault injection passed in, never through the
//! process env). With `FORGE_REQUIRE_WGPU=1` a wgpu adapter must be among the devices checked.

use forge_engine::backend::Backend;
use forge_engine::backend::cpu::CpuBackend;
use forge_engine::devices::config::{Flags, resolve};
use forge_engine::devices::{self, BackendKind, Candidate, FaultPlan, OpenOptions, RankOptions};
use forge_engine::session::Readout;
use forge_engine::session::Forward;
use forge_engine::{Model, Session};
use forge_tests::reference::{Agreement, check_teacher_forced};
use forge_tests::{llama_cpp_reference, required};

#[test]
fn the_real_probe_ranks_a_usable_cpu_and_explains_the_rest() {
    let probe = devices::probe();
    let ranked = devices::rank(&probe, &RankOptions { built: BackendKind::ALL.to_vec(), ..RankOptions::default() });
    assert_eq!(ranked.iter().filter(|c| c.backend == BackendKind::Cpu && c.usable).count(), 1);
    assert!(ranked.iter().all(|c| c.usable != c.reason.is_some()), "{ranked:#?}");
    assert!(ranked.iter().any(|c| c.backend == BackendKind::Cuda), "CUDA is always listed, if only to say why not");
    if required("FORGE_REQUIRE_WGPU") {
        assert!(probe.wgpu.iter().any(|a| a.compute), "FORGE_REQUIRE_WGPU=1 but no compute-capable wgpu adapter: {:?}", probe.wgpu_error);
    }
    // Software adapters never outrank the native CPU backend without a measurement.
    let cpu = ranked.iter().find(|c| c.backend == BackendKind::Cpu).unwrap().index;
    assert!(ranked.iter().filter(|c| c.class == devices::rank::DeviceClass::Software).all(|c| c.index > cpu));
}

/// Opens the backend `c` names on its own device, as `forge` does (`native/src/backends.rs`).
fn open_real(c: &Candidate) -> forge_engine::Result<Box<dyn Backend>> {
    use forge_engine::backend::{cuda::CudaBackend, wgpu::WgpuBackend};
    Ok(match c.backend {
        BackendKind::Cpu => Box::new(CpuBackend::try_new()?),
        BackendKind::Wgpu => Box::new(match &c.adapter {
            Some(a) => WgpuBackend::with_adapter(a.clone())?,
            None => WgpuBackend::new()?,
        }),
        BackendKind::Cuda => Box::new(CudaBackend::new(c.cuda_ordinal.unwrap_or(0) as usize)?),
    })
}

/// Continuation positions of llama.cpp's `dev-capital` case checked per device (lavapipe is slow).
const POSITIONS: usize = 16;

/// The session's logits on llama.cpp's `dev-capital` case, teacher-forced over its first
/// [`POSITIONS`] continuation positions in one pass, held to the rule every backend is held to
/// (`forge_tests::reference`): an independent reference, not another run of our own CPU code.
fn agrees_with_llama_cpp(model: &Model, session: &mut Session) -> Result<Agreement, String> {
    let reference = llama_cpp_reference();
    let case = reference.cases.iter().find(|c| c.id == "dev-capital").expect("the fixture has dev-capital");
    let p = case.prompt_ids.len();
    session.reset();
    let Forward::Logits { values, .. } = session.forward(&case.teacher_forced_input(POSITIONS), Readout::LogitsAll).map_err(|e| e.to_string())? else {
        return Err("LogitsAll returned no logits".into());
    };
    check_teacher_forced(case, model.config.n_vocab, &values[(p - 1) * model.config.n_vocab..])
}

fn options(faults: &str, no_fallback: bool) -> OpenOptions {
    OpenOptions { ctx: 64, kv_type: Default::default(), memory_fraction: 0.9, no_fallback, faults: FaultPlan::parse("FORGE_FAULT", faults).unwrap(), host_memory: None, warmup: true }
}

#[test]
fn every_usable_device_runs_on_its_own_backend_and_agrees_with_llama_cpp() {
    let Some(path) = forge_tests::smollm2_path() else { return };
    let model = Model::load(&path).unwrap();
    let probe = devices::probe();
    let ranked = devices::rank(&probe, &RankOptions { built: BackendKind::ALL.to_vec(), ..RankOptions::default() });
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for c in ranked.iter().filter(|c| c.usable) {
        // This candidate alone, no fallback: whatever runs is this device or nothing.
        let mut opened = match devices::open_session(&model, std::slice::from_ref(c), &options("", true), &mut open_real, &mut |_, _, _| {}) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{} ({}) is listed usable but does not open: {e}", c.id, c.label));
                continue;
            }
        };
        assert_eq!(opened.candidate.id, c.id);
        assert!(opened.events.is_empty(), "{:?}", opened.events);
        assert_eq!(opened.session.backend_name(), c.backend.name(), "{} opened on another backend", c.id);
        match agrees_with_llama_cpp(&model, &mut opened.session) {
            Ok(a) => eprintln!("{} ({}): {}/{} positions agree with llama.cpp ({} near-ties)", c.id, c.label, a.positions - a.near_ties, a.positions, a.near_ties),
            Err(e) => failures.push(format!("{} ({}):\n{e}", c.id, c.label)),
        }
        checked.push(c.backend);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked.contains(&BackendKind::Cpu));
    if required("FORGE_REQUIRE_WGPU") {
        assert!(checked.contains(&BackendKind::Wgpu), "FORGE_REQUIRE_WGPU=1 but no wgpu device was checked: {ranked:#?}");
    }
}

#[test]
fn a_wgpu_init_fault_falls_back_to_the_cpu_which_agrees_with_llama_cpp() {
    let Some(path) = forge_tests::smollm2_path() else { return };
    let model = Model::load(&path).unwrap();
    // A discrete GPU that outranks the CPU; the injected fault stops it before it is opened.
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
    let mut opened = devices::open_session(&model, &order, &options("wgpu:init", false), &mut open_real, &mut |_, _, _| {}).unwrap();
    assert_eq!(opened.candidate.backend, BackendKind::Cpu);
    assert_eq!(opened.session.backend_name(), "cpu");
    assert_eq!(opened.events.len(), 1);
    assert!(devices::fallback_line(&opened.events, &opened.candidate).starts_with("wgpu (Test GPU (Vulkan)) failed to start: "));
    if let Err(e) = agrees_with_llama_cpp(&model, &mut opened.session) {
        panic!("the session fallen back to:\n{e}");
    }

    // The same with no_fallback is an error, and nothing is loaded.
    assert!(devices::open_session(&model, &order, &options("wgpu:init", true), &mut open_real, &mut |_, _, _| {}).is_err());
}
