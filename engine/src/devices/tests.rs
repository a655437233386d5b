//! Ranking, settings, planning, memory fit and fallback, all on synthetic probes and the tiny
//! random model, so they run the same on every machine.

use std::collections::BTreeMap;
use std::path::Path;

use super::config::{BackendChoice, DeviceChoice, Flags, Origin, resolve};
use super::fit;
use crate::session::KvType;
use super::open::Failure;
use super::probe_cpu::CpuInfo;
use crate::backend::probe_cuda::{CudaDevice, CudaProbe};
use super::probe_wgpu::{Api, GpuType, WgpuAdapter};
use super::rank::DeviceClass;
use super::*;
use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
use crate::dtype::DType;
use crate::session::Readout;

fn cpu() -> CpuInfo {
    CpuInfo { model: "Test CPU".into(), arch: "x86_64", threads: 8, simd: vec!["avx2"], ram_total: Some(32 << 30), ram_available: Some(16 << 30) }
}

fn probe_of(wgpu: Vec<WgpuAdapter>, cuda: CudaProbe) -> Probe {
    Probe { cpu: cpu(), wgpu, wgpu_error: None, cuda }
}

fn no_cuda() -> CudaProbe {
    CudaProbe::Absent { reason: "libcuda.so.1 not found (no NVIDIA driver)".into() }
}

fn built_all() -> RankOptions {
    RankOptions { built: BackendKind::ALL.to_vec(), ..RankOptions::default() }
}

fn labels(c: &[Candidate]) -> Vec<String> {
    c.iter().map(|c| format!("{}{}", c.label, if c.usable { "" } else { " [x]" })).collect()
}

const LLVMPIPE: &str = "llvmpipe (LLVM 15.0.7, 256 bits)";

#[test]
fn discrete_before_integrated_before_cpu_before_software() {
    let p = probe_of(
        vec![
            WgpuAdapter::synthetic(LLVMPIPE, 0x10005, 0, GpuType::Cpu, Api::Vulkan),
            WgpuAdapter::synthetic("Intel(R) UHD Graphics 770", 0x8086, 0x4680, GpuType::Integrated, Api::Vulkan),
            WgpuAdapter::synthetic("AMD Radeon RX 7900 XTX", 0x1002, 0x744c, GpuType::Discrete, Api::Vulkan),
        ],
        no_cuda(),
    );
    let r = rank(&p, &built_all());
    assert_eq!(
        labels(&r),
        [
            "AMD Radeon RX 7900 XTX (Vulkan)",
            "Intel(R) UHD Graphics 770 (Vulkan)",
            "Test CPU (8 threads)",
            "llvmpipe (LLVM 15.0.7, 256 bits) (Vulkan)",
            "CUDA [x]"
        ]
    );
    assert_eq!(r[3].class, DeviceClass::Software);
    assert!(r.iter().enumerate().all(|(i, c)| c.index == i));
    assert_eq!(r[4].reason.as_deref(), Some("not available: libcuda.so.1 not found (no NVIDIA driver)"));
}

#[test]
fn software_adapters_are_recognised_by_name_too() {
    for name in ["lavapipe", "SwiftShader Device (Subzero)", "Microsoft Basic Render Driver", LLVMPIPE] {
        assert!(rank::is_software(name, GpuType::Other), "{name}");
    }
    assert!(rank::is_software("anything", GpuType::Cpu));
    assert!(!rank::is_software("NVIDIA GeForce RTX 4090", GpuType::Discrete));
}

#[test]
fn measurements_reorder_the_usable_set() {
    let p = probe_of(vec![WgpuAdapter::synthetic(LLVMPIPE, 0x10005, 0, GpuType::Cpu, Api::Vulkan)], no_cuda());
    let mut opts = built_all();
    opts.measured = BTreeMap::from([("wgpu:0".to_string(), 50.0), ("cpu".to_string(), 20.0)]);
    let r = rank(&p, &opts);
    assert_eq!(r[0].id, "wgpu:0");
    assert_eq!(r[0].measured_tok_s, Some(50.0));
    opts.measured = BTreeMap::from([("wgpu:0".to_string(), 50.0), ("cpu".to_string(), 90.0)]);
    assert_eq!(rank(&p, &opts)[0].id, "cpu");
}

