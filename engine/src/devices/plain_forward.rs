//! The doctor's independent reference: a plain f64 forward pass of its tiny Llama, written from
//! the equations with no graph, backend, KV cache or activation quantization.

use crate::graph::RopeLayout;

/// The doctor's tiny model (`check::tiny_model`) run as a plain f64 forward pass over its
/// dequantized weights, written from the Llama equations (`models/llama.rs`) with no graph,
/// backend, KV cache or activation quantization: every position's logits for `tokens` at
/// positions `0..`. `forge doctor` holds every device to it, the CPU backend included, so no
/// backend is checked against itself. The `assert!` guards this function's own scope: it is only
/// ever given [`tiny_model`]s.
pub fn plain_forward(model: &crate::Model, tokens: &[u32]) -> Vec<f32> {
    let c = &model.config;
    let hd = c.head_dim;
    plain_forward_with_freqs(model, tokens, &|l, i| f64::from(c.layers[l].rope_base).powf(-2.0 * i as f64 / hd as f64))
}

/// [`plain_forward`] with RoPE frequencies given by the caller: pair `i` of a head in layer `l`
/// turns by `pos · freq(l, i)` (a test holds Llama 3.1's frequency scaling to Meta's formula
/// this way, computed apart from the engine).
pub fn plain_forward_with_freqs(model: &crate::Model, tokens: &[u32], freq: &dyn Fn(usize, usize) -> f64) -> Vec<f32> {
    let c = &model.config;
    assert!(c.rope_layout == RopeLayout::Normal && c.tied_embeddings && !c.qkv_bias && c.rope_dim == c.head_dim, "written for the doctor's tiny llama");
    let w = |name: &str| -> Vec<f64> { model.weights[name].to_f32_vec().into_iter().map(f64::from).collect() };
    let (e, hd, n) = (c.n_embd, c.head_dim, tokens.len());
    let norm = |x: &[f64], g: &[f64]| -> Vec<f64> {
        let s = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + f64::from(c.rms_eps)).sqrt();
        x.iter().zip(g).map(|(v, g)| v * s * g).collect()
    };
    // W x for W [rows, x.len()] row-major.
    let matvec = |m: &[f64], x: &[f64]| -> Vec<f64> { m.chunks(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect() };
    // Adjacent pairs (2i, 2i+1) of each head turn by pos · freq(l, i).
    let rope = |v: &mut [f64], pos: usize, l: usize| {
        for head in v.chunks_mut(hd) {
            for i in 0..hd / 2 {
                let (sin, cos) = (pos as f64 * freq(l, i)).sin_cos();
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos - b * sin;
                head[2 * i + 1] = a * sin + b * cos;
            }
        }
    };
    let embd = w("token_embd.weight");
    let mut xs: Vec<Vec<f64>> = tokens.iter().map(|&t| embd[t as usize * e..(t as usize + 1) * e].to_vec()).collect();
    for l in 0..c.n_layer {
        let p = |name: &str| w(&format!("blk.{l}.{name}"));
        let hs: Vec<Vec<f64>> = xs.iter().map(|x| norm(x, &p("attn_norm.weight"))).collect();
        let (wq, wk, wv, wo) = (p("attn_q.weight"), p("attn_k.weight"), p("attn_v.weight"), p("attn_output.weight"));
        let mut q: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&wq, h)).collect();
        let mut k: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&wk, h)).collect();
        let v: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&wv, h)).collect();
        for pos in 0..n {
            rope(&mut q[pos], pos, l);
            rope(&mut k[pos], pos, l);
        }
        for t in 0..n {
            let mut o = vec![0.0; c.n_head * hd];
            for head in 0..c.n_head {
                // Grouped-query: query heads share their KV head in consecutive groups.
                let kvh = head / (c.n_head / c.n_kv_head);
                let qh = &q[t][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=t).map(|s| qh.iter().zip(&k[s][kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()).collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for (s, score) in scores.iter().enumerate() {
                    for d in 0..hd {
                        o[head * hd + d] += (score - max).exp() / z * v[s][kvh * hd + d];
                    }
                }
            }
            for (x, y) in xs[t].iter_mut().zip(matvec(&wo, &o)) {
                *x += y;
            }
        }
        let (gate, up, down) = (p("ffn_gate.weight"), p("ffn_up.weight"), p("ffn_down.weight"));
        for x in &mut xs {
            let h = norm(x, &p("ffn_norm.weight"));
            let a: Vec<f64> = matvec(&gate, &h).iter().zip(matvec(&up, &h)).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            for (x, y) in x.iter_mut().zip(matvec(&down, &a)) {
                *x += y;
            }
        }
    }
    xs.iter().flat_map(|x| matvec(&embd, &norm(x, &w("output_norm.weight")))).map(|v| v as f32).collect()
}
