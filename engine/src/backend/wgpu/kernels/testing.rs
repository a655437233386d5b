//! Test support: the wgpu backend next to the CPU reference, the same graph run through both.

use crate::backend::cpu::CpuBackend;
use crate::backend::wgpu::WgpuBackend;
use crate::backend::{Backend, ParamDesc, ParamId};
use crate::tensor::HostTensor;

pub(crate) use crate::backend::test_util::rand_vec;

/// The wgpu backend (with poisoned activations: every buffer a plan allocates starts as NaN, so
/// an element a kernel fails to write shows up) and the CPU backend, holding the same params.
pub(crate) struct Gpu1 {
    pub wgpu: WgpuBackend,
    pub cpu: CpuBackend,
}

impl Gpu1 {
    /// `None` (with a note) when there is no adapter, unless `FORGE_REQUIRE_WGPU=1`.
    pub fn new() -> Option<Gpu1> {
        match WgpuBackend::new() {
            Ok(mut wgpu) => {
                wgpu.poison_activations = true;
                Some(Gpu1 { wgpu, cpu: CpuBackend::new() })
            }
            Err(e) if std::env::var("FORGE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_WGPU=1 but no wgpu device: {e}"),
            Err(e) => {
                eprintln!("skipping: no wgpu device ({e})");
                None
            }
        }
    }

    pub fn create_param(&mut self, desc: &ParamDesc, data: Option<&HostTensor>) -> ParamId {
        let a = self.wgpu.create_param(desc, data).expect("wgpu param");
        let b = self.cpu.create_param(desc, data).expect("cpu param");
        assert_eq!(a, b, "both backends number params in creation order");
        a
    }

    /// Runs `graph` on both backends and compares every output: u32 exactly, f32 within
    /// `tol` × the largest magnitude of the reference output.
    pub fn check(&mut self, what: &str, graph: &crate::graph::Graph, inputs: &[HostTensor], tol: f32) {
        let want = self.cpu.execute(graph, inputs).expect("cpu runs");
        let got = self.wgpu.execute(graph, inputs).unwrap_or_else(|e| panic!("{what}: wgpu: {e}"));
        compare(what, &got, &want, tol);
    }
}

pub(crate) fn compare(what: &str, got: &[HostTensor], want: &[HostTensor], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.dtype, &g.shape), (w.dtype, &w.shape), "{what}");
        if w.dtype == crate::dtype::DType::U32 {
            assert_eq!(g.to_u32_vec(), w.to_u32_vec(), "{what}");
            continue;
        }
        let (g, w) = (g.to_f32_vec(), w.to_f32_vec());
        let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!((a - b).abs() <= tol * scale, "{what}: element {i}: wgpu {a}, reference {b} (tolerance {tol} × {scale})");
        }
    }
}
