//! A sandbox with a recipe repository of small packages served on 127.0.0.1, for the trust and
//! fault tests.

use std::path::PathBuf;

use envctl_testkit::{Archive, Entry, Server, sha256_hex};

use super::{Run, Sandbox};

/// A sandbox with a recipe repository of small packages served on 127.0.0.1.
pub struct Fixture {
    pub sb: Sandbox,
    pub server: Server,
    pub repo: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let sb = Sandbox::new();
        let repo = sb.path("recipes");
        std::fs::create_dir_all(&repo).unwrap();
        sb.config(&format!("recipes = [\"{}\"]", repo.display()));
        let f = Fixture { sb, server: Server::start(), repo };
        for (name, version) in [("hello", "1.0"), ("hello", "2.0"), ("world", "1.0")] {
            let a = Archive::new()
                .with(Entry::file_mode(
                    &format!("bin/{name}"),
                    format!("#!/bin/sh\necho {name} {version}\n"),
                    0o755,
                ))
                .with(Entry::file(&format!("share/{name}/version"), version));
            f.publish(name, version, &a.tar_gz(), "");
        }
        f
    }

    /// Serves `bytes` and writes the recipe `name version` with `extra` TOML lines.
    pub fn publish(&self, name: &str, version: &str, bytes: &[u8], extra: &str) -> String {
        let url = self.server.serve(&format!("/{name}-{version}.tar.gz"), bytes.to_vec());
        let sha = sha256_hex(bytes);
        std::fs::write(
            self.repo.join(format!("{name}-{version}.toml")),
            format!("name = \"{name}\"\nversion = \"{version}\"\n{extra}\n[[source]]\nurl = \"{url}\"\nsha256 = \"{sha}\"\n"),
        )
        .unwrap();
        sha
    }

    /// Serves a wheel's `bytes` and writes its recipe, naming it by URL; `deps` are recipe
    /// dependency lines.
    pub fn publish_wheel(&self, wheel: &envctl_testkit::python::Wheel, bytes: &[u8], deps: &str) {
        let url = self.server.serve(&format!("/wheels/{}", wheel.file_name()), bytes.to_vec());
        std::fs::write(
            self.repo.join(format!("{}-{}.toml", wheel.name, wheel.version)),
            format!(
                "name = \"{}\"\nversion = \"{}\"\n[dependencies]\n{deps}\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\n",
                wheel.name,
                wheel.version,
                sha256_hex(bytes)
            ),
        )
        .unwrap();
    }

    /// Writes a profile file `<name>.toml` in the sandbox and returns its path.
    pub fn profile(&self, name: &str, body: &str) -> String {
        let path = self.sb.path(&format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    }

    /// Publishes this machine's CPython `series` (see `python_archive`) as the recipe `python`;
    /// returns its full version.
    pub fn publish_python(&self, series: &str) -> String {
        self.publish_python_with(series, Vec::new())
    }

    /// [`Fixture::publish_python`] with `extra` entries in the interpreter's archive.
    pub fn publish_python_with(&self, series: &str, extra: Vec<Entry>) -> String {
        let (bytes, version) = envctl_testkit::python::python_archive_with(series, extra);
        let url = self.server.serve(&format!("/python-{version}.tar.zst"), bytes.clone());
        std::fs::write(
            self.repo.join(format!("python-{version}.toml")),
            format!(
                "name = \"python\"\nversion = \"{version}\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\n",
                sha256_hex(&bytes)
            ),
        )
        .unwrap();
        version
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.sb.run(args)
    }

    pub fn profiles_dir(&self) -> PathBuf {
        self.sb.path("envctl/profiles")
    }
}

/// Every path under `dir`, depth first.
pub fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            out.push(p.clone());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                out.extend(walk(&p));
            }
        }
    }
    out
}
