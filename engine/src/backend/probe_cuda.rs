//! Is there an NVIDIA driver, and which GPUs does it see? Found by loading the driver library
//! (`libcuda.so.1`) at run time and asking it, so the engine builds and runs where there is none.
//! The CUDA backend can reuse [`Driver`] to reach the same entry points.
//!
//! Calls (CUDA driver API): `cuInit(0)`, `cuDriverGetVersion`, `cuDeviceGetCount`, then per
//! ordinal `cuDeviceGet`, `cuDeviceGetName`, `cuDeviceTotalMem_v2` and `cuDeviceGetAttribute` for
//! the compute capability and the PCI address (to recognise the same GPU seen through Vulkan).

/// One GPU as the CUDA driver reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CudaDevice {
    pub ordinal: u32,
    pub name: String,
    pub total_mem: u64,
    /// (major, minor), e.g. (8, 9) for Ada.
    pub compute_capability: (u32, u32),
    /// `dddd:bb:dd.0`, the form Vulkan reports, when the driver gives it.
    pub pci_bus_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CudaProbe {
    /// No driver library: nothing NVIDIA here (or not visible to this process).
    Absent { reason: String },
    /// The library loaded but the driver refused (`cuInit` failed, missing symbol, no device).
    Failed { library: String, reason: String },
    Present { library: String, driver_version: Option<(u32, u32)>, devices: Vec<CudaDevice> },
}

#[cfg(target_os = "windows")]
pub const LIBRARY_NAMES: &[&str] = &["nvcuda.dll"];
#[cfg(not(target_os = "windows"))]
pub const LIBRARY_NAMES: &[&str] = &["libcuda.so.1", "libcuda.so"];

#[cfg(target_arch = "wasm32")]
pub fn probe() -> CudaProbe {
    CudaProbe::Absent { reason: "not available in a browser".into() }
}

#[cfg(not(target_arch = "wasm32"))]
pub fn probe() -> CudaProbe {
    let Some((library, driver)) = LIBRARY_NAMES.iter().find_map(|n| Driver::load(n).ok().map(|d| (n.to_string(), d))) else {
        return CudaProbe::Absent { reason: format!("{} not found (no NVIDIA driver)", LIBRARY_NAMES[0]) };
    };
    match driver.devices() {
        Ok((driver_version, devices)) if !devices.is_empty() => CudaProbe::Present { library, driver_version, devices },
        Ok(_) => CudaProbe::Failed { library, reason: "the driver reports no CUDA device".into() },
        Err(reason) => CudaProbe::Failed { library, reason },
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use driver::Driver;

#[cfg(not(target_arch = "wasm32"))]
mod driver {
    use std::ffi::{c_char, c_int, c_uint};

    use super::CudaDevice;

    /// The driver's CUDA version as (major, minor), when it reports one.
    type DriverVersion = Option<(u32, u32)>;

    type CuResult = c_int;
    const CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: c_int = 33;
    const CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: c_int = 34;
    const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
    const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;
    const CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: c_int = 50;

    /// The loaded driver library. Symbols are looked up per call; the probe makes a handful.
    pub struct Driver {
        lib: libloading::Library,
    }

    impl Driver {
        pub fn load(name: &str) -> Result<Driver, String> {
            // SAFETY: loading the NVIDIA driver runs its initialisers, which are trusted like any
            // system library; nothing else is executed here.
            let lib = unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())?;
            Ok(Driver { lib })
        }

        /// Looks up `name` with the C signature `T`.
        ///
        /// # Safety
        /// `T` must be the function's true signature in the CUDA driver API.
        pub unsafe fn symbol<T: Copy>(&self, name: &str) -> Result<T, String> {
            let cname = format!("{name}\0");
            // SAFETY: the caller guarantees `T` matches the symbol's signature.
            unsafe { self.lib.get::<T>(cname.as_bytes()) }.map(|s| *s).map_err(|e| format!("{name}: {e}"))
        }

        fn check(&self, call: &str, r: CuResult) -> Result<(), String> {
            if r == 0 {
                return Ok(());
            }
            // SAFETY: cuGetErrorString(CUresult, const char**) -> CUresult.
            let msg = unsafe { self.symbol::<unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult>("cuGetErrorString") }.ok().and_then(|f| {
                let mut p: *const c_char = std::ptr::null();
                // SAFETY: `p` is a valid out-pointer; the driver returns a static string or fails.
                (unsafe { f(r, &mut p) } == 0 && !p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
            });
            Err(format!("{call} failed with CUresult {r}{}", msg.map(|m| format!(" ({m})")).unwrap_or_default()))
        }

        /// `cuInit`, the driver version (major, minor) if it reports one, and every device.
        pub fn devices(&self) -> Result<(DriverVersion, Vec<CudaDevice>), String> {
            // SAFETY (all blocks below): each signature is the documented CUDA driver API one
            // (CUdevice is an int), and every pointer passed is a valid out-pointer.
            unsafe {
                let init: unsafe extern "C" fn(c_uint) -> CuResult = self.symbol("cuInit")?;
                self.check("cuInit", init(0))?;
                let version = self.symbol::<unsafe extern "C" fn(*mut c_int) -> CuResult>("cuDriverGetVersion").ok().and_then(|f| {
                    let mut v = 0;
                    (f(&mut v) == 0).then_some(((v / 1000) as u32, ((v % 1000) / 10) as u32))
                });
                let count: unsafe extern "C" fn(*mut c_int) -> CuResult = self.symbol("cuDeviceGetCount")?;
                let get: unsafe extern "C" fn(*mut c_int, c_int) -> CuResult = self.symbol("cuDeviceGet")?;
                let name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult = self.symbol("cuDeviceGetName")?;
                let mem: unsafe extern "C" fn(*mut usize, c_int) -> CuResult = self.symbol("cuDeviceTotalMem_v2")?;
                let attr: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> CuResult = self.symbol("cuDeviceGetAttribute")?;
                let mut n = 0;
                self.check("cuDeviceGetCount", count(&mut n))?;
                let mut devices = Vec::new();
                for ordinal in 0..n.max(0) {
                    let mut dev = 0;
                    self.check("cuDeviceGet", get(&mut dev, ordinal))?;
                    let mut buf = [0 as c_char; 256];
                    self.check("cuDeviceGetName", name(buf.as_mut_ptr(), buf.len() as c_int, dev))?;
                    let name = std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                    let mut bytes = 0usize;
                    self.check("cuDeviceTotalMem_v2", mem(&mut bytes, dev))?;
                    let a = |which| {
                        let mut v = 0;
                        (attr(&mut v, which, dev) == 0).then_some(v)
                    };
                    let cc = (a(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR).unwrap_or(0) as u32, a(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR).unwrap_or(0) as u32);
                    let pci = match (a(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID), a(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID), a(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)) {
                        (Some(d), Some(b), Some(s)) => Some(format!("{d:04x}:{b:02x}:{s:02x}.0")),
                        _ => None,
                    };
                    devices.push(CudaDevice { ordinal: ordinal as u32, name, total_mem: bytes as u64, compute_capability: cc, pci_bus_id: pci });
                }
                Ok((version, devices))
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn probe_never_panics_and_explains_absence() {
        match probe() {
            CudaProbe::Absent { reason } => assert!(reason.contains("not found"), "{reason}"),
            CudaProbe::Failed { reason, .. } => assert!(!reason.is_empty()),
            CudaProbe::Present { devices, .. } => assert!(devices.iter().all(|d| !d.name.is_empty())),
        }
    }
}
