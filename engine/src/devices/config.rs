//! Where the user's choice of backend and device comes from, with a fixed precedence:
//! command-line flag > environment (`FORGE_BACKEND`, `FORGE_DEVICE`, `FORGE_KV_TYPE`) > config
//! file > automatic.
//!
//! The config file is TOML, at `FORGE_CONFIG`, else `$XDG_CONFIG_HOME/forge/config.toml`, else
//! `~/.config/forge/config.toml`:
//!
//! ```toml
//! backend = "auto"          # auto | cpu | wgpu | cuda
//! device = 0                # an index from `forge devices`, or a name substring ("llvmpipe")
//! memory_fraction = 0.9     # share of a device's memory a model may take, in (0, 1]
//! kv_type = "f16"           # f32 | f16 | q8_0: what the KV cache keeps keys and values in
//! [cpu]
//! threads = 8
//! [wgpu]
//! apis = ["vulkan", "metal"] # which wgpu APIs may be used
//! ```
//!
//! A bad value is an error that names its source and key. **Architecture Invariant:** nothing
//! here reads the process environment; the caller passes it in as a map, so tests cannot race.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::probe_wgpu::Api;
use crate::error::{ForgeError, Result};
use crate::session::KvType;

pub type Env = BTreeMap<String, String>;

pub const DEFAULT_MEMORY_FRACTION: f64 = 0.9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
        }
    }

    pub fn parse(s: &str) -> Option<BackendChoice> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "auto" => BackendChoice::Auto,
            "cpu" => BackendChoice::Cpu,
            "wgpu" => BackendChoice::Wgpu,
            "cuda" => BackendChoice::Cuda,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A position in `forge devices`.
    Index(usize),
    /// A case-insensitive substring of a device's label.
    Name(String),
}

impl DeviceChoice {
    /// A number is an index; anything else is a name substring.
    pub fn parse(s: &str) -> Option<DeviceChoice> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        Some(s.parse().map_or_else(|_| DeviceChoice::Name(s.to_string()), DeviceChoice::Index))
    }
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    Config(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(n) => write!(f, "{n}"),
            Origin::Env(n) => write!(f, "{n}"),
            Origin::Config(p) => write!(f, "config {}", p.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// The command-line flags, as typed (validated here so the messages match the other sources).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub backend: Option<String>,
    pub device: Option<String>,
    pub kv_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Settings {
    pub backend: Setting<BackendChoice>,
    pub device: Option<Setting<DeviceChoice>>,
    pub memory_fraction: Setting<f64>,
    /// What the KV cache keeps keys and values in.
    pub kv_type: Setting<KvType>,
    pub cpu_threads: Option<usize>,
    pub wgpu_apis: Option<Vec<Api>>,
    /// The config file read, if any.
    pub config: Option<PathBuf>,
}

const BACKENDS: &str = "expected auto, cpu, wgpu or cuda";

fn invalid(what: String) -> ForgeError {
    ForgeError::InvalidArgument { what }
}

/// `FORGE_CONFIG`, else `$XDG_CONFIG_HOME/forge/config.toml`, else `$HOME/.config/forge/config.toml`.
/// The flag says whether the path was named explicitly (then a missing file is an error).
pub fn config_path(env: &Env) -> Option<(PathBuf, bool)> {
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("FORGE_CONFIG") {
        return Some((p, true));
    }
    let base = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))?;
    Some((base.join("forge").join("config.toml"), false))
}

