//! `forge bench` output: a Markdown table and an SVG bar chart of the same rows.

use std::path::Path;

use plotters::prelude::*;

use super::Report;

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "Model: {} — pp{} / tg{}, median of {} (min–max)\n\n| engine | backend | device | load ms | prefill tok/s | decode tok/s | launches/token | MB/token | decode GB/s | copy GB/s | % of copy | vs llama.cpp (tg, pp) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.model, r.prompt_tokens, r.gen_tokens, r.reps
    );
    for row in &r.rows {
        s += &format!(
            "| {} | {} | {} | {} | {:.1} ({:.1}–{:.1}) | {:.1} ({:.1}–{:.1}) | {} | {} | {} | {} | {} | {} |\n",
            row.engine,
            row.backend,
            row.device,
            row.load_ms.map_or_else(|| "unknown".to_string(), |ms| format!("{ms:.0}")),
            row.pp_tok_s.median,
            row.pp_tok_s.min,
            row.pp_tok_s.max,
            row.tg_tok_s.median,
            row.tg_tok_s.min,
            row.tg_tok_s.max,
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

/// Grouped bars: prefill and decode tokens/s for each row.
pub fn plot(r: &Report, path: &Path) -> anyhow::Result<()> {
    let n = r.rows.len();
    let root = SVGBackend::new(path, (220 + 160 * n as u32, 480)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let top = r.rows.iter().flat_map(|x| [x.pp_tok_s.median, x.tg_tok_s.median]).fold(1.0, f64::max) * 1.15;
    let labels: Vec<String> = r.rows.iter().map(|x| format!("{} {}", x.engine, x.backend)).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("tokens/s — pp{} / tg{}", r.prompt_tokens, r.gen_tokens), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0f64..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("tokens/s")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| err(&e))?;
    // Plotters' segmented axis has no sub-positions, so draw each pair in pixel space.
    let area = chart.plotting_area();
    let (w, _) = area.dim_in_pixel();
    let seg = w as f64 / n as f64;
    let drawing = area.strip_coord_spec();
    let (_, h) = drawing.dim_in_pixel();
    let y_px = |v: f64| (h as f64 * (1.0 - v / top)) as i32;
    for (i, row) in r.rows.iter().enumerate() {
        let x = (i as f64 * seg) as i32;
        let bw = (seg * 0.35) as i32;
        let pp = Rectangle::new([(x + (seg * 0.12) as i32, y_px(row.pp_tok_s.median)), (x + (seg * 0.12) as i32 + bw, h as i32)], BLUE.mix(0.7).filled());
        let tg = Rectangle::new([(x + (seg * 0.53) as i32, y_px(row.tg_tok_s.median)), (x + (seg * 0.53) as i32 + bw, h as i32)], RED.mix(0.7).filled());
        drawing.draw(&pp).map_err(|e| err(&e))?;
        drawing.draw(&tg).map_err(|e| err(&e))?;
        for (v, xo) in [(row.pp_tok_s.median, 0.12), (row.tg_tok_s.median, 0.53)] {
            let t = Text::new(format!("{v:.1}"), (x + (seg * xo) as i32, y_px(v) - 16), ("sans-serif", 13));
            drawing.draw(&t).map_err(|e| err(&e))?;
        }
    }
    // Top right, clear of the y axis and its labels.
    let legend = root.margin(20, 0, root.dim_in_pixel().0.saturating_sub(200), 0);
    legend.draw(&Rectangle::new([(0, 40), (14, 54)], BLUE.mix(0.7).filled())).map_err(|e| err(&e))?;
    legend.draw(&Text::new("prefill", (20, 40), ("sans-serif", 14))).map_err(|e| err(&e))?;
    legend.draw(&Rectangle::new([(90, 40), (104, 54)], RED.mix(0.7).filled())).map_err(|e| err(&e))?;
    legend.draw(&Text::new("decode", (110, 40), ("sans-serif", 14))).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
