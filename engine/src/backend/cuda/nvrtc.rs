//! NVRTC, loaded at run time: compiles `cuda/*.cu` for the device's architecture, with
//! `cuda/common.cuh` passed as an in-memory header, and keeps the result on disk so that a
//! second start compiles nothing.
//!
//! NVRTC comes with the CUDA toolkit (or the `nvidia-cuda-nvrtc-cu12` wheel), not with the
//! driver, so it is looked for by name (`LD_LIBRARY_PATH`), in the usual toolkit folders, and in
//! the wheel that `.ci/cuda-setup.sh` installs. Loading never panics: a missing library is an
//! error value (cudarc's own NVRTC bindings would panic, so they are not used).
//!
//! Cache: `$XDG_CACHE_HOME/forge/cuda/` (else `~/.cache/forge/cuda/`), one file per kernel
//! source, named by the caller's key (a hash of the source, the header, the options, the target
//! and the driver version), the target, and the version of the NVRTC that compiled it
//! ([`cache_file_name`]): a new NVRTC, which may fix a miscompile, compiles afresh rather than
//! serve an older one's image. Without NVRTC, the image of the newest NVRTC cached for the key
//! and target serves, as there is no compiler to do better.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::{Path, PathBuf};

use crate::error::{ForgeError, Result};

type NvrtcResult = c_int;
type Program = *mut std::ffi::c_void;

fn err(what: impl Into<String>) -> ForgeError {
    ForgeError::Backend { backend: "cuda".into(), what: what.into() }
}

#[cfg(target_os = "windows")]
const LIBRARY_NAMES: &[&str] = &["nvrtc64_120_0.dll", "nvrtc64_130_0.dll"];
#[cfg(not(target_os = "windows"))]
const LIBRARY_NAMES: &[&str] = &["libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so"];

