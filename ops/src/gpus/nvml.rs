//! NVML, the management library NVIDIA's driver ships (`libnvidia-ml.so.1`), loaded at run time
//! and never linked: a machine without the driver runs envctl all the same, and is told so. Only
//! the calls envctl needs, with the signatures and structures NVML's header (`nvml.h`) gives.

use std::ffi::{CStr, c_char, c_int, c_uint, c_ulonglong, c_void};

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
    fn dlerror() -> *const c_char;
}

const RTLD_NOW: c_int = 2;
const NVML_SUCCESS: c_int = 0;
const NVML_ERROR_NOT_FOUND: c_int = 6;
const NVML_ERROR_INSUFFICIENT_SIZE: c_int = 7;

type Device = *mut c_void;

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlProcessInfo_t` (the `_v2` layout the `_v3` call fills).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProcessInfo {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

/// `nvmlProcessUtilizationSample_t`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ProcessSample {
    pid: c_uint,
    time_stamp: c_ulonglong,
    sm_util: c_uint,
    mem_util: c_uint,
    enc_util: c_uint,
    dec_util: c_uint,
}

/// What NVML says of one GPU.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// Its index (the order CUDA numbers GPUs in by default is another; UUIDs name them).
    pub index: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// The model (`NVIDIA A100-SXM4-40GB`).
    pub name: String,
    /// Memory in use and in all, bytes.
    pub memory_used: u64,
    /// All of its memory, bytes.
    pub memory_total: u64,
    /// Percent of the last sample period a kernel ran.
    pub utilization: u32,
    /// Compute capability (`(8, 0)`), when NVML says.
    pub compute_capability: Option<(i32, i32)>,
    /// Processes holding memory on it: pid, bytes.
    pub processes: Vec<(u32, u64)>,
    /// Processes that ran kernels in NVML's recent samples (pid, percent), when NVML keeps them.
    pub busy: Option<Vec<(u32, u32)>>,
}

/// A loaded NVML, initialised; shut down and closed when dropped.
pub struct Nvml {
    lib: *mut c_void,
}

/// Why there is no NVML.
#[derive(Debug, Clone)]
pub struct NoDriver(pub String);

impl std::fmt::Display for NoDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoDriver {}

macro_rules! symbol {
    ($self:expr, $name:literal, $ty:ty) => {{
        // SAFETY: the handle is open; the name is NUL-terminated; the caller gives the type
        // NVML's header declares for it.
        let p = unsafe { dlsym($self.lib, concat!($name, "\0").as_ptr().cast()) };
        if p.is_null() {
            None
        } else {
            // SAFETY: a non-null symbol of the type nvml.h declares.
            Some(unsafe { std::mem::transmute::<*mut c_void, $ty>(p) })
        }
    }};
}

impl Nvml {
    /// Loads and initialises NVML, or says why it cannot.
    pub fn load() -> Result<Nvml, NoDriver> {
        // SAFETY: a NUL-terminated name; dlerror's text is copied before any other dl call.
        let lib = unsafe { dlopen(c"libnvidia-ml.so.1".as_ptr(), RTLD_NOW) };
        if lib.is_null() {
            // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl call.
            let why = unsafe {
                let e = dlerror();
                if e.is_null() {
                    "not found".to_owned()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                }
            };
            return Err(NoDriver(format!(
                "no NVIDIA driver here: its management library libnvidia-ml.so.1 cannot be loaded ({why})"
            )));
        }
        let nvml = Nvml { lib };
        let init = symbol!(nvml, "nvmlInit_v2", extern "C" fn() -> c_int)
            .ok_or_else(|| NoDriver("libnvidia-ml.so.1 has no nvmlInit_v2: the driver is too old".into()))?;
        let rc = init();
        if rc != NVML_SUCCESS {
            // Not initialised: close without nvmlShutdown.
            // SAFETY: the handle is open and nothing of it is used after.
            unsafe { dlclose(nvml.lib) };
            std::mem::forget(nvml);
            return Err(NoDriver(format!(
                "the NVIDIA driver did not start NVML (error {rc}): is the kernel module loaded?"
            )));
        }
        Ok(nvml)
    }

    /// The driver's version (`550.54.14`).
    pub fn driver_version(&self) -> Option<String> {
        let get = symbol!(self, "nvmlSystemGetDriverVersion", extern "C" fn(*mut c_char, c_uint) -> c_int)?;
        let mut buf = [0 as c_char; 96];
        (get(buf.as_mut_ptr(), buf.len() as c_uint) == NVML_SUCCESS).then(|| text(&buf))
    }

    /// The highest CUDA version the driver runs, as NVML gives it (`12020`).
    pub fn cuda_driver_version(&self) -> Option<i32> {
        let get = symbol!(self, "nvmlSystemGetCudaDriverVersion_v2", extern "C" fn(*mut c_int) -> c_int)?;
        let mut v: c_int = 0;
        (get(&mut v) == NVML_SUCCESS && v > 0).then_some(v)
    }

    /// Every GPU, in NVML's order, with its processes.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>, String> {
        let count = symbol!(self, "nvmlDeviceGetCount_v2", extern "C" fn(*mut c_uint) -> c_int)
            .ok_or("NVML lacks nvmlDeviceGetCount_v2")?;
        let handle =
            symbol!(self, "nvmlDeviceGetHandleByIndex_v2", extern "C" fn(c_uint, *mut Device) -> c_int)
                .ok_or("NVML lacks nvmlDeviceGetHandleByIndex_v2")?;
        let uuid = symbol!(self, "nvmlDeviceGetUUID", extern "C" fn(Device, *mut c_char, c_uint) -> c_int);
        let name = symbol!(self, "nvmlDeviceGetName", extern "C" fn(Device, *mut c_char, c_uint) -> c_int);
        let memory = symbol!(self, "nvmlDeviceGetMemoryInfo", extern "C" fn(Device, *mut Memory) -> c_int);
        let util =
            symbol!(self, "nvmlDeviceGetUtilizationRates", extern "C" fn(Device, *mut Utilization) -> c_int);
        let cc = symbol!(
            self,
            "nvmlDeviceGetCudaComputeCapability",
            extern "C" fn(Device, *mut c_int, *mut c_int) -> c_int
        );
        let procs = symbol!(
            self,
            "nvmlDeviceGetComputeRunningProcesses_v3",
            extern "C" fn(Device, *mut c_uint, *mut ProcessInfo) -> c_int
        );
        let samples = symbol!(
            self,
            "nvmlDeviceGetProcessUtilization",
            extern "C" fn(Device, *mut ProcessSample, *mut c_uint, c_ulonglong) -> c_int
        );
        let mut n: c_uint = 0;
        let rc = count(&mut n);
        if rc != NVML_SUCCESS {
            return Err(format!("NVML could not count the GPUs (error {rc})"));
        }
        let mut out = Vec::new();
        for index in 0..n {
            let mut dev: Device = std::ptr::null_mut();
            if handle(index, &mut dev) != NVML_SUCCESS {
                continue;
            }
            let mut buf = [0 as c_char; 96];
            let uuid = uuid
                .filter(|f| f(dev, buf.as_mut_ptr(), buf.len() as c_uint) == NVML_SUCCESS)
                .map(|_| text(&buf));
            let mut buf = [0 as c_char; 96];
            let name = name
                .filter(|f| f(dev, buf.as_mut_ptr(), buf.len() as c_uint) == NVML_SUCCESS)
                .map(|_| text(&buf));
            let mut m = Memory::default();
            let has_memory = memory.is_some_and(|f| f(dev, &mut m) == NVML_SUCCESS);
            let mut u = Utilization::default();
            let has_util = util.is_some_and(|f| f(dev, &mut u) == NVML_SUCCESS);
            let (mut major, mut minor) = (0, 0);
            let compute_capability =
                cc.filter(|f| f(dev, &mut major, &mut minor) == NVML_SUCCESS).map(|_| (major, minor));
            let processes = procs.map(|f| running(f, dev)).unwrap_or_default();
            let busy = samples.and_then(|f| recent_samples(f, dev));
            out.push(DeviceInfo {
                index,
                uuid: uuid.unwrap_or_else(|| format!("GPU-index-{index}")),
                name: name.unwrap_or_else(|| "NVIDIA GPU".into()),
                memory_used: if has_memory { m.used } else { 0 },
                memory_total: if has_memory { m.total } else { 0 },
                utilization: if has_util { u.gpu } else { 0 },
                compute_capability,
                processes,
                busy,
            });
        }
        Ok(out)
    }
}

/// The compute processes on `dev`: pid and bytes of GPU memory.
fn running(f: extern "C" fn(Device, *mut c_uint, *mut ProcessInfo) -> c_int, dev: Device) -> Vec<(u32, u64)> {
    let mut infos = vec![ProcessInfo::default(); 64];
    for _ in 0..4 {
        let mut count = infos.len() as c_uint;
        match f(dev, &mut count, infos.as_mut_ptr()) {
            NVML_SUCCESS => {
                return infos[..(count as usize).min(infos.len())]
                    .iter()
                    .map(|p| (p.pid, p.used_gpu_memory))
                    .collect();
            }
            NVML_ERROR_INSUFFICIENT_SIZE => infos = vec![ProcessInfo::default(); count as usize + 16],
            _ => return Vec::new(),
        }
    }
    Vec::new()
}

/// The processes that ran kernels on `dev` in NVML's recent samples (pid, highest SM percent);
/// `None` where NVML keeps no per-process samples (older GPUs).
fn recent_samples(
    f: extern "C" fn(Device, *mut ProcessSample, *mut c_uint, c_ulonglong) -> c_int,
    dev: Device,
) -> Option<Vec<(u32, u32)>> {
    let mut samples = vec![ProcessSample::default(); 256];
    let mut count = samples.len() as c_uint;
    match f(dev, samples.as_mut_ptr(), &mut count, 0) {
        NVML_SUCCESS => {}
        // No sample in the buffer is an answer: nothing ran.
        NVML_ERROR_NOT_FOUND => return Some(Vec::new()),
        _ => return None,
    }
    let mut busy: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
    for s in &samples[..(count as usize).min(samples.len())] {
        let e = busy.entry(s.pid).or_default();
        *e = (*e).max(s.sm_util);
    }
    Some(busy.into_iter().filter(|(_, u)| *u > 0).collect())
}

fn text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Drop for Nvml {
    fn drop(&mut self) {
        if let Some(shutdown) = symbol!(self, "nvmlShutdown", extern "C" fn() -> c_int) {
            shutdown();
        }
        // SAFETY: the handle is open and nothing of it is used after.
        unsafe { dlclose(self.lib) };
    }
}
