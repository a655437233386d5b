//! `forge bench report` through the real binary: one real `forge bench --json` run on a tiny
//! model, and copies of it edited to stand for other machines, older files, other models or
//! sizes, and broken files.

mod common;

use std::path::{Path, PathBuf};

use common::{forge, text, tiny_gguf};
use serde_json::{Value, json};

/// One real CPU run, small sizes; its JSON file.
fn real_run(dir_name: &str) -> PathBuf {
    let m = tiny_gguf(dir_name);
    let out = m.with_file_name("cpu.json");
    let o = forge(&["bench", "-m", m.to_str().unwrap(), "--backends", "cpu", "-p", "16", "-n", "4", "-r", "1", "--json", out.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o).1);
    out
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write(p: &Path, v: &Value) -> String {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

/// `forge bench report` with `args`; (success, stdout, stderr). A panic is never a clear error.
fn report(args: &[&str]) -> (bool, String, String) {
    let o = forge(&[&["bench", "report"][..], args].concat(), &[]);
    let (out, err) = text(&o);
    assert!(!err.contains("panicked"), "{err}");
    (o.status.success(), out, err)
}

/// The table's body rows, cells trimmed.
fn table_rows(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| machine "))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// Every start tag is closed in order (self-closing ones count as closed): the SVG is at least
/// well-nested XML, which is what a renderer needs first.
fn assert_well_nested(svg: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').unwrap_or_else(|| panic!("unclosed tag near {}", &rest[i..]));
        let tag = &rest[i + 1..i + end];
        rest = &rest[i + end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name = tag.trim_start_matches('/').split_whitespace().next().unwrap_or("").to_string();
        if tag.starts_with('/') {
            assert_eq!(open.pop().as_deref(), Some(name.as_str()), "mismatched </{name}>");
        } else {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

#[test]
fn machines_and_backends_side_by_side() {
    let a = real_run("bench-report-side");
    let real = read(&a);
    assert_eq!(real["rows"][0]["driver"], "native", "{real}");
    assert!(real["model_sha256"].as_str().is_some_and(|s| s.len() == 64), "{real}");
    assert!(real["machine"]["hostname"].is_string(), "{real}");

    // Another machine: its own name, a CPU row and a GPU row with figures of its own.
    let mut other = real.clone();
    other["machine"]["hostname"] = json!("box-b");
    other["rows"][0]["pp_tok_s"] = json!({"median": 321.5, "min": 300.0, "max": 330.0});
    let mut gpu = real["rows"][0].clone();
    gpu["backend"] = json!("wgpu");
    gpu["device"] = json!("Some GPU (Vulkan)");
    gpu["driver"] = json!("Vulkan vendor-driver 1.2.3");
    gpu["pp_tok_s"] = json!({"median": 1234.5, "min": 1200.0, "max": 1250.0});
    gpu["tg_tok_s"] = json!({"median": 67.8, "min": 60.0, "max": 70.0});
    gpu["effective_gb_s"] = json!(50.0);
    gpu["copy_gb_s"] = json!(200.0);
    gpu["bandwidth_fraction"] = Value::Null;
    other["rows"].as_array_mut().unwrap().push(gpu);
    let b = write(&a.with_file_name("box-b.json"), &other);

    let (md, svg, js) = (a.with_file_name("r.md"), a.with_file_name("r.svg"), a.with_file_name("r.json"));
    let (ok, _, err) = report(&[a.to_str().unwrap(), &b, "-o", md.to_str().unwrap(), "--plot", svg.to_str().unwrap(), "--json", js.to_str().unwrap()]);
    assert!(ok, "{err}");
    let md = std::fs::read_to_string(&md).unwrap();
    let rows = table_rows(&md);
    assert_eq!(rows.len(), 3, "a row per machine × backend:\n{md}");
    let host = real["machine"]["hostname"].as_str().unwrap();
    let sha = &real["model_sha256"].as_str().unwrap()[..12];
    let ours = &rows[0];
    assert_eq!((ours[0].as_str(), ours[2].as_str(), ours[4].as_str()), (host, "cpu", "native"), "{md}");
    assert!(ours[5].starts_with(sha), "{md}");
    let pp = real["rows"][0]["pp_tok_s"]["median"].as_f64().unwrap();
    let tg = real["rows"][0]["tg_tok_s"]["median"].as_f64().unwrap();
    assert!(ours[7].starts_with(&format!("{pp:.1} (")) && ours[8].starts_with(&format!("{tg:.1} (")), "{md}");
    let frac = real["rows"][0]["bandwidth_fraction"].as_f64().unwrap();
    assert_eq!(ours[11], format!("{:.0}%", frac * 100.0), "{md}");
    assert_eq!((rows[1][0].as_str(), rows[1][7].as_str()), ("box-b", "321.5 (300.0–330.0)"), "{md}");
    let g = &rows[2];
    assert_eq!((g[0].as_str(), g[2].as_str(), g[4].as_str()), ("box-b", "wgpu", "Vulkan vendor-driver 1.2.3"), "{md}");
    assert_eq!((g[7].as_str(), g[8].as_str(), g[11].as_str()), ("1234.5 (1200.0–1250.0)", "67.8 (60.0–70.0)", "25%"), "50 of 200 GB/s:\n{md}");
    assert!(g[12].ends_with("box-b.json"), "{md}");

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_well_nested(&svg);
    for label in ["box-b", host, "1234.5", "67.8 (25% bw)", "Vulkan vendor-driver 1.2.3"] {
        assert!(svg.contains(label), "{label} missing from the plot");
    }

    let js: Value = read(&js);
    assert_eq!(js["rows"].as_array().unwrap().len(), 3);
    assert_eq!((&js["rows"][2]["machine"], &js["rows"][2]["backend"]), (&json!("box-b"), &json!("wgpu")));
    assert_eq!(js["mixed"], json!([]));

    // Without -o the table goes to stdout.
    let (ok, out, err) = report(&[a.to_str().unwrap(), &b]);
    assert!(ok && table_rows(&out).len() == 3, "{out}{err}");
}

#[test]
fn files_from_before_the_report_show_unknowns() {
    let a = real_run("bench-report-old");
    let mut old = read(&a);
    old["machine"].as_object_mut().unwrap().remove("hostname");
    old.as_object_mut().unwrap().remove("model_sha256");
    for k in ["driver", "copy_gb_s", "bandwidth_fraction"] {
        old["rows"][0].as_object_mut().unwrap().remove(k);
    }
    let old = write(&a.with_file_name("old.json"), &old);
    let (ok, out, err) = report(&[a.to_str().unwrap(), &old]);
    assert!(ok, "same model file name, unknown checksum: comparable\n{err}");
    let rows = table_rows(&out);
    let r = &rows[1];
    assert_eq!((r[0].as_str(), r[4].as_str(), r[5].as_str(), r[10].as_str(), r[11].as_str()), ("unknown", "unknown", "unknown", "unknown", "unknown"), "{out}");
}

#[test]
fn mixing_models_or_sizes_is_refused_by_name() {
    let a = real_run("bench-report-mix");
    let real = read(&a);
    let mut gemma = real.clone();
    gemma["model"] = json!("/models/gemma-3-270m-q4_k_m.gguf");
    gemma["model_sha256"] = json!("ab".repeat(32));
    let gemma = write(&a.with_file_name("gemma.json"), &gemma);
    let (ok, _, err) = report(&[a.to_str().unwrap(), &gemma]);
    assert!(!ok, "{err}");
    let ours = Path::new(real["model"].as_str().unwrap()).file_name().unwrap().to_str().unwrap();
    for needle in ["refusing to mix models", a.to_str().unwrap(), &gemma, ours, "gemma-3-270m-q4_k_m.gguf", "abababababab", "--allow-mixed"] {
        assert!(err.contains(needle), "{needle} missing: {err}");
    }

    let mut longer = real.clone();
    longer["prompt_tokens"] = json!(64);
    let longer = write(&a.with_file_name("p64.json"), &longer);
    let (ok, _, err) = report(&[a.to_str().unwrap(), &longer]);
    assert!(!ok, "{err}");
    for needle in ["refusing to mix sizes", a.to_str().unwrap(), &longer, "pp16 / tg4", "pp64 / tg4"] {
        assert!(err.contains(needle), "{needle} missing: {err}");
    }

    // Deliberately mixed: allowed, and said in the table and the plot.
    let svg = a.with_file_name("mixed.svg");
    let (ok, out, err) = report(&[a.to_str().unwrap(), &gemma, &longer, "--allow-mixed", "--plot", svg.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("Mixed comparison") && out.contains("models differ") && out.contains("sizes differ"), "{out}");
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 3, "{out}");
    assert!(!rows[0][5].starts_with('≠') && rows[1][5].starts_with('≠') && rows[2][6].starts_with('≠'), "{out}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert_well_nested(&svg);
    assert!(svg.contains("MIXED"), "the plot does not say it is mixed");
}

#[test]
fn broken_files_are_named_not_panicked_on() {
    let a = real_run("bench-report-broken");
    let a = a.to_str().unwrap();
    let dir = Path::new(a).parent().unwrap();
    let mut no_rows = read(Path::new(a));
    no_rows["rows"] = json!([]);
    let cases: [(&str, Option<String>, &str); 6] = [
        ("empty.json", Some(String::new()), "is empty"),
        ("cut.json", Some("{\"model\": \"x\",".into()), "is not a `forge bench --json` file"),
        ("other.json", Some("{\"hello\": 1}".into()), "missing field"),
        ("list.json", Some("[1, 2]".into()), "is not a `forge bench --json` file"),
        ("no-rows.json", Some(no_rows.to_string()), "has no rows"),
        ("absent.json", None, "reading"),
    ];
    for (name, body, needle) in cases {
        let p = dir.join(name);
        if let Some(body) = body {
            std::fs::write(&p, body).unwrap();
        }
        let (ok, _, err) = report(&[a, p.to_str().unwrap()]);
        assert!(!ok, "{name} accepted");
        assert!(err.contains(needle) && err.contains(name), "{name}: {err}");
        // The cause is said once, after the file's name.
        assert!(err.matches("EOF while parsing").count() <= 1, "{err}");
    }
    let (ok, _, err) = report(&[]);
    assert!(!ok && err.contains("required"), "{err}");
}

/// `report` is a subcommand of `bench`; the measuring flags do not apply to it.
#[test]
fn bench_flags_do_not_mix_with_report() {
    let o = forge(&["bench", "-p", "4", "report", "a.json"], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
}