/// Folders tried after the loader's own search path: `$FORGE_NVRTC_DIR`, the toolkit, and the
/// wheel `.ci/cuda-setup.sh` installs under `~/.cache/forge/cuda-venv`.
fn extra_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("FORGE_NVRTC_DIR") {
        dirs.push(PathBuf::from(d));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(d) = std::env::var_os(var) {
            dirs.push(PathBuf::from(d).join("lib64"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    if let Some(home) = std::env::var_os("HOME") {
        let lib = PathBuf::from(home).join(".cache/forge/cuda-venv/lib");
        if let Ok(entries) = std::fs::read_dir(&lib) {
            for e in entries.flatten() {
                dirs.push(e.path().join("site-packages/nvidia/cuda_nvrtc/lib"));
            }
        }
    }
    dirs
}

/// The loaded NVRTC library.
pub struct Nvrtc {
    lib: libloading::Library,
    /// Where it was found (a library name or a path).
    pub location: String,
}

/// What one compilation produced.
pub struct Compiled {
    /// A CUBIN for `sm_XY` targets, PTX text (NUL-free) for `compute_XY` targets.
    pub image: Vec<u8>,
    pub is_cubin: bool,
    /// NVRTC's log: empty when there was nothing to say (no warning).
    pub log: String,
}

impl Nvrtc {
    /// Finds and loads NVRTC, or says where it looked.
    pub fn load() -> Result<Nvrtc> {
        if let Some(path) = std::env::var_os("FORGE_NVRTC") {
            let p = PathBuf::from(path);
            return Self::open(&p.to_string_lossy()).ok_or_else(|| err(format!("FORGE_NVRTC={} could not be loaded", p.display())));
        }
        for name in LIBRARY_NAMES {
            if let Some(n) = Self::open(name) {
                return Ok(n);
            }
        }
        for dir in extra_dirs() {
            for name in LIBRARY_NAMES {
                let p = dir.join(name);
                if p.exists()
                    && let Some(n) = Self::open(&p.to_string_lossy())
                {
                    return Ok(n);
                }
            }
        }
        Err(err(format!(
            "{} not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` (.ci/cuda-setup.sh) and add its lib folder to LD_LIBRARY_PATH",
            LIBRARY_NAMES[0]
        )))
    }

    fn open(name: &str) -> Option<Nvrtc> {
        // SAFETY: loading NVRTC runs its initialisers, trusted like any system library; a library
        // without the entry points we use is refused below before any call.
        let lib = unsafe { libloading::Library::new(name) }.ok()?;
        let n = Nvrtc { lib, location: name.to_string() };
        n.version().ok().map(|_| n)
    }

    /// # Safety
    /// `T` must be the symbol's true C signature.
    unsafe fn sym<T: Copy>(&self, name: &str) -> Result<T> {
        let c = format!("{name}\0");
        // SAFETY: the caller guarantees the signature.
        unsafe { self.lib.get::<T>(c.as_bytes()) }.map(|s| *s).map_err(|e| err(format!("NVRTC has no {name}: {e}")))
    }

    fn check(&self, call: &str, r: NvrtcResult) -> Result<()> {
        if r == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString(nvrtcResult) -> const char* (a static string).
        let msg = unsafe { self.sym::<unsafe extern "C" fn(NvrtcResult) -> *const c_char>("nvrtcGetErrorString") }
            .ok()
            .map(|f| unsafe { f(r) })
            .filter(|p| !p.is_null())
            .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .unwrap_or_default();
        Err(err(format!("{call} failed: {msg} ({r})")))
    }

    /// (major, minor) of the NVRTC library.
    pub fn version(&self) -> Result<(i32, i32)> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion(int*, int*) with valid out-pointers.
        unsafe {
            let f: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult = self.sym("nvrtcVersion")?;
            self.check("nvrtcVersion", f(&mut major, &mut minor))?;
        }
        Ok((major, minor))
    }

    /// The real architectures (`sm_XY` as XY) this NVRTC can generate code for.
    pub fn supported_archs(&self) -> Result<Vec<i32>> {
        // SAFETY: nvrtcGetNumSupportedArchs(int*), nvrtcGetSupportedArchs(int*) with a buffer
        // of the size the first returned.
        unsafe {
            let num: unsafe extern "C" fn(*mut c_int) -> NvrtcResult = self.sym("nvrtcGetNumSupportedArchs")?;
            let get: unsafe extern "C" fn(*mut c_int) -> NvrtcResult = self.sym("nvrtcGetSupportedArchs")?;
            let mut n = 0;
            self.check("nvrtcGetNumSupportedArchs", num(&mut n))?;
            let mut archs = vec![0; n.max(0) as usize];
            self.check("nvrtcGetSupportedArchs", get(archs.as_mut_ptr()))?;
            Ok(archs)
        }
    }

    /// Compiles `source` (file name `name`, for messages) with `headers` as (include name, text)
    /// pairs. `arch` is `sm_XY` (gives a CUBIN) or `compute_XY` (gives PTX). A compile error is an
    /// `Err` carrying the log; warnings come back in [`Compiled::log`].
    pub fn compile(&self, name: &str, source: &str, headers: &[(&str, &str)], arch: &str, extra: &[&str]) -> Result<Compiled> {
        let c = |s: &str| CString::new(s).map_err(|_| err(format!("{name}: a NUL byte in the source or options")));
        let (src, cname) = (c(source)?, c(name)?);
        let header_texts = headers.iter().map(|(_, t)| c(t)).collect::<Result<Vec<_>>>()?;
        let header_names = headers.iter().map(|(n, _)| c(n)).collect::<Result<Vec<_>>>()?;
        let htp: Vec<*const c_char> = header_texts.iter().map(|s| s.as_ptr()).collect();
        let hnp: Vec<*const c_char> = header_names.iter().map(|s| s.as_ptr()).collect();
        let options: Vec<CString> = options(arch).iter().map(String::as_str).chain(extra.iter().copied()).map(c).collect::<Result<_>>()?;
        let op: Vec<*const c_char> = options.iter().map(|s| s.as_ptr()).collect();
        let is_cubin = arch.starts_with("sm_");

        // SAFETY (this block): the documented NVRTC signatures; every pointer passed is valid for
        // the call (CStrings and the vectors of their pointers outlive it), buffers are sized by
        // the matching *Size call, and the program is destroyed on every path below.
        unsafe {
            type Create = unsafe extern "C" fn(*mut Program, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> NvrtcResult;
            type Compile = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult;
            type Size = unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult;
            type Get = unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult;
            type Destroy = unsafe extern "C" fn(*mut Program) -> NvrtcResult;
            let create: Create = self.sym("nvrtcCreateProgram")?;
            let compile: Compile = self.sym("nvrtcCompileProgram")?;
            let log_size: Size = self.sym("nvrtcGetProgramLogSize")?;
            let get_log: Get = self.sym("nvrtcGetProgramLog")?;
            let (out_size, get_out): (Size, Get) = if is_cubin {
                (self.sym("nvrtcGetCUBINSize")?, self.sym("nvrtcGetCUBIN")?)
            } else {
                (self.sym("nvrtcGetPTXSize")?, self.sym("nvrtcGetPTX")?)
            };
            let destroy: Destroy = self.sym("nvrtcDestroyProgram")?;

            let mut prog: Program = std::ptr::null_mut();
            self.check("nvrtcCreateProgram", create(&mut prog, src.as_ptr(), cname.as_ptr(), htp.len() as c_int, htp.as_ptr(), hnp.as_ptr()))?;
            let result = (|| {
                let r = compile(prog, op.len() as c_int, op.as_ptr());
                let mut n = 0usize;
                self.check("nvrtcGetProgramLogSize", log_size(prog, &mut n))?;
                let mut log = vec![0u8; n.max(1)];
                self.check("nvrtcGetProgramLog", get_log(prog, log.as_mut_ptr().cast()))?;
                let log = String::from_utf8_lossy(&log).trim_end_matches('\0').trim().to_string();
                if r != 0 {
                    return Err(err(format!("NVRTC could not compile cuda/{name} for {arch}:\n{log}")));
                }
                let mut n = 0usize;
                self.check("nvrtc output size", out_size(prog, &mut n))?;
                let mut image = vec![0u8; n];
                self.check("nvrtc output", get_out(prog, image.as_mut_ptr().cast()))?;
                if !is_cubin {
                    // PTX comes NUL-terminated.
                    while image.last() == Some(&0) {
                        image.pop();
                    }
                }
                Ok(Compiled { image, is_cubin, log })
            })();
            let mut p = prog;
            destroy(&mut p);
            result
        }
    }
}

/// The options every kernel is compiled with (besides the target).
pub fn options(arch: &str) -> Vec<String> {
    vec![format!("--gpu-architecture={arch}"), "--std=c++17".into(), "--device-as-default-execution-space".into()]
}

/// FNV-1a, 64 bits: a stable hash for cache keys (std's hasher may change between releases).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `$XDG_CACHE_HOME/forge/cuda`, else `~/.cache/forge/cuda`.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("forge").join("cuda"))
}

/// The file name an image is cached under: `key` (see the module doc), the target `arch`, and
/// the NVRTC version that compiled it; `.cubin` for `sm_XY` targets, `.ptx` for `compute_XY`.
pub fn cache_file_name(key: &str, arch: &str, nvrtc_version: (i32, i32)) -> String {
    format!("{key}.{arch}.nvrtc{}.{}.{}", nvrtc_version.0, nvrtc_version.1, extension(arch))
}

fn extension(arch: &str) -> &'static str {
    if arch.starts_with("sm_") { "cubin" } else { "ptx" }
}

/// Without NVRTC: the cached image for `key` and `arch` from the newest NVRTC, else one cached
/// under the bare key by a Forge that did not record the version yet.
fn newest_cached(dir: &Path, key: &str, arch: &str) -> Option<Vec<u8>> {
    let (prefix, suffix) = (format!("{key}.{arch}.nvrtc"), format!(".{}", extension(arch)));
    let newest = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (major, minor) = name.strip_prefix(&prefix)?.strip_suffix(&suffix)?.split_once('.')?;
            Some(((major.parse::<i32>().ok()?, minor.parse::<i32>().ok()?), e.path()))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path);
    newest.into_iter().chain([dir.join(format!("{key}{suffix}"))]).find_map(|p| std::fs::read(p).ok().filter(|image| !image.is_empty()))
}