#[test]
fn same_gpu_through_vulkan_and_gl_is_listed_once_as_vulkan() {
    let mut vk = WgpuAdapter::synthetic("AMD Radeon RX 6600", 0x1002, 0x73ff, GpuType::Discrete, Api::Vulkan);
    vk.pci_bus_id = Some("0000:03:00.0".into());
    let gl = WgpuAdapter::synthetic("AMD Radeon RX 6600 (radeonsi, navi23, LLVM 15.0.7, DRM 3.49)", 0, 0, GpuType::Discrete, Api::Gl);
    let gl_sw = WgpuAdapter::synthetic(LLVMPIPE, 0, 0, GpuType::Cpu, Api::Gl);
    let vk_sw = WgpuAdapter::synthetic(LLVMPIPE, 0x10005, 0, GpuType::Cpu, Api::Vulkan);
    // Name-only match (GL has no ids) for llvmpipe; the radeonsi GL name differs, so it stays.
    let r = rank(&probe_of(vec![gl_sw, gl, vk, vk_sw], no_cuda()), &built_all());
    let sw: Vec<_> = r.iter().filter(|c| c.class == DeviceClass::Software).collect();
    assert_eq!(sw.len(), 1);
    assert_eq!(sw[0].api, "Vulkan");
    assert_eq!(sw[0].also_seen_as.len(), 1);
    assert_eq!(sw[0].also_seen_as[0].api, "GL");
}

#[test]
fn two_identical_gpus_on_one_api_are_both_kept() {
    let a = WgpuAdapter::synthetic("NVIDIA GeForce RTX 4090", 0x10de, 0x2684, GpuType::Discrete, Api::Vulkan);
    let r = rank(&probe_of(vec![a.clone(), a], no_cuda()), &built_all());
    assert_eq!(r.iter().filter(|c| c.class == DeviceClass::Discrete).count(), 2);
}

fn cuda_4090(pci: Option<&str>) -> CudaProbe {
    CudaProbe::Present {
        library: "libcuda.so.1".into(),
        driver_version: Some((12, 4)),
        devices: vec![CudaDevice { ordinal: 0, name: "NVIDIA GeForce RTX 4090".into(), total_mem: 24 << 30, compute_capability: (8, 9), pci_bus_id: pci.map(String::from) }],
    }
}

#[test]
fn cuda_and_vulkan_on_one_gpu_prefer_cuda_when_it_is_built() {
    let mut vk = WgpuAdapter::synthetic("NVIDIA GeForce RTX 4090", 0x10de, 0x2684, GpuType::Discrete, Api::Vulkan);
    vk.pci_bus_id = Some("0000:01:00.0".into());
    let r = rank(&probe_of(vec![vk.clone()], cuda_4090(Some("0000:01:00.0"))), &built_all());
    assert_eq!(labels(&r), ["NVIDIA GeForce RTX 4090 (CUDA)", "Test CPU (8 threads)"]);
    assert_eq!(r[0].also_seen_as[0].api, "Vulkan");
    assert_eq!(r[0].memory, Some(24 << 30));
    // Without bus ids the name matches.
    let r = rank(&probe_of(vec![WgpuAdapter::synthetic("NVIDIA GeForce RTX 4090", 0x10de, 0x2684, GpuType::Discrete, Api::Vulkan)], cuda_4090(None)), &built_all());
    assert_eq!(r.len(), 2);
}

