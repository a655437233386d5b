//! The kernel sources (`cuda/*.cu`, compiled into the binary) and their entry points, and the
//! loaded modules of one device.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;

use super::nvrtc::{self, Nvrtc};
use crate::dtype::DType;
use crate::error::{ForgeError, Result};

/// The shared header, passed to NVRTC by this include name.
pub const COMMON: (&str, &str) = ("common.cuh", include_str!("../../../../cuda/common.cuh"));

/// One `.cu` file: its name and source, and the entry points it defines.
pub struct Source {
    pub file: &'static str,
    pub text: &'static str,
    pub entries: &'static [&'static str],
}

macro_rules! source {
    ($file:literal, [$($e:literal),* $(,)?]) => {
        Source { file: $file, text: include_str!(concat!("../../../../cuda/", $file)), entries: &[$($e),*] }
    };
}

/// Every kernel file, one op (or one op's variant) each, named as in `shaders/`.
pub const SOURCES: &[Source] = &[
    source!("add.cu", ["add"]),
    source!("mul.cu", ["mul"]),
    source!("silu_mul.cu", ["silu_mul"]),
    source!("gelu_mul.cu", ["gelu_mul"]),
    source!("scale.cu", ["scale"]),
    source!("round_f16.cu", ["round_f16"]),
    source!("slice_rows.cu", ["slice_rows"]),
    source!("scatter_rows.cu", ["scatter_rows_f32", "scatter_rows_f16", "scatter_rows_q8_0"]),
    source!("rms_norm.cu", ["rms_norm"]),
    source!("rope.cu", ["rope"]),
    source!("argmax.cu", ["argmax"]),
    source!("attention_decode.cu", ["attention_decode_f32", "attention_decode_f16", "attention_decode_q8_0", "attention_decode_combine"]),
    source!("attention_prefill.cu", ["attention_prefill_f32", "attention_prefill_f16", "attention_prefill_q8_0"]),
    source!("quantize_act.cu", ["quantize_act"]),
    source!(
        "matmul_tc.cu",
        ["matmul_tc_f16", "matmul_tc_bf16", "matmul_tc_q4_0", "matmul_tc_q4_1", "matmul_tc_q5_0", "matmul_tc_q5_1", "matmul_tc_q8_0", "matmul_tc_q4_k", "matmul_tc_q5_k", "matmul_tc_q6_k"]
    ),
    source!(
        "get_rows.cu",
        ["get_rows_f32", "get_rows_f16", "get_rows_bf16", "get_rows_q4_0", "get_rows_q4_1", "get_rows_q5_0", "get_rows_q5_1", "get_rows_q8_0", "get_rows_q4_k", "get_rows_q5_k", "get_rows_q6_k"]
    ),
    source!(
        "matvec.cu",
        ["matvec_f32", "matvec_f16", "matvec_bf16", "matvec_q4_0", "matvec_q4_1", "matvec_q5_0", "matvec_q5_1", "matvec_q8_0", "matvec_q4_k", "matvec_q5_k", "matvec_q6_k"]
    ),
    source!(
        "matmul.cu",
        ["matmul_f32", "matmul_f16", "matmul_bf16", "matmul_q4_0", "matmul_q4_1", "matmul_q5_0", "matmul_q5_1", "matmul_q8_0", "matmul_q4_k", "matmul_q5_k", "matmul_q6_k"]
    ),
];

/// The suffix of the kernels that read or write a storage type: weights (`get_rows_q4_k`) and KV
/// caches (`attention_decode_f16`, `scatter_rows_q8_0`).
pub fn dtype_suffix(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::Q4_0 => "q4_0",
        DType::Q4_1 => "q4_1",
        DType::Q5_0 => "q5_0",
        DType::Q5_1 => "q5_1",
        DType::Q8_0 => "q8_0",
        DType::Q4K => "q4_k",
        DType::Q5K => "q5_k",
        DType::Q6K => "q6_k",
        DType::U32 => return None,
    })
}

/// The target for a device of compute capability `cc`: `sm_XY` when NVRTC knows it (a CUBIN,
/// nothing left for the driver to do), else PTX for the newest architecture NVRTC has that is
/// not newer than the device (the driver JIT-compiles it).
pub fn target_arch(cc: (i32, i32), supported: &[i32]) -> String {
    let want = cc.0 * 10 + cc.1;
    if supported.is_empty() || supported.contains(&want) {
        return format!("sm_{want}");
    }
    let best = supported.iter().copied().filter(|&a| a <= want).max().unwrap_or(want);
    format!("compute_{best}")
}

/// The cache key of one source for one target.
pub fn cache_key(src: &Source, arch: &str, driver_version: i32) -> String {
    let opts = nvrtc::options(arch).join(" ");
    let h = nvrtc::fnv1a(&[src.text.as_bytes(), COMMON.1.as_bytes(), opts.as_bytes(), arch.as_bytes(), &driver_version.to_le_bytes()]);
    format!("{}-{arch}-{h:016x}", src.file.trim_end_matches(".cu"))
}

/// Every entry point of every source, loaded on one device.
pub struct Kernels {
    functions: HashMap<&'static str, CudaFunction>,
    /// The device has TF32 tensor cores (`mma.sync` m16n8k8 .tf32: sm_80 and later), which
    /// matmul_tc.cu needs.
    tensor_cores: bool,
}

impl Kernels {
    /// Compiles (or takes from the disk cache) and loads every source for `ctx`'s device.
    pub fn load(ctx: &Arc<CudaContext>, cc: (i32, i32), driver_version: i32) -> Result<Kernels> {
        // NVRTC is only needed when something is not cached yet.
        let nvrtc = Nvrtc::load();
        let supported = match &nvrtc {
            Ok(n) => n.supported_archs().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let arch = target_arch(cc, &supported);
        let dir = nvrtc::cache_dir();
        let mut functions = HashMap::new();
        for src in SOURCES {
            let key = cache_key(src, &arch, driver_version);
            let compiled = nvrtc::compile_cached(nvrtc.as_ref(), dir.as_deref(), &key, src.file, src.text, &[COMMON], &arch)?;
            let ptx = if compiled.is_cubin { Ptx::from_binary(compiled.image) } else { Ptx::from_src(String::from_utf8_lossy(&compiled.image).into_owned()) };
            let module = ctx.load_module(ptx).map_err(|e| super::driver_err(&format!("loading cuda/{}", src.file), e))?;
            for &entry in src.entries {
                let f = module.load_function(entry).map_err(|e| super::driver_err(&format!("cuda/{}: entry point {entry}", src.file), e))?;
                functions.insert(entry, f);
            }
        }
        Ok(Kernels { functions, tensor_cores: cc.0 >= 8 })
    }

    pub fn tensor_cores(&self) -> bool {
        self.tensor_cores
    }

    pub fn get(&self, name: &str) -> Result<&CudaFunction> {
        self.functions.get(name).ok_or_else(|| ForgeError::Backend { backend: "cuda".into(), what: format!("no kernel named {name}") })
    }
}