/// Finds and reads the config file named by `env`, then resolves every source.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(flags: &Flags, env: &Env) -> Result<Settings> {
    let text = match config_path(env) {
        Some((path, explicit)) => match std::fs::read_to_string(&path) {
            Ok(t) => Some((path, t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(e) => return Err(invalid(format!("FORGE_CONFIG={}: {e}", path.display()))),
        },
        None => None,
    };
    resolve(flags, env, text.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
}

/// The settings from the flags, the environment and the config file's text, by precedence.
pub fn resolve(flags: &Flags, env: &Env, config: Option<(&Path, &str)>) -> Result<Settings> {
    let file = match config {
        Some((path, text)) => ConfigFile::parse(path, text)?,
        None => ConfigFile::default(),
    };
    let env_var = |k: &'static str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()).map(|v| (k, v));

    let backend = if let Some(v) = flags.backend.as_deref() {
        let value = BackendChoice::parse(v).ok_or_else(|| invalid(format!("--backend {v}: unknown backend; {BACKENDS}")))?;
        Setting { value, origin: Origin::Flag("--backend") }
    } else if let Some((k, v)) = env_var("FORGE_BACKEND") {
        let value = BackendChoice::parse(v).ok_or_else(|| invalid(format!("{k}={v}: unknown backend; {BACKENDS}")))?;
        Setting { value, origin: Origin::Env(k) }
    } else {
        file.backend.unwrap_or(Setting { value: BackendChoice::Auto, origin: Origin::Default })
    };

    let device = if let Some(v) = flags.device.as_deref() {
        let value = DeviceChoice::parse(v).ok_or_else(|| invalid("--device: empty; give an index from `forge devices` or part of a device name".into()))?;
        Some(Setting { value, origin: Origin::Flag("--device") })
    } else if let Some((k, v)) = env_var("FORGE_DEVICE") {
        Some(Setting { value: DeviceChoice::parse(v).expect("non-empty"), origin: Origin::Env(k) })
    } else {
        file.device
    };

    let kv_type = if let Some(v) = flags.kv_type.as_deref() {
        Setting { value: v.parse().map_err(|e| invalid(format!("--kv-type {v}: {e}")))?, origin: Origin::Flag("--kv-type") }
    } else if let Some((k, v)) = env_var("FORGE_KV_TYPE") {
        Setting { value: v.parse().map_err(|e| invalid(format!("{k}={v}: {e}")))?, origin: Origin::Env(k) }
    } else {
        file.kv_type.unwrap_or(Setting { value: KvType::default(), origin: Origin::Default })
    };

    Ok(Settings {
        backend,
        device,
        memory_fraction: file.memory_fraction.unwrap_or(Setting { value: DEFAULT_MEMORY_FRACTION, origin: Origin::Default }),
        kv_type,
        cpu_threads: file.cpu_threads,
        wgpu_apis: file.wgpu_apis,
        config: config.map(|(p, _)| p.to_path_buf()),
    })
}

/// The keys of the config file, each checked.
#[derive(Default)]
struct ConfigFile {
    backend: Option<Setting<BackendChoice>>,
    device: Option<Setting<DeviceChoice>>,
    memory_fraction: Option<Setting<f64>>,
    kv_type: Option<Setting<KvType>>,
    cpu_threads: Option<usize>,
    wgpu_apis: Option<Vec<Api>>,
}

impl ConfigFile {
    fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
        let origin = Origin::Config(path.to_path_buf());
        let table: toml::Table = toml::from_str(text).map_err(|e| invalid(format!("{origin}: {}", e.to_string().trim_end())))?;
        let bad = |key: &str, v: &toml::Value, what: &str| invalid(format!("{origin}: key `{key}` = {}: {what}", show(v)));
        let mut out = ConfigFile::default();
        for (key, v) in &table {
            match (key.as_str(), v) {
                ("backend", toml::Value::String(s)) => {
                    let value = BackendChoice::parse(s).ok_or_else(|| bad(key, v, &format!("unknown backend; {BACKENDS}")))?;
                    out.backend = Some(Setting { value, origin: origin.clone() });
                }
                ("backend", _) => return Err(bad(key, v, &format!("must be a string; {BACKENDS}"))),
                ("device", toml::Value::Integer(i)) if *i >= 0 => out.device = Some(Setting { value: DeviceChoice::Index(*i as usize), origin: origin.clone() }),
                ("device", toml::Value::String(s)) => {
                    let value = DeviceChoice::parse(s).ok_or_else(|| bad(key, v, "empty; give an index from `forge devices` or part of a device name"))?;
                    out.device = Some(Setting { value, origin: origin.clone() });
                }
                ("device", _) => return Err(bad(key, v, "must be an index from `forge devices` or part of a device name")),
                ("memory_fraction", toml::Value::Float(_) | toml::Value::Integer(_)) => {
                    let f = v.as_float().or_else(|| v.as_integer().map(|i| i as f64)).expect("a number");
                    if !(f > 0.0 && f <= 1.0) {
                        return Err(bad(key, v, "must be in (0, 1]"));
                    }
                    out.memory_fraction = Some(Setting { value: f, origin: origin.clone() });
                }
                ("memory_fraction", _) => return Err(bad(key, v, "must be a number in (0, 1]")),
                ("kv_type", toml::Value::String(s)) => {
                    let value = s.parse().map_err(|_| bad(key, v, "expected f32, f16 or q8_0"))?;
                    out.kv_type = Some(Setting { value, origin: origin.clone() });
                }
                ("kv_type", _) => return Err(bad(key, v, "must be a string: f32, f16 or q8_0")),
                ("cpu", toml::Value::Table(t)) => {
                    for (k, v) in t {
                        match (k.as_str(), v) {
                            ("threads", toml::Value::Integer(n)) if *n >= 1 && *n <= 4096 => out.cpu_threads = Some(*n as usize),
                            ("threads", _) => return Err(bad("cpu.threads", v, "must be a whole number from 1 to 4096")),
                            _ => return Err(invalid(format!("{origin}: unknown key `cpu.{k}` (known: cpu.threads)"))),
                        }
                    }
                }
                ("wgpu", toml::Value::Table(t)) => {
                    for (k, v) in t {
                        match (k.as_str(), v) {
                            ("apis", toml::Value::Array(items)) => {
                                let apis = items.iter().map(|i| i.as_str().and_then(parse_api)).collect::<Option<Vec<_>>>();
                                out.wgpu_apis = Some(apis.ok_or_else(|| bad("wgpu.apis", v, "expected a list of vulkan, metal, dx12, gl, webgpu"))?);
                            }
                            ("apis", _) => return Err(bad("wgpu.apis", v, "expected a list of vulkan, metal, dx12, gl, webgpu")),
                            _ => return Err(invalid(format!("{origin}: unknown key `wgpu.{k}` (known: wgpu.apis)"))),
                        }
                    }
                }
                ("cpu" | "wgpu", _) => return Err(bad(key, v, "must be a table")),
                _ => return Err(invalid(format!("{origin}: unknown key `{key}` (known: backend, device, memory_fraction, kv_type, [cpu] threads, [wgpu] apis)"))),
            }
        }
        Ok(out)
    }
}

/// A value as it would be written in the file (`1.5`, `"vulcan"`).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(_) => "{…}".into(),
        toml::Value::Datetime(d) => d.to_string(),
    }
}

fn parse_api(s: &str) -> Option<Api> {
    Some(match s.to_ascii_lowercase().as_str() {
        "vulkan" => Api::Vulkan,
        "metal" => Api::Metal,
        "dx12" => Api::Dx12,
        "gl" => Api::Gl,
        "webgpu" => Api::WebGpu,
        _ => return None,
    })
}