#[test]
fn unusable_cuda_leaves_the_gpu_to_vulkan_and_keeps_its_reason() {
    let vk = WgpuAdapter::synthetic("NVIDIA GeForce RTX 4090", 0x10de, 0x2684, GpuType::Discrete, Api::Vulkan);
    let opts = RankOptions { built: vec![BackendKind::Cpu, BackendKind::Wgpu], ..RankOptions::default() };
    let r = rank(&probe_of(vec![vk], cuda_4090(None)), &opts);
    assert_eq!(labels(&r), ["NVIDIA GeForce RTX 4090 (Vulkan)", "Test CPU (8 threads)"]);
    let also = &r[0].also_seen_as[0];
    assert!(!also.usable && also.reason.as_deref().unwrap().contains("CUDA backend is not built yet"), "{also:?}");
    // With no Vulkan path, the CUDA device itself is listed, unusable, with the reason.
    let r = rank(&probe_of(vec![], cuda_4090(None)), &opts);
    let cuda = r.iter().find(|c| c.backend == BackendKind::Cuda).unwrap();
    assert!(!cuda.usable && cuda.reason.as_deref().unwrap().contains("compute capability 8.9"));
    let failed = CudaProbe::Failed { library: "libcuda.so.1".into(), reason: "cuInit failed with CUresult 100 (no CUDA-capable device is detected)".into() };
    let r = rank(&probe_of(vec![], failed), &opts);
    assert!(r.iter().any(|c| c.reason.as_deref().is_some_and(|s| s.starts_with("driver present (libcuda.so.1) but unusable: cuInit"))));
}

#[test]
fn unbuilt_or_compute_less_adapters_are_unusable() {
    let mut gl = WgpuAdapter::synthetic("Mesa Intel(R) HD Graphics 3000", 0x8086, 0x0116, GpuType::Integrated, Api::Gl);
    gl.compute = false;
    let r = rank(&probe_of(vec![gl], no_cuda()), &built_all());
    assert_eq!(r[0].label, "Test CPU (8 threads)");
    assert_eq!(r[1].reason.as_deref(), Some("the adapter cannot run compute shaders"));
    let r = rank(&probe_of(vec![WgpuAdapter::synthetic("X", 1, 1, GpuType::Discrete, Api::Vulkan)], no_cuda()), &RankOptions::default());
    assert_eq!(r[0].backend, BackendKind::Cpu);
    assert_eq!(r[1].reason.as_deref(), Some("the wgpu backend is not part of this build"));
    let r = rank(&probe_of(vec![], no_cuda()), &built_all());
    assert!(r.iter().any(|c| c.reason.as_deref().is_some_and(|s| s.contains("no wgpu adapter found"))));
}

// ---- settings ----

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn flags(backend: Option<&str>, device: Option<&str>) -> Flags {
    Flags { backend: backend.map(String::from), device: device.map(String::from), kv_type: None }
}

const CFG: &str = "/etc/forge/config.toml";

#[test]
fn flag_beats_env_beats_config_beats_default() {
    let file = Some((Path::new(CFG), "backend = \"wgpu\"\ndevice = \"llvm\"\nmemory_fraction = 0.5\n[cpu]\nthreads = 3\n[wgpu]\napis = [\"vulkan\"]\n"));
    let s = resolve(&flags(None, None), &env(&[]), None).unwrap();
    assert_eq!((s.backend.value, s.backend.origin), (BackendChoice::Auto, Origin::Default));
    assert_eq!(s.memory_fraction.value, config::DEFAULT_MEMORY_FRACTION);
    let s = resolve(&flags(None, None), &env(&[]), file).unwrap();
    assert_eq!((s.backend.value, &s.backend.origin), (BackendChoice::Wgpu, &Origin::Config(CFG.into())));
    assert_eq!(s.device.unwrap().value, DeviceChoice::Name("llvm".into()));
    assert_eq!((s.memory_fraction.value, s.cpu_threads, s.wgpu_apis), (0.5, Some(3), Some(vec![Api::Vulkan])));
    let s = resolve(&flags(None, None), &env(&[("FORGE_BACKEND", "cpu"), ("FORGE_DEVICE", "0")]), file).unwrap();
    assert_eq!((s.backend.value, s.backend.origin), (BackendChoice::Cpu, Origin::Env("FORGE_BACKEND")));
    assert_eq!(s.device.unwrap().value, DeviceChoice::Index(0));
    let s = resolve(&flags(Some("cuda"), Some("2")), &env(&[("FORGE_BACKEND", "cpu")]), file).unwrap();
    assert_eq!((s.backend.value, s.backend.origin), (BackendChoice::Cuda, Origin::Flag("--backend")));
    assert_eq!(s.device.unwrap().origin, Origin::Flag("--device"));
    // An empty variable is unset.
    assert_eq!(resolve(&flags(None, None), &env(&[("FORGE_BACKEND", "")]), None).unwrap().backend.origin, Origin::Default);
}

