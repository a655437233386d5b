//! `forge bench` output: a Markdown table and an SVG bar chart of the same rows.

use std::path::Path;

use plotters::prelude::*;

use super::Report;

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Model: {} — pp{} / tg{}{}, median of {} (min–max)\n\n| engine | backend | device | load ms | prefill tok/s | decode tok/s | launches/token | MB/token | decode GB/s | copy GB/s | % of copy | vs llama.cpp (tg, pp) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.model,
        r.prompt_tokens,
        r.gen_tokens,
        r.kv_type.map(|k| format!(", {k} KV cache")).unwrap_or_default(),
        r.reps
    );
    for row in &r.rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.engine,
            row.backend,
            row.device,
            row.load_ms.map_or_else(|| "unknown".to_string(), |ms| format!("{ms:.0}")),
            row.pp_tok_s,
            row.tg_tok_s,
            opt(row.launches_per_token, |v| v.to_string()),
            opt(row.bytes_per_token, |v| format!("{:.1}", v as f64 / 1e6)),
            opt(row.effective_gb_s, |v| format!("{v:.2}")),
            opt(row.copy_gb_s, |v| format!("{v:.2}")),
            opt(row.bandwidth_fraction, |v| format!("{:.0}%", v * 100.0)),
            opt(row.vs_llama_cpp, |(tg, pp)| format!("{tg:.2}× / {pp:.2}×")),
        );
    }
    s
}

/// One group of two bars (prefill, decode) in [`plot_bars`].
pub struct Bars {
    /// Lines under the group, top first (cut to fit the group's width).
    pub label: Vec<String>,
    pub pp: f64,
    pub tg: f64,
    /// Said after the decode value: the fraction of copy bandwidth as `(n% bw)`, which the
    /// legend explains.
    pub tg_note: Option<String>,
}

/// Grouped bars: prefill and decode tokens/s for each row of one run.
pub fn plot(r: &Report, path: &Path) -> anyhow::Result<()> {
    let bars: Vec<Bars> =
        r.rows.iter().map(|x| Bars { label: vec![format!("{} {}", x.engine, x.backend)], pp: x.pp_tok_s.median, tg: x.tg_tok_s.median, tg_note: None }).collect();
    plot_bars(path, &format!("tokens/s — pp{} / tg{}", r.prompt_tokens, r.gen_tokens), &bars)
}

/// Width of one group of bars, pixels.
const GROUP_PX: u32 = 190;
/// Height of one label line under the groups, pixels.
const LINE_PX: u32 = 16;

/// `s` cut to `chars` characters by an ellipsis in the middle: device names and drivers say
/// what they are at both ends (`llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`).
fn fit(s: &str, chars: usize) -> String {
    let n = s.chars().count();
    if n <= chars {
        return s.to_string();
    }
    let head = chars.saturating_sub(1) / 2;
    let tail = chars.saturating_sub(1) - head;
    s.chars().take(head).chain(std::iter::once('…')).chain(s.chars().skip(n - tail)).collect()
}

/// An SVG bar chart: a blue prefill and a red decode bar per group, values above the bars,
/// each group's label lines under it, `caption` on top.
pub fn plot_bars(path: &Path, caption: &str, bars: &[Bars]) -> anyhow::Result<()> {
    let n = bars.len().max(1);
    let lines = bars.iter().map(|b| b.label.len()).max().unwrap_or(1) as u32;
    let root = SVGBackend::new(path, (220 + GROUP_PX * n as u32, 460 + LINE_PX * lines)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let top = bars.iter().flat_map(|b| [b.pp, b.tg]).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(10 + LINE_PX * lines)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..top)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().disable_x_mesh().y_desc("tokens/s").x_label_formatter(&|_| String::new()).draw().map_err(|e| err(&e))?;
    // Plotters' segmented axis has no sub-positions, so draw each pair in pixel space.
    let area = chart.plotting_area();
    let (w, _) = area.dim_in_pixel();
    let seg = w as f64 / n as f64;
    let drawing = area.strip_coord_spec();
    let (_, h) = drawing.dim_in_pixel();
    let (bx, by) = drawing.get_base_pixel();
    let y_px = |v: f64| (h as f64 * (1.0 - v / top)) as i32;
    // About 6.5 pixels a character at 12 px sans-serif.
    let chars = (seg / 6.5) as usize;
    for (i, b) in bars.iter().enumerate() {
        let x = (i as f64 * seg) as i32;
        let bw = (seg * 0.35) as i32;
        let pp = Rectangle::new([(x + (seg * 0.12) as i32, y_px(b.pp)), (x + (seg * 0.12) as i32 + bw, h as i32)], BLUE.mix(0.7).filled());
        let tg = Rectangle::new([(x + (seg * 0.53) as i32, y_px(b.tg)), (x + (seg * 0.53) as i32 + bw, h as i32)], RED.mix(0.7).filled());
        drawing.draw(&pp).map_err(|e| err(&e))?;
        drawing.draw(&tg).map_err(|e| err(&e))?;
        let tg_text = match &b.tg_note {
            Some(note) => format!("{:.1} {note}", b.tg),
            None => format!("{:.1}", b.tg),
        };
        for (t, v, xo) in [(format!("{:.1}", b.pp), b.pp, 0.12), (tg_text, b.tg, 0.53)] {
            drawing.draw(&Text::new(t, (x + (seg * xo) as i32, y_px(v) - 16), ("sans-serif", 13))).map_err(|e| err(&e))?;
        }
        // Under the plotting area, so on the root in the root's pixels.
        for (k, line) in b.label.iter().enumerate() {
            let at = (bx + x + (seg * 0.06) as i32, by + h as i32 + 8 + (LINE_PX * k as u32) as i32);
            root.draw(&Text::new(fit(line, chars), at, ("sans-serif", 12))).map_err(|e| err(&e))?;
        }
    }
    // Top right, clear of the y axis and its labels.
    let legend = root.margin(20, 0, root.dim_in_pixel().0.saturating_sub(200), 0);
    legend.draw(&Rectangle::new([(0, 40), (14, 54)], BLUE.mix(0.7).filled())).map_err(|e| err(&e))?;
    legend.draw(&Text::new("prefill", (20, 40), ("sans-serif", 14))).map_err(|e| err(&e))?;
    legend.draw(&Rectangle::new([(90, 40), (104, 54)], RED.mix(0.7).filled())).map_err(|e| err(&e))?;
    legend.draw(&Text::new("decode", (110, 40), ("sans-serif", 14))).map_err(|e| err(&e))?;
    if bars.iter().any(|b| b.tg_note.is_some()) {
        legend.draw(&Text::new("(n% bw): of the device's copy GB/s", (0, 62), ("sans-serif", 11))).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_labels_keep_both_ends() {
        assert_eq!(super::fit("llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)", 16), "llvmpip…(Vulkan)");
        assert_eq!(super::fit("native", 16), "native");
        assert_eq!(super::fit("abc", 0), "…");
    }
}