/// Compiles through the disk cache: returns the image cached for `key`, `arch` and the loaded
/// NVRTC's version when there is one ([`cache_file_name`]).
/// `nvrtc` is the loaded library, or why it could not be loaded (then any NVRTC's cached image
/// for `key` and `arch` serves, and the reason is reported only when there is none).
pub fn compile_cached(nvrtc: std::result::Result<&Nvrtc, &ForgeError>, dir: Option<&Path>, key: &str, name: &str, source: &str, headers: &[(&str, &str)], arch: &str) -> Result<Compiled> {
    let is_cubin = arch.starts_with("sm_");
    let nvrtc = match nvrtc {
        Ok(n) => n,
        Err(e) => {
            return match dir.and_then(|d| newest_cached(d, key, arch)) {
                Some(image) => Ok(Compiled { image, is_cubin, log: String::new() }),
                None => Err(err(format!("cannot compile cuda/{name}: {e}"))),
            };
        }
    };
    let file = cache_file_name(key, arch, nvrtc.version()?);
    let path = dir.map(|d| d.join(&file));
    if let Some(p) = &path
        && let Ok(image) = std::fs::read(p)
        && !image.is_empty()
    {
        return Ok(Compiled { image, is_cubin, log: String::new() });
    }
    let out = nvrtc.compile(name, source, headers, arch, &[])?;
    if let (Some(p), Some(d)) = (&path, dir) {
        // Best effort: a read-only cache only costs a compile next time. Written under a
        // temporary name and renamed, so a concurrent reader never sees half a file.
        let _ = std::fs::create_dir_all(d);
        let tmp = d.join(format!(".{file}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, &out.image).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(what: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("forge-nvrtc-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_cache_file_changes_with_the_nvrtc_version_and_the_target() {
        let a = cache_file_name("add-sm_90-0123", "sm_90", (12, 9));
        assert_eq!(a, cache_file_name("add-sm_90-0123", "sm_90", (12, 9)));
        assert_ne!(a, cache_file_name("add-sm_90-0123", "sm_90", (12, 8)));
        assert_ne!(a, cache_file_name("add-sm_90-0123", "sm_90", (13, 9)));
        assert_ne!(a, cache_file_name("add-sm_90-0123", "compute_90", (12, 9)));
        assert!(a.ends_with(".cubin") && cache_file_name("k", "compute_90", (12, 9)).ends_with(".ptx"));
    }

    #[test]
    fn without_nvrtc_the_newest_nvrtc_s_image_for_the_target_serves() {
        let dir = temp_dir("newest");
        let missing = ForgeError::Backend { backend: "cuda".into(), what: "libnvrtc.so.12 not found".into() };
        let get = |arch: &str| compile_cached(Err(&missing), Some(&dir), "k", "k.cu", "", &[], arch).map(|c| c.image);
        std::fs::write(dir.join("k.cubin"), b"unversioned").unwrap();
        assert_eq!(get("sm_90").unwrap(), b"unversioned");
        for (version, image) in [((12, 9), "12.9"), ((12, 10), "12.10"), ((11, 8), "11.8")] {
            std::fs::write(dir.join(cache_file_name("k", "sm_90", version)), image).unwrap();
        }
        std::fs::write(dir.join(cache_file_name("k", "sm_80", (13, 0))), b"another target").unwrap();
        assert_eq!(get("sm_90").unwrap(), b"12.10", "12.10 is newer than 12.9");
        let e = get("compute_90").expect_err("no PTX cached");
        assert!(e.to_string().contains("libnvrtc.so.12 not found"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Needs NVRTC (skips without it unless `FORGE_REQUIRE_NVRTC=1`).
    #[test]
    fn with_nvrtc_an_image_cached_by_another_version_is_compiled_afresh() {
        let nvrtc = match Nvrtc::load() {
            Ok(n) => n,
            Err(e) if std::env::var("FORGE_REQUIRE_NVRTC").is_ok_and(|v| v == "1") => panic!("FORGE_REQUIRE_NVRTC=1 but {e}"),
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
        let dir = temp_dir("stale");
        let version = nvrtc.version().unwrap();
        let (source, arch) = ("extern \"C\" __global__ void k(float* x) { x[0] = 1.0f; }", "compute_80");
        std::fs::write(dir.join(cache_file_name("k", arch, (version.0, version.1 + 1))), b"stale").unwrap();
        std::fs::write(dir.join("k.ptx"), b"stale").unwrap();
        let out = compile_cached(Ok(&nvrtc), Some(&dir), "k", "k.cu", source, &[], arch).unwrap();
        assert!(String::from_utf8_lossy(&out.image).contains(".entry k("), "compiled, not served stale");
        let cached = std::fs::read(dir.join(cache_file_name("k", arch, version))).expect("cached under this version");
        assert_eq!(cached, out.image);
        let again = compile_cached(Ok(&nvrtc), Some(&dir), "k", "k.cu", "not even C", &[], arch).expect("served from the cache");
        assert_eq!(again.image, out.image);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