#[test]
fn kv_type_flag_beats_env_beats_config_beats_f16() {
    use crate::session::KvType;
    let file = Some((Path::new(CFG), "kv_type = \"f32\"\n"));
    let kv = |f: Option<&str>, e: &[(&str, &str)], file| {
        let s = resolve(&Flags { kv_type: f.map(String::from), ..flags(None, None) }, &env(e), file).unwrap();
        (s.kv_type.value, s.kv_type.origin)
    };
    assert_eq!(kv(None, &[], None), (KvType::F16, Origin::Default));
    assert_eq!(kv(None, &[], file), (KvType::F32, Origin::Config(CFG.into())));
    assert_eq!(kv(None, &[("FORGE_KV_TYPE", "q8_0")], file), (KvType::Q8_0, Origin::Env("FORGE_KV_TYPE")));
    assert_eq!(kv(Some("F16"), &[("FORGE_KV_TYPE", "q8_0")], file), (KvType::F16, Origin::Flag("--kv-type")));
    let err = |f: Option<&str>, e: &[(&str, &str)], t: Option<&str>| resolve(&Flags { kv_type: f.map(String::from), ..flags(None, None) }, &env(e), t.map(|t| (Path::new(CFG), t))).unwrap_err().to_string();
    assert!(err(Some("q4"), &[], None).contains("--kv-type q4: "), "{}", err(Some("q4"), &[], None));
    assert!(err(None, &[("FORGE_KV_TYPE", "bf16")], None).contains("FORGE_KV_TYPE=bf16"));
    assert!(err(None, &[], Some("kv_type = \"q4_0\"")).contains("key `kv_type` = \"q4_0\": expected f32, f16 or q8_0"));
    assert!(err(None, &[], Some("kv_type = 16")).contains("key `kv_type` = 16: must be a string"));
}

#[test]
fn bad_values_name_their_source_and_key() {
    let err = |f: Flags, e: Env, file: Option<&str>| resolve(&f, &e, file.map(|t| (Path::new(CFG), t))).unwrap_err().to_string();
    assert!(err(flags(None, None), env(&[("FORGE_BACKEND", "vulcan")]), None).ends_with("FORGE_BACKEND=vulcan: unknown backend; expected auto, cpu, wgpu or cuda"));
    assert!(err(flags(Some("gpu"), None), env(&[]), None).contains("--backend gpu: unknown backend"));
    assert!(err(flags(None, None), env(&[]), Some("memory_fraction = 1.5")).ends_with("config /etc/forge/config.toml: key `memory_fraction` = 1.5: must be in (0, 1]"));
    assert!(err(flags(None, None), env(&[]), Some("memory_fraction = 0")).contains("must be in (0, 1]"));
    assert!(err(flags(None, None), env(&[]), Some("backend = \"vulcan\"")).contains("key `backend` = \"vulcan\": unknown backend"));
    assert!(err(flags(None, None), env(&[]), Some("backend = 3")).contains("key `backend` = 3: must be a string"));
    assert!(err(flags(None, None), env(&[]), Some("bakend = \"cpu\"")).contains("unknown key `bakend`"));
    assert!(err(flags(None, None), env(&[]), Some("[cpu]\nthreads = 0")).contains("key `cpu.threads` = 0"));
    assert!(err(flags(None, None), env(&[]), Some("[wgpu]\napis = [\"vulkan\", \"glide\"]")).contains("key `wgpu.apis`"));
    assert!(err(flags(None, None), env(&[]), Some("backend = ")).starts_with("invalid argument: config /etc/forge/config.toml: "));
    // The config is parsed (and so checked) even when a flag overrides its key.
    assert!(err(flags(Some("cpu"), None), env(&[]), Some("backend = \"vulcan\"")).contains("config"));
}

