//! Crash injection: a small `LD_PRELOAD` library (`faults/killshim.c`, compiled here with the
//! system's C compiler) that kills the process with SIGKILL at the Nth call of one libc function,
//! so a test can stop envctl at every rename, link, chmod or flush it makes and check what it
//! left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libc calls the shim can stop at.
pub const CALLS: &[&str] = &[
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "chmod",
    "fchmodat",
    "utimensat",
    "syncfs",
    "fsync",
    "flock",
    "write",
    "openat",
];

/// Compiles the shim into `dir` (once per directory) and returns the library's path.
pub fn build_shim(dir: &Path) -> PathBuf {
    let lib = dir.join("libenvctl-killshim.so");
    if lib.exists() {
        return lib;
    }
    let src = dir.join("killshim.c");
    std::fs::write(&src, include_str!("faults/killshim.c")).expect("write the shim's source");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| panic!("the crash tests need a C compiler (`{cc}`): {e}"));
    assert!(out.status.success(), "compiling the shim failed:\n{}", String::from_utf8_lossy(&out.stderr));
    lib
}

/// Runs `command` under the shim without killing it and returns how many times it made each call.
pub fn count_calls(
    mut command: Command,
    shim: &Path,
    scratch: &Path,
) -> std::collections::BTreeMap<String, u64> {
    let file = scratch.join(format!("counts-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let status =
        command.env("LD_PRELOAD", shim).env("ENVCTL_COUNT_FILE", &file).status().expect("run the command");
    assert!(status.success(), "the command to count failed");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let mut out = std::collections::BTreeMap::new();
    // Child processes append their counts too; add them up.
    for line in text.lines() {
        if let Some((name, n)) = line.split_once(' ') {
            *out.entry(name.to_owned()).or_default() += n.parse::<u64>().unwrap_or(0);
        }
    }
    out
}

/// Sets `command` up to be killed at the `at`th call of `call`.
pub fn kill_at(command: &mut Command, shim: &Path, call: &str, at: u64) {
    command.env("LD_PRELOAD", shim).env("ENVCTL_KILL_CALL", call).env("ENVCTL_KILL_AT", at.to_string());
}

/// A small seeded generator (splitmix64), so a failing run is reproduced from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
