//! CUDA tests. Without a GPU (CI): every `cuda/*.cu` file compiles with NVRTC for sm_80 and sm_90
//! with an empty log (no warning), defines the entry points `kernels.rs` lists, and its PTX
//! assembles with `ptxas` when one is found. With a GPU: every op on awkward sizes against the
//! CPU backend (one body over all weight types, and over all KV cache types), and a repeated
//! graph replayed as a CUDA graph.
//!
//! Skips: the NVRTC test without libnvrtc unless `FORGE_REQUIRE_NVRTC=1`; the GPU tests without
//! a CUDA device unless `FORGE_REQUIRE_CUDA=1`.

mod attention;

use super::kernels::{COMMON, SOURCES, cache_key, target_arch};
use super::nvrtc::{self, Nvrtc};
use super::CudaBackend;
use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, ParamDesc, ParamId, ParamKind};
use crate::dtype::DType;
use crate::graph::{AttnMask, Graph, RopeLayout, RopeParams};
use crate::quant;
use crate::tensor::HostTensor;

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

// ---- without a GPU ----

fn ptxas() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("FORGE_PTXAS") {
        return Some(p.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("ptxas")).find(|p| p.is_file())
}

#[test]
fn every_kernel_compiles_with_nvrtc_without_warnings() {
    let nvrtc = match Nvrtc::load() {
        Ok(n) => n,
        Err(e) if required("FORGE_REQUIRE_NVRTC") => panic!("FORGE_REQUIRE_NVRTC=1 but {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    eprintln!("NVRTC {:?} from {}", nvrtc.version().unwrap(), nvrtc.location);
    let ptxas = ptxas();
    let tmp = std::env::temp_dir().join(format!("forge-cuda-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for src in SOURCES {
        for arch in ["sm_80", "sm_90", "compute_80", "compute_90"] {
            let out = match nvrtc.compile(src.file, src.text, &[COMMON], arch, &[]) {
                Ok(out) => out,
                Err(e) => {
                    failures.push(format!("{arch}: {e}"));
                    continue;
                }
            };
            if !out.log.is_empty() {
                failures.push(format!("cuda/{} for {arch}: NVRTC says:\n{}", src.file, out.log));
            }
            if out.is_cubin {
                continue;
            }
            let ptx = String::from_utf8(out.image).expect("PTX is text");
            for e in src.entries {
                if !ptx.contains(&format!(".entry {e}(")) {
                    failures.push(format!("cuda/{} for {arch}: no entry point {e}", src.file));
                }
            }
            if let Some(ptxas) = &ptxas {
                let path = tmp.join(format!("{}.{arch}.ptx", src.file));
                std::fs::write(&path, &ptx).unwrap();
                let sm = arch.replace("compute_", "sm_");
                let res = std::process::Command::new(ptxas).arg(format!("-arch={sm}")).arg(&path).arg("-o").arg("/dev/null").output().expect("ptxas runs");
                let stderr = String::from_utf8_lossy(&res.stderr);
                if !res.status.success() || stderr.to_lowercase().contains("warning") {
                    failures.push(format!("ptxas -arch={sm} cuda/{}: {stderr}", src.file));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if ptxas.is_none() {
        eprintln!("note: no ptxas (FORGE_PTXAS or PATH): PTX was not assembled");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn target_is_the_device_arch_or_the_newest_older_ptx() {
    assert_eq!(target_arch((8, 6), &[75, 80, 86, 89, 90]), "sm_86");
    assert_eq!(target_arch((12, 0), &[75, 80, 86, 89, 90]), "compute_90");
    assert_eq!(target_arch((9, 0), &[]), "sm_90");
}

#[test]
fn cache_keys_change_with_arch_and_driver_and_a_cached_image_needs_no_nvrtc() {
    let src = &SOURCES[0];
    let a = cache_key(src, "sm_80", 12020);
    assert_eq!(a, cache_key(src, "sm_80", 12020));
    assert_ne!(a, cache_key(src, "sm_90", 12020));
    assert_ne!(a, cache_key(src, "sm_80", 12040));
    let dir = std::env::temp_dir().join(format!("forge-cuda-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{a}.cubin")), b"image").unwrap();
    let missing = crate::ForgeError::Backend { backend: "cuda".into(), what: "libnvrtc.so.12 not found".into() };
    let got = nvrtc::compile_cached(Err(&missing), Some(&dir), &a, src.file, src.text, &[COMMON], "sm_80").expect("served from the cache");
    assert_eq!(got.image, b"image");
    let e = nvrtc::compile_cached(Err(&missing), Some(&dir), "other", src.file, src.text, &[COMMON], "sm_80").err().expect("needs NVRTC");
    assert!(e.to_string().contains("libnvrtc.so.12 not found"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_driver_is_an_error_not_a_panic() {
    if let crate::backend::probe_cuda::CudaProbe::Absent { .. } = crate::backend::probe_cuda::probe() {
        let e = CudaBackend::new(0).err().expect("no driver, no backend");
        assert!(e.to_string().contains("libcuda.so.1 not found: no NVIDIA driver"), "{e}");
    }
}

// ---- with a GPU ----

use crate::backend::test_util::rand_vec;

/// The CUDA backend (activations poisoned with NaN) next to the CPU reference, same params.
struct Pair {
    cuda: CudaBackend,
    cpu: CpuBackend,
}

impl Pair {
    fn new() -> Option<Pair> {
        match CudaBackend::new(0) {
            Ok(mut cuda) => {
                cuda.poison_activations = true;
                Some(Pair { cuda, cpu: CpuBackend::new() })
            }
            Err(e) if required("FORGE_REQUIRE_CUDA") => panic!("FORGE_REQUIRE_CUDA=1 but {e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    fn param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> ParamId {
        let a = self.cuda.create_param(desc, data).expect("cuda param");
        let b = self.cpu.create_param(desc, data).expect("cpu param");
        assert_eq!(a, b, "both backends number params in creation order");
        a
    }

    /// Runs `g` on both and compares: u32 exactly, f32 within `tol` × the reference's largest
    /// magnitude.
    fn check(&mut self, what: &str, g: &Graph, inputs: &[HostTensor], tol: f32) {
        let want = self.cpu.execute(g, inputs).expect("cpu runs");
        let got = self.cuda.execute(g, inputs).unwrap_or_else(|e| panic!("{what}: cuda: {e}"));
        compare(what, &got, &want, tol);
    }
}

/// Compares outputs: u32 exactly; a KV cache kept in f16 or q8_0 (a `ScatterRows` output) byte
/// for byte, since both backends write it bit for bit; f32 within `tol` × the reference's largest
/// magnitude.
fn compare(what: &str, got: &[HostTensor], want: &[HostTensor], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.dtype, &g.shape), (w.dtype, &w.shape), "{what}");
        if !matches!(w.dtype, DType::F32 | DType::U32) {
            same_bytes(what, g, w);
            continue;
        }
        if w.dtype == DType::U32 {
            assert_eq!(g.to_u32_vec(), w.to_u32_vec(), "{what}");
            continue;
        }
        let (g, w) = (g.to_f32_vec(), w.to_f32_vec());
        let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!((a - b).abs() <= tol * scale, "{what}: element {i}: cuda {a}, cpu {b} (tolerance {tol} × {scale})");
        }
    }
}

/// `got` and `want` hold the same bytes (a cache: rows of `want`'s last dimension).
fn same_bytes(what: &str, got: &HostTensor, want: &HostTensor) {
    assert_eq!((got.dtype, &got.shape), (want.dtype, &want.shape), "{what}");
    let (g, w) = (got.as_bytes(), want.as_bytes());
    assert_eq!(g.len(), w.len(), "{what}");
    if let Some(i) = g.iter().zip(w).position(|(a, b)| a != b) {
        let row = want.dtype.row_bytes(want.shape[want.shape.len() - 1]).expect("whole blocks");
        panic!("{what}: {} byte {i} (row {}, byte {} of {row}): cuda {:#04x}, cpu {:#04x}", want.dtype, i / row, i % row, g[i], w[i]);
    }
}

fn f32_input(shape: &[usize], seed: u64) -> HostTensor {
    HostTensor::from_f32(shape.to_vec(), &rand_vec(shape.iter().product(), seed)).unwrap()
}

/// Row lengths that are not multiples of a warp's share where the format allows.
fn k_for(dtype: DType) -> usize {
    match dtype.block_len() {
        1 => 333,
        32 => 32 * 11,
        _ => 256 * 3,
    }
}

#[test]
fn matmul_and_get_rows_match_cpu_on_every_weight_type() {
    let Some(mut p) = Pair::new() else { return };
    for (i, dtype) in DType::WEIGHT_TYPES.into_iter().enumerate() {
        let (n, k) = (67, k_for(dtype));
        let rb = dtype.row_bytes(k).unwrap();
        let mut bytes = vec![0u8; n * rb];
        for (src, dst) in rand_vec(n * k, 100 + i as u64).chunks(k).zip(bytes.chunks_mut(rb)) {
            quant::quantize_row(dtype, src, dst);
        }
        let desc = ParamDesc { name: format!("w{i}"), shape: vec![n, k], dtype, kind: ParamKind::Weight };
        let id = p.param(&desc, Some(&HostTensor::from_bytes(dtype, vec![n, k], bytes).unwrap()));
        // Both round activations to llama.cpp's 8-bit blocks before quantized dots (the same q,
        // bit for bit), so only f32 summation order differs (~1e-6 relative over K ≤ 768 terms)
        // and the CPU's own f16/f32 roundings of its block scales (Q8_1 keeps d·Σq as an f16:
        // 2^-11 relative of the offset term): 2e-3, as the WGSL matmul test. Without the
        // rounding, quantized weights differ by ~1e-2 (8-bit activations). Float weights: f32.
        let tol = if dtype.is_quantized() { 2e-3 } else { 1e-4 };
        // Past 16 rows, non-F32 weights take TF32 tensor cores on sm_80+ (matmul_tc.cu): both
        // operands rounded to 10-bit mantissas (≤ 2^-11 relative each), errors of random sign
        // over K terms; checked in an emulation of the kernel at these shapes to stay under
        // 3.5e-4 of the largest output, so 1e-3 more leaves about 3× margin.
        let tc = p.cuda.kernels.tensor_cores() && dtype != DType::F32;
        // 1, 3, 9 and 16: matvec (every weight read once for all rows); 17 and 70: the tiled
        // kernels (each leaves a partial 64-token tile).
        for t in [1usize, 3, 9, 16, 17, 70] {
            let tol = if tc && t > 16 { tol + 1e-3 } else { tol };
            let mut g = Graph::new();
            let x = g.input(&[t, k], DType::F32);
            let w = g.param(id, &desc);
            let o = g.matmul(x, w).unwrap();
            g.output(o);
            p.check(&format!("matmul {dtype} t={t}"), &g, &[f32_input(&[t, k], 7 + t as u64)], tol);
        }
        let mut g = Graph::new();
        let ids = g.input(&[5], DType::U32);
        let w = g.param(id, &desc);
        let o = g.get_rows(w, ids).unwrap();
        g.output(o);
        let ids_t = HostTensor::from_u32(vec![5], &[3, 0, 66, 3, 17]).unwrap();
        // Bit-exact: both dequantize the same blocks to the same f32 values.
        p.check(&format!("get_rows {dtype}"), &g, &[ids_t], 0.0);
        let bad = HostTensor::from_u32(vec![5], &[3, 0, 67, 3, 17]).unwrap();
        let e = p.cuda.execute(&g, &[bad]).expect_err("id 67 of 67 rows is an error");
        assert!(e.to_string().contains("get_rows"), "{e}");
    }
}

#[test]
fn elementwise_norm_rope_argmax_slice_match_cpu() {
    let Some(mut p) = Pair::new() else { return };
    let (t, c) = (5, 1000);
    let mut g = Graph::new();
    let a = g.input(&[t, c], DType::F32);
    let b = g.input(&[t, c], DType::F32);
    let bias = g.input(&[c], DType::F32);
    let w = g.input(&[c], DType::F32);
    let w_head = g.input(&[c / 8], DType::F32);
    let added = g.add(a, b).unwrap();
    let biased = g.add(a, bias).unwrap();
    let m = g.mul(a, b).unwrap();
    let s = g.silu_mul(a, b).unwrap();
    let gm = g.gelu_mul(a, b).unwrap();
    let sc = g.scale(a, 25.298_221).unwrap();
    let r16 = g.round_f16(a).unwrap();
    let n = g.rms_norm(a, w, 1e-5).unwrap();
    // A weight an eighth of the row wide: each of the 8 heads of a row normalized on its own.
    let nh = g.rms_norm(a, w_head, 1e-6).unwrap();
    let sl = g.slice_rows(a, 2, 2).unwrap();
    let am = g.argmax(a).unwrap();
    for o in [added, biased, m, s, gm, sc, r16, n, nh, sl, am] {
        g.output(o);
    }
    let inputs = [f32_input(&[t, c], 1), f32_input(&[t, c], 2), f32_input(&[c], 3), f32_input(&[c], 4), f32_input(&[c / 8], 5)];
    p.check("elementwise", &g, &inputs, 1e-6);

    // Ties go to the lowest index; a row starting with NaN gives 0.
    let mut g = Graph::new();
    let x = g.input(&[3, 300], DType::F32);
    let am = g.argmax(x).unwrap();
    g.output(am);
    let mut v = vec![0.0f32; 900];
    v[250] = 5.0;
    v[290] = 5.0;
    v[300 + 7] = -1.0;
    v[600] = f32::NAN;
    v[899] = 1.0;
    p.check("argmax ties", &g, &[HostTensor::from_f32(vec![3, 300], &v).unwrap()], 0.0);

    for layout in [RopeLayout::Normal, RopeLayout::NeoX] {
        for (head_dim, n_rot, freq_scale, with_factors) in [(64, 64, 1.0, false), (80, 32, 1.0, false), (256, 256, 0.125, false), (64, 64, 1.0, true), (80, 32, 0.5, true)] {
            let (rows, heads) = (7, 3);
            let mut g = Graph::new();
            let x = g.input(&[rows, heads * head_dim], DType::F32);
            let pos = g.input(&[rows], DType::U32);
            // Factors as Llama 3.1's: 1 for high frequencies, up to 8 for low ones.
            let ff = with_factors.then(|| g.input(&[n_rot / 2], DType::F32));
            let r = g.rope(x, pos, ff, RopeParams { layout, head_dim, n_rot, base: 10000.0, freq_scale }).unwrap();
            g.output(r);
            let positions = HostTensor::from_u32(vec![rows], &[0, 1, 2, 17, 500, 4095, 8191]).unwrap();
            let mut inputs = vec![f32_input(&[rows, heads * head_dim], 9), positions];
            if with_factors {
                let f: Vec<f32> = (0..n_rot / 2).map(|i| 1.0 + 7.0 * (i as f32 / (n_rot / 2) as f32).powi(2)).collect();
                inputs.push(HostTensor::from_f32(vec![n_rot / 2], &f).unwrap());
            }
            // sin/cos of large angles differ from the host's libm by an ulp or two of θ.
            p.check(&format!("rope {layout:?} {head_dim}/{n_rot} scale {freq_scale} factors {with_factors}"), &g, &inputs, 2e-4);
        }
    }
}

/// Keys or values for attention as a KV cache of `kv` holds them: an f32 input itself, else a
/// fresh state param of `kv` that `src` ([rows, cols] f32) is scattered into at `at` (rows
/// 0..rows, a U32 input) in the same graph, so attention reads what scatter_rows wrote.
fn kv_cache(p: &mut Pair, g: &mut Graph, kv: DType, src: crate::graph::NodeId, at: Option<crate::graph::NodeId>) -> crate::graph::NodeId {
    let Some(at) = at else { return src };
    let desc = ParamDesc { name: format!("cache {kv}"), shape: g.node(src).shape.clone(), dtype: kv, kind: ParamKind::State };
    let id = p.param(&desc, None);
    let cache = g.param(id, &desc);
    g.scatter_rows(cache, src, at).expect("a cache of whole blocks")
}

/// Every KV cache type: f32 keys and values as inputs, f16 and q8_0 written by scatter_rows in
/// the same graph (both backends then read the same rounded values).
#[test]
fn attention_matches_cpu_decode_and_prefill() {
    let Some(mut p) = Pair::new() else { return };
    let (n_head, n_kv) = (6, 2);
    // head_dim 64 and 80 (not a multiple of 32) take attention_prefill for t > 1; 256 the decode
    // kernel for every t. s = 600 gives a decode three key splits. A q8_0 head is whole blocks of
    // 32, so 80 runs on f32 and f16 only.
    for kv in DType::KV_TYPES {
        for head_dim in [64usize, 80, 256] {
            if !head_dim.is_multiple_of(kv.block_len()) {
                continue;
            }
            for (t, s) in [(1usize, 600usize), (1, 40), (5, 40), (37, 300)] {
                for mask in [AttnMask::Causal, AttnMask::None, AttnMask::SlidingWindow { window: 29 }] {
                    let mut g = Graph::new();
                    let q = g.input(&[t, n_head * head_dim], DType::F32);
                    let k = g.input(&[s, n_kv * head_dim], DType::F32);
                    let v = g.input(&[s, n_kv * head_dim], DType::F32);
                    let pos = g.input(&[t], DType::U32);
                    let at = (kv != DType::F32).then(|| g.input(&[s], DType::U32));
                    let (k, v) = (kv_cache(&mut p, &mut g, kv, k, at), kv_cache(&mut p, &mut g, kv, v, at));
                    let o = g.attention(q, k, v, Some(pos), n_head, n_kv, head_dim, 0.8 / (head_dim as f32).sqrt(), mask).unwrap();
                    g.output(o);
                    // Positions up to s - 1, and one past the end (the CPU clamps to s keys).
                    let positions: Vec<u32> = (0..t).map(|i| ((i * 13 + 3) % (s + 1)) as u32).collect();
                    let mut inputs = vec![
                        f32_input(&[t, n_head * head_dim], 11),
                        f32_input(&[s, n_kv * head_dim], 12),
                        f32_input(&[s, n_kv * head_dim], 13),
                        HostTensor::from_u32(vec![t], &positions).unwrap(),
                    ];
                    if at.is_some() {
                        inputs.push(HostTensor::from_u32(vec![s], &(0..s as u32).collect::<Vec<_>>()).unwrap());
                    }
                    p.check(&format!("attention {kv} cache d={head_dim} t={t} s={s} {mask:?}"), &g, &inputs, 1e-4);
                }
            }
        }
    }
}

/// Paged attention: query rows of three sequences (one mid-prefill) over a shuffled pool of
/// blocks of 16, each row with its own block table (the decode kernel serves every paged batch),
/// with keys and values given in each KV cache type's own layout (inputs of f16 or q8_0 bytes).
#[test]
fn paged_attention_matches_cpu() {
    let Some(mut p) = Pair::new() else { return };
    for kv in DType::KV_TYPES {
        for t_rows in [1, 5] {
            for mask in [AttnMask::Causal, AttnMask::SlidingWindow { window: 19 }] {
                let (g, inputs) = crate::backend::test_util::paged_attention_case_kv(t_rows, mask, kv);
                p.check(&format!("paged attention {kv} cache t={t_rows} {mask:?}"), &g, &inputs, 1e-4);
            }
        }
    }
}

/// scatter_rows into a cache of every KV type equals the CPU's bytes: f32 copied, f16 rounded to
/// nearest even, q8_0 quantized as ggml's quantize_row_q8_0_ref. Rows past a warp's or a grid
/// block's share (333 values; 13 q8_0 blocks: three whole 4-block grid blocks and one of one),
/// and values at the edges: a tie of x · id (127 / 2 = 63.5 rounds away to 64), a zero block, a
/// negative maximum, f16 overflow, ties and subnormals of f16, a block whose d underflows f16, one
/// whose d is an f32 subnormal (1 / d is infinite: q saturates), and an infinity. Two runs write
/// different rows, and the whole cache is compared after each.
#[test]
fn scatter_rows_into_every_kv_type_matches_cpu_bit_for_bit() {
    let Some(mut p) = Pair::new() else { return };
    for (kv, c) in [(DType::F32, 333usize), (DType::F16, 333), (DType::Q8_0, 32 * 13)] {
        let (rows, t) = (41usize, 7usize);
        let desc = ParamDesc { name: format!("cache {kv}"), shape: vec![rows, c], dtype: kv, kind: ParamKind::State };
        let id = p.param(&desc, None);
        let mut g = Graph::new();
        let src = g.input(&[t, c], DType::F32);
        let pos = g.input(&[t], DType::U32);
        let dst = g.param(id, &desc);
        let o = g.scatter_rows(dst, src, pos).unwrap();
        g.output(o);
        for (run, positions) in [[3u32, 40, 0, 17, 18, 39, 5], [4, 2, 1, 40, 6, 20, 3]].into_iter().enumerate() {
            let mut x = rand_vec(t * c, 70 + run as u64);
            x[0] = 254.0;
            x[1] = 127.0;
            x[c..c + 32].fill(0.0);
            x[2 * c + 5] = -3.0;
            // Past f16's largest (to ±inf, or down to 65504), an f16 subnormal, half the smallest
            // one (a tie: to 0) and one and a half of it (to 2^-24), and near −2^-24.
            let tiny = 2f32.powi(-25);
            x[3 * c..3 * c + 8].copy_from_slice(&[70000.0, -65520.0, 65519.0, 1e-6, tiny, 1.5 * tiny, -6.0e-8, 0.1]);
            x[4 * c..4 * c + 32].iter_mut().enumerate().for_each(|(i, v)| *v = (i as f32 - 16.0) * 1e-31);
            x[4 * c + 32..4 * c + 64].iter_mut().enumerate().for_each(|(i, v)| *v = (i as f32 - 16.0) * 1e-40);
            x[5 * c + 40] = f32::INFINITY;
            let inputs = [HostTensor::from_f32(vec![t, c], &x).unwrap(), HostTensor::from_u32(vec![t], &positions).unwrap()];
            let what = format!("scatter_rows into {kv}, run {run}");
            let want = p.cpu.execute(&g, &inputs).expect("cpu runs");
            let got = p.cuda.execute(&g, &inputs).unwrap_or_else(|e| panic!("{what}: cuda: {e}"));
            // Bytes, not values: f32 too (the infinity would defeat a tolerance).
            same_bytes(&what, &got[0], &want[0]);
        }
    }
}

/// Block-table entries, positions and row ids outside their buffers are refused by CUDA's own
/// `execute`.
#[test]
fn cuda_refuses_indices_out_of_range() {
    let Some(mut p) = Pair::new() else { return };
    crate::backend::test_util::assert_refuses_out_of_range(&mut p.cuda);
}

/// A decode-shaped graph (scatter into a state, attend over it) run several times with new
/// inputs: the first run is eager, the later ones replay a captured CUDA graph, and every run
/// must see its own inputs and the state the previous runs wrote; the cache itself (f16 and q8_0
/// compared byte for byte) is an output too. For every KV cache type.
#[test]
fn repeated_graph_replays_with_new_inputs_and_state() {
    let Some(mut p) = Pair::new() else { return };
    let (ctx, d) = (16, 64);
    for kv in DType::KV_TYPES {
        let kdesc = ParamDesc { name: format!("k {kv}"), shape: vec![ctx, d], dtype: kv, kind: ParamKind::State };
        let kid = p.param(&kdesc, None);
        let mut g = Graph::new();
        let x = g.input(&[1, d], DType::F32);
        let pos = g.input(&[1], DType::U32);
        let kc = g.param(kid, &kdesc);
        let k_all = g.scatter_rows(kc, x, pos).unwrap();
        let o = g.attention(x, k_all, k_all, Some(pos), 1, 1, d, 0.125, AttnMask::Causal).unwrap();
        let am = g.argmax(o).unwrap();
        g.output(o);
        g.output(am);
        g.output(k_all);
        for step in 0..5u32 {
            let inputs = [f32_input(&[1, d], 50 + step as u64), HostTensor::from_u32(vec![1], &[step]).unwrap()];
            p.check(&format!("{kv} cache, decode step {step}"), &g, &inputs, 1e-5);
        }
        let bad = [f32_input(&[1, d], 1), HostTensor::from_u32(vec![1], &[ctx as u32]).unwrap()];
        let e = p.cuda.execute(&g, &bad).expect_err("position past the cache is an error");
        assert!(e.to_string().contains("scatter_rows"), "{e}");
    }
}
