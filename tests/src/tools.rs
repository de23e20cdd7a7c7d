//! Programs a test needs that a fresh machine may lack (zsh, fish, direnv, Lmod): found on PATH
//! or where their package puts them, else installed from the distribution's package registry
//! with its own client, once, under a lock shared by the test processes. A package that cannot be
//! installed beside another (Environment Modules beside Lmod) is unpacked into a directory of its
//! own instead. A test that cannot get its program fails saying why; it never skips.

use std::path::PathBuf;
use std::process::Command;

/// The path of `program`, installing the Debian package `package` when it is missing.
pub fn tool(program: &str, package: &str) -> PathBuf {
    installed(package, || which(program), &format!("`{program}`"))
}

/// The file `path` of the Debian package `package` (an init script, a library), installing the
/// package when the file is missing.
pub fn package_file(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    installed(package, || path.exists().then(|| path.clone()), &format!("`{}`", path.display()))
}

/// The file `path` (relative to `/`) of the Debian package `package`, unpacked (not installed)
/// into a directory of the test support's own under the temporary directory: for a package that
/// conflicts with one another test installs. Downloaded with `apt-get download`, which needs no
/// root, and unpacked with `dpkg-deb -x`, once.
pub fn unpacked_file(path: &str, package: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("envctl-testkit-debs").join(package);
    let file = dir.join("root").join(path);
    crate::prepare::once(
        "apt",
        || file.exists(),
        || {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the unpack directory");
            let who = format!("the tests of {package}");
            let run = |c: &mut Command, what: &str| crate::prepare::run(c, &who, what);
            run(
                Command::new("apt-get").args(["download", "-q", package]).current_dir(&dir),
                "`apt-get download`",
            );
            let deb = std::fs::read_dir(&dir)
                .expect("list the download")
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .unwrap_or_else(|| panic!("`apt-get download {package}` left no .deb"));
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.join("root")), "`dpkg-deb -x`");
        },
    );
    assert!(file.exists(), "the package {package} has no `{path}`");
    file
}

fn installed(package: &str, find: impl Fn() -> Option<PathBuf>, program: &str) -> PathBuf {
    crate::prepare::once(
        "apt",
        || find().is_some(),
        || {
            crate::prepare::run(
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends", package])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                &format!("the tests of {program}"),
                &format!("the package `{package}` (`apt-get install`)"),
            )
        },
    );
    find().unwrap_or_else(|| panic!("`apt-get install {package}` did not provide {program}"))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}
