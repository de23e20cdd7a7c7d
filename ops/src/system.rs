//! System-fact detection, without linking to anything NVIDIA ships, and overrides.
//!
//! Precedence, lowest first: detected, the profile's `[system]`, `ENVCTL_SYSTEM_*` variables,
//! `--system FILE`.
//!
//! - driver: `/sys/module/nvidia/version`, then `/proc/driver/nvidia/version`, then `nvidia-smi`;
//! - highest CUDA: NVML (`libnvidia-ml.so.1`, `nvmlSystemGetCudaDriverVersion_v2`) loaded at run
//!   time, else derived from the driver with NVIDIA's table (`envctl_recipes::CUDA_DRIVER_TABLE`);
//! - GPU compute capabilities: `nvidia-smi --query-gpu=compute_cap`;
//! - glibc: `gnu_get_libc_version()`; arch: the one this binary was built for.
//!
//! No GPU and no driver are normal answers, not errors.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use envctl_recipes::{SystemFacts, SystemOverrides, Version, cuda_for_driver};

use crate::error::{Failure, Result};

/// The driver and where it was read, detected once per process.
fn driver() -> Option<&'static (Version, String)> {
    static DRIVER: OnceLock<Option<(Version, String)>> = OnceLock::new();
    DRIVER.get_or_init(detect_driver).as_ref()
}

/// Which facts to detect: those no override sets.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    driver: bool,
    cuda: bool,
    sm: bool,
    glibc: bool,
    arch: bool,
}

/// Detects the facts `wanted` asks for, and nothing else: reading the driver can mean running
/// `nvidia-smi`, which no override should pay for.
fn detect(wanted: Wanted, driver_overridden_to_some: bool) -> SystemFacts {
    let mut facts = SystemFacts::default();
    if wanted.driver {
        if let Some((driver, origin)) = driver() {
            facts.driver = Some(driver.clone());
            facts.origin.insert("driver", origin.clone());
        } else {
            facts.origin.insert("driver", "no NVIDIA kernel module or nvidia-smi found".into());
        }
    }
    if wanted.cuda
        && let Some((driver, _)) = driver()
    {
        if let Some(cuda) = nvml_cuda_version() {
            facts.cuda = Some(cuda);
            facts.origin.insert("cuda", "NVML".into());
        } else if let Some(cuda) = cuda_for_driver(driver) {
            facts.cuda = Some(cuda);
            facts.origin.insert("cuda", "derived from the driver version".into());
        }
    }
    if wanted.sm && (driver_overridden_to_some || (wanted.driver && driver().is_some())) {
        let sm = nvidia_smi(&["--query-gpu=compute_cap", "--format=csv,noheader"])
            .map(|out| out.lines().filter_map(|l| Version::parse(l.trim()).ok()).collect::<Vec<_>>())
            .unwrap_or_default();
        if !sm.is_empty() {
            facts.sm = sm;
            facts.origin.insert("sm", "nvidia-smi".into());
        }
    }
    if wanted.glibc
        && let Some(glibc) = glibc_version()
    {
        facts.glibc = Some(glibc);
        facts.origin.insert("glibc", "gnu_get_libc_version()".into());
    }
    if wanted.arch {
        facts.arch = Some(std::env::consts::ARCH.to_owned());
        facts.origin.insert("arch", "this build of envctl".into());
    }
    facts
}

fn detect_driver() -> Option<(Version, String)> {
    for path in ["/sys/module/nvidia/version", "/proc/driver/nvidia/version"] {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(v) = parse_driver_text(&text)
        {
            return Some((v, path.to_owned()));
        }
    }
    let out = nvidia_smi(&["--query-gpu=driver_version", "--format=csv,noheader"])?;
    let v = Version::parse(out.lines().next()?.trim()).ok()?;
    Some((v, "nvidia-smi".into()))
}