#[test]
fn config_path_follows_forge_config_then_xdg_then_home() {
    let p = |e: &[(&str, &str)]| config::config_path(&env(e));
    assert_eq!(p(&[("FORGE_CONFIG", "/x.toml"), ("HOME", "/h")]), Some(("/x.toml".into(), true)));
    assert_eq!(p(&[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")]), Some(("/c/forge/config.toml".into(), false)));
    assert_eq!(p(&[("HOME", "/h")]), Some(("/h/.config/forge/config.toml".into(), false)));
    assert_eq!(p(&[]), None);
}

// ---- planning ----

fn machine() -> Vec<Candidate> {
    let p = probe_of(vec![WgpuAdapter::synthetic(LLVMPIPE, 0x10005, 0, GpuType::Cpu, Api::Vulkan)], no_cuda());
    rank(&p, &RankOptions { built: vec![BackendKind::Cpu, BackendKind::Wgpu], ..RankOptions::default() })
}

fn settings(backend: Option<&str>, device: Option<&str>) -> Settings {
    resolve(&flags(backend, device), &env(&[]), None).unwrap()
}

fn ids(order: &[Candidate]) -> Vec<&str> {
    order.iter().map(|c| c.id.as_str()).collect()
}

#[test]
fn plans_put_the_choice_first_then_usable_fallbacks() {
    let m = machine();
    assert_eq!(ids(&plan(&m, &settings(None, None)).unwrap()), ["cpu", "wgpu:0"]);
    assert_eq!(ids(&plan(&m, &settings(Some("wgpu"), None)).unwrap()), ["wgpu:0", "cpu"]);
    assert_eq!(ids(&plan(&m, &settings(None, Some("LLVMpipe"))).unwrap()), ["wgpu:0", "cpu"]);
    assert_eq!(ids(&plan(&m, &settings(None, Some("1"))).unwrap()), ["wgpu:0", "cpu"]);
    // An unusable choice stays first, so opening says why before falling back.
    assert_eq!(ids(&plan(&m, &settings(Some("cuda"), None)).unwrap()), ["cuda", "cpu", "wgpu:0"]);
    let e = plan(&m, &settings(None, Some("9"))).unwrap_err().to_string();
    assert!(e.contains("--device=9: no such device"), "{e}");
    let e = plan(&m, &settings(Some("cpu"), Some("llvmpipe"))).unwrap_err().to_string();
    assert!(e.contains("no cpu device matches"), "{e}");
    let e = plan(&m, &settings(Some("cpu"), Some("1"))).unwrap_err().to_string();
    assert!(e.contains("but --backend asks for cpu"), "{e}");
}

// ---- memory fit ----

/// SmolLM2-135M's shape (its GGUF's metadata: 30 layers, 576 wide, 9 query heads and 3 KV heads
/// of 64, feed-forward 1536, 49152 tokens).
fn smollm2_135m() -> crate::model::ModelConfig {
    crate::model::ModelConfig { n_vocab: 49152, n_embd: 576, n_layer: 30, n_head: 9, n_kv_head: 3, head_dim: 64, n_ff: 1536, ctx_train: 8192, layers: crate::model::LayerConfig::uniform(30, 100000.0, 1.0), ..check::tiny_config() }
}

#[test]
fn memory_estimate_of_smollm2_135m_worked_out_by_hand() {
    // KV cache at ctx 2048: each cached position holds, per layer, a key and a value of
    // 3 heads × 64 = 192 f32: 2 × 192 × 4 B = 1536 B; over 30 layers 46,080 B (45 KiB);
    // over 2048 positions 92,160 KiB = 90 MiB.
    // Activations: min(2048, 512) = 512 tokens in flight, each with the residual, two norms and
    // two block outputs (4 × 576), q (576), k and v (2 × 192), gate and up (2 × 1536): 6336 f32
    // = 25,344 B, so 12,976,128 B; plus one row of logits, 49,152 × 4 = 196,608 B: 13,172,736 B.
    // Weights and the largest row are the caller's figures; the largest buffer is that row or
    // one layer's K (or V) cache, 2048 × 768 B = 1.5 MiB, whichever is larger.
    let e = fit::estimate(&smollm2_135m(), 101_000_000, 28_311_552, 2048, KvType::F32);
    assert_eq!(e.kv_cache, 90 << 20);
    assert_eq!(e.activations, 13_172_736);
    assert_eq!(e.total(), 101_000_000 + 94_371_840 + 13_172_736);
    assert_eq!(e.largest_buffer, 28_311_552);
    assert_eq!(fit::estimate(&smollm2_135m(), 0, 1152, 2048, KvType::F32).largest_buffer, 2048 * 768);
    // Past 512 tokens only the cache grows, linearly in the context.
    let e8k = fit::estimate(&smollm2_135m(), 0, 0, 8192, KvType::F32);
    assert_eq!((e8k.kv_cache, e8k.activations), (360 << 20, 13_172_736));
    assert_eq!(fit::estimate(&smollm2_135m(), 0, 0, 16, KvType::F32).activations, 16 * 25_344 + 196_608);
}

/// Peak bytes of activations held at once by a pass of `t` tokens reading out one row (decoding,
/// chunked prefill), every buffer freed after its last reader (`Graph::last_uses`, as executors
/// do): measured on the graph `llama::forward` builds, not derived from the estimate's formula.
fn peak_activation_bytes(c: &crate::model::ModelConfig, t: usize, ctx: usize) -> u64 {
    use crate::backend::{ParamDesc, ParamId, ParamKind, ParamTable};
    use crate::graph::Op;
    use crate::models::{self, BatchShape};
    let mut params = ParamTable::default();
    let (kv, states) = models::kv_shapes(c, ctx.div_ceil(16), 16, DType::F16);
    let weights = models::weight_shapes(c).unwrap().into_iter().map(|(n, s)| (n, s, DType::F32, ParamKind::Weight));
    for (i, (name, shape, dtype, kind)) in weights.chain(states.into_iter().map(|(n, s, d)| (n, s, d, ParamKind::State))).enumerate() {
        params.insert(ParamId(i as u32), ParamDesc { name, shape, dtype, kind });
    }
    let g = models::forward(c, &params, &kv, BatchShape { n_tokens: t, table_cols: ctx.div_ceil(16), out_rows: Some(1), argmax: false }).unwrap();
    let last = g.last_uses();
    let bytes = |i: usize| {
        let n = &g.nodes()[i];
        // Params live elsewhere (weights, cache); a scatter stands for the cache it wrote.
        if matches!(n.op, Op::Param { .. } | Op::ScatterRows) { 0 } else { n.shape.iter().product::<usize>() as u64 * 4 }
    };
    let (mut live, mut peak) = (0u64, 0u64);
    for i in 0..g.nodes().len() {
        live += bytes(i);
        peak = peak.max(live);
        live -= (0..=i).filter(|&j| last[j] == i).map(bytes).sum::<u64>();
    }
    peak
}

#[test]
fn memory_estimate_covers_what_a_session_allocates_and_a_pass_holds() {
    for ((c, ctx), kv_type) in [(check::tiny_config(), 64), (smollm2_135m(), 2048), (smollm2_135m(), 256)].into_iter().flat_map(|c| KvType::ALL.map(|k| (c.clone(), k))) {
        let e = fit::estimate(&c, 0, 0, ctx, kv_type);
        // The KV cache is exactly the state params a session creates for ctx positions.
        let (_, states) = crate::models::kv_shapes(&c, ctx.div_ceil(crate::session::BLOCK_SIZE), crate::session::BLOCK_SIZE, kv_type.dtype());
        let allocated: u64 = states.iter().map(|(_, s, d)| crate::tensor::HostTensor::byte_len(*d, s).unwrap() as u64).sum();
        assert_eq!(e.kv_cache, allocated, "ctx {ctx}, {kv_type}");
        // Activations bound the peak of the largest pass, without being more than twice it.
        let peak = peak_activation_bytes(&c, ctx.min(fit::MAX_TOKENS_IN_FLIGHT), ctx);
        assert!(e.activations >= peak && e.activations <= 2 * peak, "ctx {ctx}: estimate {} for a peak of {peak}", e.activations);
    }
}

#[test]
fn fit_uses_the_budget_and_max_buffer() {
    let m = machine();
    let cpu = m.iter().find(|c| c.id == "cpu").unwrap().clone();
    let e = fit::estimate(&check::tiny_config(), 15 << 30, 1 << 20, 64, KvType::F16);
    // 16 GiB available × 0.9 = 14.4 GiB < 15 GiB of weights.
    let why = fit::check(&e, &cpu, 0.9, None).unwrap_err();
    assert!(why.starts_with("needs 15.00 GiB (weights 15.00 GiB + KV cache 0.00 GiB"), "{why}");
    assert!(why.ends_with("but the budget is 14.40 GiB (0.9 × 16.00 GiB)"), "{why}");
    assert!(fit::check(&e, &cpu, 1.0, None).is_ok());
    let mut gpu = m.iter().find(|c| c.id == "wgpu:0").unwrap().clone();
    gpu.memory = None;
    gpu.class = DeviceClass::Discrete;
    assert!(fit::check(&e, &gpu, 0.9, None).is_ok(), "unknown memory is allowed");
    gpu.max_buffer = Some(1 << 19);
    assert!(fit::check(&e, &gpu, 0.9, None).unwrap_err().contains("per buffer"));
}

// ---- opening with fallback ----

fn opener(c: &Candidate) -> crate::Result<Box<dyn Backend>> {
    match c.backend {
        BackendKind::Cpu => Ok(Box::new(CpuBackend::try_new()?)),
        // The stand-in GPU runs the CPU kernels: these tests are about the fallback path.
        BackendKind::Wgpu => Ok(Box::new(CpuBackend::try_new()?)),
        BackendKind::Cuda => Err(crate::ForgeError::Backend { backend: "cuda".into(), what: "not built".into() }),
    }
}

fn options(faults: &str) -> OpenOptions {
    OpenOptions { ctx: 16, kv_type: Default::default(), memory_fraction: 0.9, no_fallback: false, faults: FaultPlan::parse("FORGE_FAULT", faults).unwrap(), host_memory: None, warmup: true }
}

fn first_token(s: &mut crate::Session) -> u32 {
    match s.forward(&[1, 7, 42], Readout::ArgmaxLast).unwrap() {
        crate::session::Forward::Token(t) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn injected_init_fault_falls_back_with_one_event_and_the_same_result() {
    let model = check::tiny_model(DType::Q8_0, 3).unwrap();
    let order = plan(&machine(), &settings(Some("wgpu"), None)).unwrap();
    let mut opened = open_session(&model, &order, &options("wgpu:init"), &mut opener, &mut |_, _, _| {}).unwrap();
    assert_eq!(opened.candidate.id, "cpu");
    assert_eq!(opened.events.len(), 1);
    assert_eq!(opened.events[0].failure, Failure::Failed);
    let line = fallback_line(&opened.events, &opened.candidate);
    assert!(line.starts_with("wgpu (llvmpipe (LLVM 15.0.7, 256 bits) (Vulkan)) failed to start: wgpu backend: injected fault at init"), "{line}");
    assert!(line.ends_with("; using cpu (Test CPU (8 threads)) instead"), "{line}");
    let mut direct = crate::Session::new(&model, Box::new(CpuBackend::new()), 16, &mut |_, _| {}).unwrap();
    assert_eq!(first_token(&mut opened.session), first_token(&mut direct));
}

#[test]
fn no_fallback_turns_the_failure_into_an_error() {
    let model = check::tiny_model(DType::F32, 3).unwrap();
    let order = plan(&machine(), &settings(Some("wgpu"), None)).unwrap();
    let opts = OpenOptions { no_fallback: true, ..options("wgpu:init") };
    let e = open_session(&model, &order, &opts, &mut opener, &mut |_, _, _| {}).err().unwrap().to_string();
    assert!(e.contains("failed to start") && e.contains("fallback is disabled"), "{e}");
}

#[test]
fn alloc_and_compile_faults_in_the_cpu_backend_fall_back_too() {
    let model = check::tiny_model(DType::F32, 3).unwrap();
    for stage in ["alloc", "compile"] {
        let order = plan(&machine(), &settings(Some("cpu"), None)).unwrap();
        let opened = open_session(&model, &order, &options(&format!("cpu:{stage}")), &mut opener, &mut |_, _, _| {});
        // The stand-in GPU is a CPU backend too, so both fail: the error lists every attempt.
        let e = opened.err().unwrap().to_string();
        assert!(e.contains("no device could run the model") && e.contains(&format!("injected fault at {stage}")), "{e}");
    }
    // Outside open_session, the plan is gone.
    assert!(CpuBackend::try_new().is_ok());
}

#[test]
fn unusable_and_oversized_choices_fall_back_with_reasons() {
    let model = check::tiny_model(DType::F32, 3).unwrap();
    let order = plan(&machine(), &settings(Some("cuda"), None)).unwrap();
    let opened = open_session(&model, &order, &options(""), &mut opener, &mut |_, _, _| {}).unwrap();
    assert_eq!(opened.candidate.id, "cpu");
    assert_eq!(opened.events[0].failure, Failure::Unusable);
    assert!(opened.events[0].describe().starts_with("cuda (CUDA) is not usable: not available: libcuda.so.1 not found"));
    let mut order = plan(&machine(), &settings(None, None)).unwrap();
    order[0].memory = Some(1000);
    let opened = open_session(&model, &order, &options(""), &mut opener, &mut |_, _, _| {}).unwrap();
    assert_eq!(opened.events[0].failure, Failure::DoesNotFit);
    assert_eq!(opened.candidate.id, "wgpu:0");
}

#[test]
fn model_errors_do_not_fall_back() {
    let model = check::tiny_model(DType::F32, 3).unwrap();
    let order = plan(&machine(), &settings(None, None)).unwrap();
    let opts = OpenOptions { ctx: 0, ..options("") };
    let e = open_session(&model, &order, &opts, &mut opener, &mut |_, _, _| {}).err().unwrap();
    assert!(matches!(e, crate::ForgeError::InvalidArgument { .. }), "{e}");
}

// ---- the doctor's reference against an independent one ----

/// The CPU backend's logits for the doctor's passes.
fn cpu_logits(model: &crate::Model) -> Vec<f32> {
    check::run(model, Box::new(CpuBackend::new())).unwrap()
}

#[test]
fn the_cpu_reference_agrees_with_a_plain_forward_pass_in_every_doctor_format() {
    let tokens = check::TOKENS;
    let mut report = Vec::new();
    for dtype in check::CHECKED_TYPES {
        let model = check::tiny_model(dtype, 7).unwrap();
        let want = check::plain_forward(&model, &tokens);
        let got = cpu_logits(&model);
        assert_eq!(got.len(), want.len());
        let err = check::relative_error(&want, &got);
        report.push(format!("{dtype}: {err:.1e}"));
        assert!(err <= check::tolerance(dtype), "{dtype}: the CPU backend is {err:.1e} (relative) from a plain forward pass, tolerance {:.0e}", check::tolerance(dtype));
    }
    eprintln!("CPU backend against the plain forward pass: {}", report.join(", "));
    // Not vacuous: another model's weights are far outside every tolerance.
    let err = check::relative_error(&check::plain_forward(&check::tiny_model(DType::Q8_0, 8).unwrap(), &tokens), &cpu_logits(&check::tiny_model(DType::Q8_0, 7).unwrap()));
    assert!(err > 10.0 * check::tolerance(DType::Q8_0), "{err}");
}
