//! A stand-in NVML for tests (`nvml/nvml.c`, compiled here with the system's C compiler as the
//! crash shim is): `libnvidia-ml.so.1` in a directory a test puts on `LD_LIBRARY_PATH`, reporting
//! the GPUs, memory, utilization and processes written in the file `ENVCTL_TEST_NVML` names.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles the stand-in into `dir/nvml/` (once per directory) and returns that directory.
pub fn build(dir: &Path) -> PathBuf {
    let out = dir.join("nvml");
    let lib = out.join("libnvidia-ml.so.1");
    if lib.exists() {
        return out;
    }
    std::fs::create_dir_all(&out).expect("create the stand-in's directory");
    let src = out.join("nvml.c");
    std::fs::write(&src, include_str!("nvml/nvml.c")).expect("write the stand-in's source");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("the GPU tests need a C compiler (`{cc}`): {e}"));
    assert!(
        built.status.success(),
        "compiling the stand-in NVML failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}