/// The driver version from `/sys/module/nvidia/version` ("535.104.05") or the first line of
/// `/proc/driver/nvidia/version` ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  …").
pub fn parse_driver_text(text: &str) -> Option<Version> {
    let first = text.lines().next()?;
    first
        .split_whitespace()
        .filter(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .find_map(|w| Version::parse(w).ok())
}

fn nvidia_smi(args: &[&str]) -> Option<String> {
    let out = Command::new("nvidia-smi").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn glibc_version() -> Option<Version> {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    let raw = unsafe { CStr::from_ptr(gnu_get_libc_version()) };
    Version::parse(raw.to_str().ok()?).ok()
}

unsafe extern "C" {
    fn gnu_get_libc_version() -> *const c_char;
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
}

const RTLD_NOW: c_int = 2;

/// Asks NVML for the highest CUDA version the driver supports (e.g. 12020 → 12.2).
fn nvml_cuda_version() -> Option<Version> {
    // SAFETY: dlopen/dlsym are given NUL-terminated names; the symbols are called with the
    // signatures NVML documents (`nvmlReturn_t nvmlInit_v2(void)`,
    // `nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int*)`, `nvmlReturn_t nvmlShutdown(void)`),
    // and the library is closed after the last call.
    unsafe {
        let lib = dlopen(c"libnvidia-ml.so.1".as_ptr(), RTLD_NOW);
        if lib.is_null() {
            return None;
        }
        let init = dlsym(lib, c"nvmlInit_v2".as_ptr());
        let get = dlsym(lib, c"nvmlSystemGetCudaDriverVersion_v2".as_ptr());
        let shutdown = dlsym(lib, c"nvmlShutdown".as_ptr());
        let mut result = None;
        if !init.is_null() && !get.is_null() && !shutdown.is_null() {
            let init: extern "C" fn() -> c_int = std::mem::transmute(init);
            let get: extern "C" fn(*mut c_int) -> c_int = std::mem::transmute(get);
            let shutdown: extern "C" fn() -> c_int = std::mem::transmute(shutdown);
            if init() == 0 {
                let mut v: c_int = 0;
                if get(&mut v) == 0 && v > 0 {
                    result = Version::parse(&format!("{}.{}", v / 1000, (v % 1000) / 10)).ok();
                }
                shutdown();
            }
        }
        dlclose(lib);
        result
    }
}

/// Overrides from `ENVCTL_SYSTEM_*`. An empty `ENVCTL_SYSTEM_DRIVER` means "no driver".
pub fn env_overrides() -> Result<SystemOverrides> {
    let var = |name: &str| std::env::var(name).ok();
    let parse = |name: &str, v: &str| {
        Version::parse(v).map_err(|e| {
            Failure::new(format!("invalid {name}"), e)
                .hint(format!("unset {name}, or give a version such as 535.104.05"))
        })
    };
    let mut o = SystemOverrides::default();
    if let Some(d) = var("ENVCTL_SYSTEM_DRIVER") {
        o.driver = Some(if d.is_empty() { None } else { Some(parse("ENVCTL_SYSTEM_DRIVER", &d)?) });
    }
    if let Some(c) = var("ENVCTL_SYSTEM_CUDA").filter(|c| !c.is_empty()) {
        o.cuda = Some(parse("ENVCTL_SYSTEM_CUDA", &c)?);
    }
    if let Some(s) = var("ENVCTL_SYSTEM_SM") {
        o.sm = Some(
            s.split(',')
                .filter(|x| !x.trim().is_empty())
                .map(|x| parse("ENVCTL_SYSTEM_SM", x.trim()))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    if let Some(g) = var("ENVCTL_SYSTEM_GLIBC").filter(|g| !g.is_empty()) {
        o.glibc = Some(parse("ENVCTL_SYSTEM_GLIBC", &g)?);
    }
    if let Some(a) = var("ENVCTL_SYSTEM_ARCH").filter(|a| !a.is_empty()) {
        o.arch = Some(a);
    }
    Ok(o)
}

/// The origin of a fact a profile file's `[system]` sets.
pub const PROFILE_ORIGIN: &str = "the profile's [system]";

/// Detected facts with every override applied, in precedence order. Only facts no override
/// sets are detected.
pub fn facts(profile: Option<&SystemOverrides>, system_file: Option<&Path>) -> Result<SystemFacts> {
    layered(profile, system_file, false)
}

/// The platform sources are chosen by (`linux-x86_64`), with the overrides applied: all a lock's
/// request hash needs, so an unchanged profile is recognised without detecting anything else.
pub fn platform(profile: Option<&SystemOverrides>, system_file: Option<&Path>) -> Result<String> {
    Ok(layered(profile, system_file, true)?.platform())
}

fn layered(
    profile: Option<&SystemOverrides>,
    system_file: Option<&Path>,
    arch_only: bool,
) -> Result<SystemFacts> {
    let env = env_overrides()?;
    let file = system_file
        .map(|path| {
            SystemOverrides::load(path)
                .map(|o| (o, path))
                .map_err(|e| Failure::new("cannot read the --system file", e))
        })
        .transpose()?;
    let layers: Vec<&SystemOverrides> =
        profile.into_iter().chain([&env]).chain(file.as_ref().map(|(o, _)| o)).collect();
    let set = |fact: fn(&SystemOverrides) -> bool| layers.iter().any(|o| fact(o));
    // The last layer that sets the driver decides whether there is one to ask about GPUs.
    let overridden_driver = layers.iter().rev().find_map(|o| o.driver.as_ref());
    let wanted = Wanted {
        driver: overridden_driver.is_none() && !arch_only,
        // A driver set by an override brings its CUDA version from the table when none is set.
        cuda: !set(|o| o.cuda.is_some()) && overridden_driver.is_none() && !arch_only,
        sm: !set(|o| o.sm.is_some()) && !arch_only,
        glibc: !set(|o| o.glibc.is_some()) && !arch_only,
        arch: !set(|o| o.arch.is_some()),
    };
    let mut facts = detect(wanted, overridden_driver.is_some_and(Option::is_some) && !arch_only);
    if let Some(p) = profile {
        p.apply(&mut facts, PROFILE_ORIGIN);
    }
    env.apply_with(&mut facts, |key| format!("ENVCTL_SYSTEM_{}", key.to_ascii_uppercase()));
    if let Some((o, path)) = &file {
        o.apply(&mut facts, &format!("--system {}", path.display()));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    #[test]
    fn driver_versions_are_read_from_both_kernel_files() {
        let v = super::parse_driver_text("535.104.05\n").unwrap();
        assert_eq!(v.to_string(), "535.104.05");
        let proc = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.57.02  Tue Jul 13 16:14:05 UTC 2021\nGCC version:  gcc version 9.3.0\n";
        assert_eq!(super::parse_driver_text(proc).unwrap().to_string(), "470.57.02");
        assert!(super::parse_driver_text("garbage\n").is_none());
    }
}
