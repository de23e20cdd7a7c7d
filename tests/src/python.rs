//! Python fixtures: wheels with the real layout (a `.dist-info` with `WHEEL`, `METADATA`,
//! `entry_points.txt` and `RECORD`, `.data/` schemes, a platform tag), and this machine's
//! CPython packed as a relocatable package archive.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use sha2::Digest;

use crate::{Archive, Entry};

/// A wheel under construction.
#[derive(Debug, Clone)]
pub struct Wheel {
    pub name: String,
    pub version: String,
    /// `py3-none-any`, `cp311-cp311-manylinux_2_17_x86_64`, …
    pub tag: String,
    files: Vec<(String, Vec<u8>, u32)>,
    entry_points: String,
    requires: Vec<String>,
}

impl Wheel {
    pub fn new(name: &str, version: &str, tag: &str) -> Wheel {
        Wheel {
            name: name.to_owned(),
            version: version.to_owned(),
            tag: tag.to_owned(),
            files: Vec::new(),
            entry_points: String::new(),
            requires: Vec::new(),
        }
    }

    /// A file at `path` of the archive (`pkg/__init__.py`, `x-1.0.data/scripts/tool`).
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>) -> Wheel {
        self.files.push((path.to_owned(), data.into(), 0o644));
        self
    }

    /// A `console_scripts` entry point.
    pub fn console_script(mut self, name: &str, target: &str) -> Wheel {
        if self.entry_points.is_empty() {
            self.entry_points.push_str("[console_scripts]\n");
        }
        self.entry_points.push_str(&format!("{name} = {target}\n"));
        self
    }

    /// A `Requires-Dist` line of METADATA.
    pub fn requires(mut self, req: &str) -> Wheel {
        self.requires.push(req.to_owned());
        self
    }

    /// The distribution name as file names spell it.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.name.replace('-', "_"), self.version)
    }

    /// `NAME-VERSION-TAG.whl`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.whl", self.stem(), self.tag)
    }

    /// The `.data` directory name.
    pub fn data_dir(&self) -> String {
        format!("{}.data", self.stem())
    }

    /// The wheel's bytes, with a correct RECORD; `tamper` changes one file after RECORD is
    /// written.
    pub fn build_with(&self, tamper: Option<(&str, &[u8])>) -> Vec<u8> {
        let info = format!("{}.dist-info", self.stem());
        let mut files = self.files.clone();
        let mut metadata = format!("Metadata-Version: 2.1\nName: {}\nVersion: {}\n", self.name, self.version);
        let mut extras: Vec<&str> =
            self.requires.iter().filter_map(|r| r.split("extra == \"").nth(1)?.split('"').next()).collect();
        extras.dedup();
        for e in extras {
            metadata.push_str(&format!("Provides-Extra: {e}\n"));
        }
        for r in &self.requires {
            metadata.push_str(&format!("Requires-Dist: {r}\n"));
        }
        files.push((format!("{info}/METADATA"), metadata.into_bytes(), 0o644));
        let pure = self.tag.ends_with("-none-any");
        files.push((
            format!("{info}/WHEEL"),
            format!(
                "Wheel-Version: 1.0\nGenerator: envctl-tests\nRoot-Is-Purelib: {pure}\nTag: {}\n",
                self.tag
            )
            .into_bytes(),
            0o644,
        ));
        if !self.entry_points.is_empty() {
            files.push((format!("{info}/entry_points.txt"), self.entry_points.clone().into_bytes(), 0o644));
        }
        let mut record = String::new();
        for (path, data, _) in &files {
            let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
            record.push_str(&format!("{path},sha256={hash},{}\n", data.len()));
        }
        record.push_str(&format!("{info}/RECORD,,\n"));
        files.push((format!("{info}/RECORD"), record.into_bytes(), 0o644));
        if let Some((path, data)) = tamper {
            let f = files.iter_mut().find(|f| f.0 == path).expect("tampered file exists");
            f.1 = data.to_vec();
        }
        let mut archive = Archive::new();
        for (path, data, mode) in files {
            archive = archive.with(Entry::file_mode(&path, data, mode));
        }
        archive.zip()
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_with(None)
    }
}

/// This machine's CPython `series` (`3.11`): its full version and its installation prefix,
/// found on PATH or among pyenv's versions. Panics, saying what is missing, if there is none.
pub fn find_python(series: &str) -> (String, PathBuf) {
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from(format!("python{series}"))];
    if let Ok(rd) = std::fs::read_dir("/root/.pyenv/versions") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&format!("{series}.")) {
                candidates.push(e.path().join(format!("bin/python{series}")));
            }
        }
    }
    candidates.push(PathBuf::from(format!("/usr/bin/python{series}")));
    for exe in candidates {
        let out = std::process::Command::new(&exe)
            .args(["-c", "import sys, platform; print(platform.python_version()); print(sys.base_prefix)"])
            .output();
        if let Ok(out) = out
            && out.status.success()
        {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut lines = text.lines();
            let version = lines.next().unwrap_or_default().to_owned();
            let prefix = PathBuf::from(lines.next().unwrap_or_default());
            if version.starts_with(series) && prefix.join(format!("bin/python{series}")).is_file() {
                return (version, prefix);
            }
        }
    }
    panic!(
        "these tests need CPython {series} (python{series} on PATH, or a pyenv version): install it, e.g. `pyenv install {series}`"
    );
}

/// CPython `series` packed as a package archive (tar.zst): `bin/python3.X`, `bin/python3`,
/// `lib/libpython*`, and `lib/python3.X` without `site-packages` and the test suites. Built once
/// per process. Returns the archive and the full version.
pub fn python_archive(series: &str) -> (Vec<u8>, String) {
    let (archive, version) = python_package(series);
    (archive.tar_zst(), version)
}

