//! One module per op: which shader entry point runs it, its per-node constants, its bindings and
//! its dispatch geometry, and its test against the CPU reference. The shaders themselves live in
//! `shaders/` at the repository root, one file per op (`add.wgsl`); the three weight-reading ops
//! share one file per weight-format family (`matmul_q32.wgsl`), since WGSL cannot include a
//! dequantizer from another file.
//!
//! A kernel module turns a graph node into [`Step`]s; the plan resolves the steps' buffers,
//! creates their pipelines (once per [`KernelKey`]) and bind groups (once per plan).

pub(super) mod attention;
pub(super) mod elementwise;
pub(super) mod matmul;
pub(super) mod rms_norm;
pub(super) mod rope;

use crate::backend::ParamId;

/// Every shader, by file name (without `.wgsl`).
pub(super) const SHADERS: &[(&str, &str)] = &[
    ("add", include_str!("../../../../../shaders/add.wgsl")),
    ("argmax", include_str!("../../../../../shaders/argmax.wgsl")),
    ("attention_decode", include_str!("../../../../../shaders/attention_decode.wgsl")),
    ("matmul_float", include_str!("../../../../../shaders/matmul_float.wgsl")),
    ("matmul_kquant", include_str!("../../../../../shaders/matmul_kquant.wgsl")),
    ("matmul_q32", include_str!("../../../../../shaders/matmul_q32.wgsl")),
    ("mul", include_str!("../../../../../shaders/mul.wgsl")),
    ("quantize_act", include_str!("../../../../../shaders/quantize_act.wgsl")),
    ("rms_norm", include_str!("../../../../../shaders/rms_norm.wgsl")),
    ("rope", include_str!("../../../../../shaders/rope.wgsl")),
    ("scatter_rows", include_str!("../../../../../shaders/scatter_rows.wgsl")),
    ("silu_mul", include_str!("../../../../../shaders/silu_mul.wgsl")),
    ("gelu_mul", include_str!("../../../../../shaders/gelu_mul.wgsl")),
    ("scale", include_str!("../../../../../shaders/scale.wgsl")),
    ("round_f16", include_str!("../../../../../shaders/round_f16.wgsl")),
    ("slice_rows", include_str!("../../../../../shaders/slice_rows.wgsl")),
];

pub(super) fn source(shader: &str) -> &'static str {
    SHADERS.iter().find(|(n, _)| *n == shader).map(|(_, s)| *s).expect("every shader a kernel names is listed in SHADERS")
}

/// A pipeline: a shader's entry point specialised by its `override` constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct KernelKey {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
}

impl KernelKey {
    pub fn new(shader: &'static str, entry: &'static str, constants: &[(&'static str, u32)]) -> Self {
        KernelKey { shader, entry, constants: constants.to_vec() }
    }
}

/// A buffer a step binds, before the plan resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Buf {
    /// Page `page` of a param.
    Param(ParamId, usize),
    /// Activation buffer `i` of the plan's pool.
    Pool(usize),
    /// The buffer of input slot `i`.
    Input(usize),
    /// A small unused buffer for a binding an entry point declares but this node does not need.
    Dummy,
    /// The same for writable bindings, one per binding: a buffer may not be bound read-only and
    /// writable at once, nor (WebGPU in browsers) to two writable bindings of one dispatch.
    Scratch(u8),
}

/// One dispatch: a pipeline, its uniform constants (at most 16 words), its storage bindings
/// (binding number, buffer), and its workgroup counts.
#[derive(Clone, Debug)]
pub(super) struct Step {
    pub kernel: KernelKey,
    pub uniforms: Vec<u32>,
    pub binds: Vec<(u32, Buf)>,
    pub groups: [u32; 3],
}

/// Workgroup counts for `n` workgroups on a 2-D grid (x at most `max`); shaders recover the linear
/// index as `y * num_workgroups.x + x` and return past `n`.
pub(super) fn grid(n: usize, max: u32) -> [u32; 3] {
    let n = n.max(1);
    let x = n.min(max as usize);
    [x as u32, n.div_ceil(x) as u32, 1]
}

/// What a kernel needs to know about a weight-like operand: its format and its pages of rows.
#[derive(Clone, Debug)]
pub(super) struct Matrix {
    pub dtype: crate::dtype::DType,
    pub cols: usize,
    pub row_bytes: usize,
    /// (buffer, first row, rows).
    pub pages: Vec<(Buf, usize, usize)>,
}

/// Matvec geometry (the `WG`, `TPR` and `RPI` overrides of the matmul shaders).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matvec {
    pub wg: u32,
    pub tpr: u32,
    pub rpi: u32,
    /// Q4_0/Q4_1/Q8_0 run `matvec_blocks` (whole blocks, one invocation per RPI rows).
    pub blocks: bool,
}

impl Matvec {
    /// CPU adapters (lavapipe runs a workgroup on one thread and every storage load as a loop over
    /// its 8 SIMD lanes): one invocation per 8 rows, so each activation load serves 8 rows, and
    /// no shared memory. GPUs: 16 invocations per row read it coalesced, a shared-memory tree.
    pub fn for_device(device_type: wgpu::DeviceType) -> Matvec {
        if device_type == wgpu::DeviceType::Cpu { Matvec { wg: 64, tpr: 1, rpi: 8, blocks: true } } else { Matvec { wg: 64, tpr: 16, rpi: 1, blocks: false } }
    }
}

/// Per-node context the plan hands to the kernel modules.
pub(super) struct Cx {
    pub max_groups: u32,
    /// Matvec shape: invocations per workgroup, invocations sharing one row group's dot product,
    /// and rows per invocation (see `matmul.rs`).
    pub matvec: Matvec,
}

#[cfg(test)]
pub(super) mod testing;

#[cfg(test)]
mod naga_tests {
    /// Every `.wgsl` file in shaders/ parses and validates (no GPU needed), and is listed in SHADERS.
    #[test]
    fn wgpu_shaders_validate_with_naga() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "wgsl") {
                continue;
            }
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(super::SHADERS.iter().any(|(n, _)| *n == name), "{name}.wgsl is not listed in kernels::SHADERS");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("// "), "{name}.wgsl must start with its header comment");
            let module = naga::front::wgsl::parse_str(&text).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&text)));
            // unpack2x16float (core WGSL; naga lists it as a capability for its GL/HLSL outputs).
            let caps = naga::valid::Capabilities::default() | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&text)));
            seen += 1;
        }
        assert_eq!(seen, super::SHADERS.len());
    }
}
