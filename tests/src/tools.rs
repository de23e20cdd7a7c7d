//! Programs a test needs that a fresh machine may lack (zsh, fish): found on PATH, else installed
//! from the distribution's package registry with its own client, once, under a lock shared by the
//! test processes. A test that cannot get its program fails saying why; it never skips.

use std::path::PathBuf;
use std::process::Command;

/// The path of `program`, installing the Debian package `package` when it is missing.
pub fn tool(program: &str, package: &str) -> PathBuf {
    if let Some(found) = which(program) {
        return found;
    }
    let lock_path = std::env::temp_dir().join("envctl-testkit-apt.lock");
    let lock = std::fs::File::create(&lock_path).expect("create the install lock");
    lock.lock().expect("take the install lock");
    if let Some(found) = which(program) {
        return found;
    }
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "this test needs `{program}`; `apt-get install {package}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("this test needs `{program}`: install the package `{package}` (apt-get: {e})"),
    }
    which(program).unwrap_or_else(|| panic!("`apt-get install {package}` did not provide `{program}`"))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}