/// [`python_archive`] with `extra` entries after the interpreter's own.
pub fn python_archive_with(series: &str, extra: Vec<Entry>) -> (Vec<u8>, String) {
    let (mut archive, version) = python_package(series);
    for e in extra {
        archive = archive.with(e);
    }
    (archive.tar_zst(), version)
}

/// The interpreter `exe` of the installation at `prefix` with its run path (`RUNPATH`
/// `PREFIX/lib`, as pyenv builds it) made relative, `$ORIGIN/../lib`, in place (the new string
/// is shorter; the rest of its slot is filled with NULs): packed and unpacked elsewhere, it
/// loads the `libpython` it ships, not the one it was built beside, which another user (or a
/// build sandbox) cannot see.
fn relocatable(mut exe: Vec<u8>, prefix: &Path) -> Vec<u8> {
    let old = format!("{}/lib\0", prefix.display()).into_bytes();
    let new = b"$ORIGIN/../lib\0";
    if let Some(at) = exe.windows(old.len()).position(|w| w == old.as_slice())
        && old.len() >= new.len()
    {
        exe[at..at + new.len()].copy_from_slice(new);
        exe[at + new.len()..at + old.len()].fill(0);
    }
    exe
}

/// The entries of [`python_archive`], read from this machine once per process.
fn python_package(series: &str) -> (Archive, String) {
    /// (series, entries, full version)
    type Packed = (String, Archive, String);
    static CACHE: OnceLock<Mutex<Vec<Packed>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap();
    if let Some((_, archive, version)) = cache.iter().find(|(s, _, _)| s == series) {
        return (archive.clone(), version.clone());
    }
    let (version, prefix) = find_python(series);
    let mut archive = Archive::new();
    let exe = relocatable(std::fs::read(prefix.join(format!("bin/python{series}"))).unwrap(), &prefix);
    archive = archive
        .with(Entry::file_mode(&format!("bin/python{series}"), exe, 0o755))
        .with(Entry::symlink("bin/python3", &format!("python{series}")));
    for e in std::fs::read_dir(prefix.join("lib")).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("libpython") && !n.ends_with(".a") && e.file_type().unwrap().is_file() {
            archive = archive.with(Entry::file(&format!("lib/{n}"), std::fs::read(e.path()).unwrap()));
        }
    }
    let skip = [
        "site-packages",
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "lib2to3",
        "ensurepip",
        "turtledemo",
        "pydoc_data",
    ];
    fn add(archive: &mut Archive, dir: &Path, rel: &str, skip: &[&str]) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if skip.contains(&n.as_str()) || n.starts_with("config-") {
                continue;
            }
            let ft = e.file_type().unwrap();
            let path = format!("{rel}/{n}");
            if ft.is_dir() {
                add(archive, &e.path(), &path, skip);
            } else if ft.is_file() {
                let mode = if n.ends_with(".so") { 0o755 } else { 0o644 };
                let taken = std::mem::take(archive);
                *archive = taken.with(Entry::file_mode(&path, std::fs::read(e.path()).unwrap(), mode));
            }
        }
    }
    add(&mut archive, &prefix.join(format!("lib/python{series}")), &format!("lib/python{series}"), &skip);
    cache.push((series.to_owned(), archive.clone(), version.clone()));
    (archive, version)
}

/// Serves `wheels` as a simple repository (PEP 503) under `/simple/` of `server`: one project
/// page per distribution, as `text/html`, linking to the files under `/files/`. Returns the
/// index URL (`…/simple`).
pub fn serve_simple_index(server: &crate::Server, wheels: &[(&Wheel, &[u8])]) -> String {
    let mut projects: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (wheel, bytes) in wheels {
        let file = wheel.file_name();
        server.serve(&format!("/files/{file}"), bytes.to_vec());
        let project = wheel.name.to_ascii_lowercase().replace(['_', '.'], "-");
        projects.entry(project).or_default().push(format!(
            "<a href=\"../../files/{file}#sha256={}\">{file}</a><br/>",
            crate::sha256_hex(bytes)
        ));
    }
    for (project, links) in projects {
        let body = format!("<!DOCTYPE html>\n<html><body>\n{}\n</body></html>\n", links.join("\n"));
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        server.set(&format!("/simple/{project}/"), crate::Reply::Raw(raw.into_bytes()));
    }
    server.url("/simple")
}

/// Serves `wheels` as a simple repository in its JSON form (PEP 691, with PEP 700's `size`)
/// under `/json/` of `server`, the files under `/files/`. Returns the index URL (`…/json`).
pub fn serve_json_index(server: &crate::Server, wheels: &[(&Wheel, &[u8])]) -> String {
    let mut projects: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for (wheel, bytes) in wheels {
        let file = wheel.file_name();
        server.serve(&format!("/files/{file}"), bytes.to_vec());
        let project = wheel.name.to_ascii_lowercase().replace(['_', '.'], "-");
        projects.entry(project).or_default().push(serde_json::json!({
            "filename": file,
            "url": format!("../../files/{file}"),
            "hashes": { "sha256": crate::sha256_hex(bytes) },
            "size": bytes.len(),
        }));
    }
    for (project, files) in projects {
        let body = serde_json::json!({ "meta": { "api-version": "1.1" }, "name": project, "files": files })
            .to_string();
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.pypi.simple.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        server.set(&format!("/json/{project}/"), crate::Reply::Raw(raw.into_bytes()));
    }
    server.url("/json")
}
