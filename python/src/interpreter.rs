//! An installed CPython (pyenv's, a distribution's, a site build) made into a package that runs
//! wherever it is unpacked: `envctl import python PATH --out DIR`.
//!
//! A CPython built with a shared `libpython` finds it through its executable's run path, which
//! pyenv and most site builds set to the installation's own absolute `PREFIX/lib`. Unpacked
//! anywhere else that path leads nowhere (the interpreter does not start), or, worse, to another
//! installation's library: a 3.11.7 standard library running on a system's 3.11.2. So each ELF
//! object of the package (the interpreter, `libpython`, the extension modules of `lib-dynload`)
//! has its run path entries into the prefix rewritten relative to itself (`$ORIGIN/../lib`), in
//! place: the new string is shorter, and the rest of its slot is filled with NULs. An entry that
//! names a directory outside the prefix, or one whose relative form does not fit, is refused with
//! the file and the entry. Then the package is unpacked into a scratch directory elsewhere and its
//! interpreter run there with an empty environment: it must report the same `sys.version` (the
//! same build, so its own `libpython`) and the new directory as its prefix, or the import is
//! refused with what it printed.
//!
//! The package holds `bin/pythonX.Y` (and `bin/python3` linking to it), the shared `libpython`,
//! and `lib/pythonX.Y` without `site-packages`, the test suites, IDLE, tkinter, `ensurepip`,
//! `config-*` and bytecode (envctl compiles its own, the same on every machine). Its version is
//! the interpreter's own (`platform.python_version()`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the interpreter says of itself.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// `3.11.7`.
    pub version: String,
    /// `3.11`.
    pub series: String,
    /// `sys.base_prefix`: the installation.
    pub prefix: PathBuf,
    /// `sys.version`: the build, which a copy must report too.
    pub build: String,
}

/// Run path entries rewritten: (file in the package, old entry, new entry).
pub type Rewritten = Vec<(String, String, String)>;

/// The package written for one interpreter.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The interpreter.
    pub interpreter: Interpreter,
    /// The archive (`DIR/artifacts/python-3.11.7.tar.zst`).
    pub archive: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// The recipe (`DIR/python/3.11.7.toml`).
    pub recipe: PathBuf,
    /// Run path entries rewritten.
    pub rewritten: Rewritten,
}

/// Directories of the standard library left out of the package.
const SKIP: &[&str] =
    &["site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__"];

/// Asks the interpreter at `path` (an executable, or an installation's directory) about itself.
pub fn inspect(path: &Path) -> Result<Interpreter, String> {
    let exe = if path.is_dir() { path.join("bin/python3") } else { path.to_path_buf() };
    let out = Command::new(&exe)
        .args(["-I", "-c", "import platform, sys; print(platform.python_version()); print(sys.base_prefix); print('%d.%d' % sys.version_info[:2]); print(sys.version.replace(chr(10), ' '))"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` did not answer as a Python interpreter: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let (Some(version), Some(prefix), Some(series), Some(build)) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(format!("`{}` answered something else: {text}", exe.display()));
    };
    if !series.starts_with("3.") {
        return Err(format!("`{}` is Python {version}; envctl packages CPython 3", exe.display()));
    }
    Ok(Interpreter {
        version: version.to_owned(),
        series: series.to_owned(),
        prefix: PathBuf::from(prefix),
        build: build.to_owned(),
    })
}

/// One file of the package: its path inside, and what it is. Files are read when packed, one
/// at a time: the package is streamed to its archive, never held whole.
enum Item {
    /// A file copied from `source`; an ELF object's run path is made relative on the way.
    File {
        source: PathBuf,
        mode: u32,
        elf: bool,
    },
    Symlink(String),
    Dir,
}

/// Packs the interpreter at `path` into `out` (an archive under `artifacts/` and a recipe under
/// `python/`), or says why it cannot be made relocatable.
pub fn import(path: &Path, out: &Path, scratch: &Path) -> Result<Imported, String> {
    let i = inspect(path)?;
    let exe_name = format!("python{}", i.series);
    let exe = i.prefix.join("bin").join(&exe_name);
    let mut items: Vec<(String, Item)> = Vec::new();
    // The interpreter (the real file behind any links).
    let real = std::fs::canonicalize(&exe).map_err(|e| format!("cannot find `{}`: {e}", exe.display()))?;
    items.push(("bin".into(), Item::Dir));
    items.push((format!("bin/{exe_name}"), Item::File { source: real, mode: 0o755, elf: true }));
    items.push(("bin/python3".into(), Item::Symlink(exe_name.clone())));
    // The shared library, if it is one.
    items.push(("lib".into(), Item::Dir));
    let lib = i.prefix.join("lib");
    let mut libs: Vec<_> = std::fs::read_dir(&lib)
        .map_err(|e| format!("cannot list `{}`: {e}", lib.display()))?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("libpython") && n.contains(".so")
        })
        .collect();
    libs.sort_by_key(|e| e.file_name());
    for e in libs {
        let name = format!("lib/{}", e.file_name().to_string_lossy());
        let meta = std::fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(|e| e.to_string())?;
            items.push((name, Item::Symlink(target.display().to_string())));
        } else {
            items.push((name, Item::File { source: e.path(), mode: 0o755, elf: true }));
        }
    }
    // The standard library.
    let stdlib = format!("lib/python{}", i.series);
    walk(&i.prefix, &stdlib, &mut items)?;
    items.sort_by(|a, b| a.0.cmp(&b.0));

    let artifacts = out.join("artifacts");
    let recipes = out.join("python");
    for d in [&artifacts, &recipes] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create `{}`: {e}", d.display()))?;
    }
    // Packed beside where it goes, under a name nobody reads, and checked there: only a package
    // whose copy runs is renamed into place.
    let archive = artifacts.join(format!("python-{}.tar.zst", i.version));
    let packing = artifacts.join(format!(".python-{}.tar.zst.tmp{}", i.version, std::process::id()));
    let packed = pack(&items, &i.prefix, &packing).and_then(|(sha256, rewritten)| {
        check_moved(&packing, &i, scratch)?;
        std::fs::rename(&packing, &archive)
            .map_err(|e| format!("cannot write `{}`: {e}", archive.display()))?;
        Ok((sha256, rewritten))
    });
    let (sha256, rewritten) = packed.inspect_err(|_| {
        let _ = std::fs::remove_file(&packing);
    })?;
    let recipe = recipes.join(format!("{}.toml", i.version));
    let mut made = envctl_recipes::import::recipe("python", &i.version)?;
    made.summary = format!("CPython {} packed from this machine's installation, relocatable", i.version);
    made.sources.push(envctl_recipes::import::source(
        format!("../artifacts/python-{}.tar.zst", i.version),
        &sha256,
        envctl_core::Unpack { format: Some(envctl_core::Format::TarZst), ..Default::default() },
    ));
    let comments = envctl_recipes::Comments {
        header: vec![format!(
            "Written by `envctl import python` from {} ({}).",
            i.prefix.display(),
            i.build.split(' ').next().unwrap_or(&i.version)
        )],
        ..Default::default()
    };
    let text = made.to_toml(&comments);
    envctl_store::write_atomically(&recipe, |f| Ok(std::io::Write::write_all(f, text.as_bytes())?))
        .map_err(|e| format!("cannot write `{}`: {e}", recipe.display()))?;
    Ok(Imported { interpreter: i, archive, sha256, recipe, rewritten })
}

fn walk(prefix: &Path, rel: &str, items: &mut Vec<(String, Item)>) -> Result<(), String> {
    let dir = prefix.join(rel);
    items.push((rel.to_owned(), Item::Dir));
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if SKIP.contains(&name.as_str()) || name.starts_with("config-") || name.ends_with(".pyc") {
            continue;
        }
        let path = format!("{rel}/{name}");
        let ft = e.file_type().map_err(|e| e.to_string())?;
        if ft.is_dir() {
            walk(prefix, &path, items)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(|e| e.to_string())?;
            // A link that stays in its directory's tree is kept; one that leaves it (Debian's
            // `sitecustomize.py` -> `/etc/python3.11/sitecustomize.py`) is replaced by the file
            // it names, which a copy on another machine would not find.
            if stays_inside(&target) {
                items.push((path, Item::Symlink(target.display().to_string())));
                continue;
            }
            let real = std::fs::canonicalize(e.path()).ok().filter(|r| r.is_file()).ok_or_else(|| {
                format!(
                    "`{path}` is a link to `{}`, outside the installation, and not to a file that could be copied in its place",
                    target.display()
                )
            })?;
            items.push((path, Item::File { source: real, mode: 0o644, elf: false }));
        } else if ft.is_file() {
            let so = name.ends_with(".so") || name.contains(".so.");
            items
                .push((path, Item::File { source: e.path(), mode: if so { 0o755 } else { 0o644 }, elf: so }));
        }
    }
    Ok(())
}

/// Whether a link's target stays in the link's own directory or below it.
fn stays_inside(target: &Path) -> bool {
    target.is_relative()
        && !target
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::RootDir))
}

/// Rewrites the run path of the ELF object `bytes` (at `rel` in the package) so that each entry
/// into `prefix` is relative to the object; refuses an entry outside it, or one whose relative
/// form does not fit in its place. Not an ELF object, or one without a run path: unchanged.
pub fn relocate(bytes: &mut [u8], rel: &str, prefix: &Path, rewritten: &mut Rewritten) -> Result<(), String> {
    let Some((offset, old)) = run_path_slot(bytes) else { return Ok(()) };
    let here = Path::new(rel).parent().unwrap_or(Path::new(""));
    let mut new = Vec::new();
    for entry in old.split(':').filter(|e| !e.is_empty()) {
        if entry.starts_with("$ORIGIN") || entry.starts_with("${ORIGIN}") {
            new.push(entry.to_owned());
            continue;
        }
        let target = Path::new(entry);
        let Ok(inside) = target.strip_prefix(prefix) else {
            return Err(format!(
                "`{rel}` looks for libraries in `{entry}`, outside the installation `{}`: a copy would need that directory on every machine (rebuild without it, or install what it holds beside the interpreter)",
                prefix.display()
            ));
        };
        let up = pathdiff::diff_paths(inside, here).unwrap_or_else(|| inside.to_path_buf());
        let text = up.display().to_string();
        new.push(if text.is_empty() { "$ORIGIN".to_owned() } else { format!("$ORIGIN/{text}") });
    }
    let new = new.join(":");
    if new == old {
        return Ok(());
    }
    if new.len() > old.len() {
        return Err(format!(
            "`{rel}`'s run path `{old}` would become `{new}`, which does not fit in its place ({} bytes for {}); rebuild the interpreter with LDFLAGS='-Wl,-rpath,$ORIGIN/../lib'",
            old.len(),
            new.len()
        ));
    }
    let slot = &mut bytes[offset..offset + old.len()];
    slot.fill(0);
    slot[..new.len()].copy_from_slice(new.as_bytes());
    rewritten.push((rel.to_owned(), old, new));
    Ok(())
}

/// Where the run path string of an ELF object sits in `bytes` (`DT_RUNPATH`, else `DT_RPATH`),
/// and what it says.
fn run_path_slot(bytes: &[u8]) -> Option<(usize, String)> {
    use object::read::elf::{Dyn, FileHeader, SectionHeader};
    use object::{Endianness, elf};
    if bytes.len() < 16 || bytes[..4] != elf::ELFMAG || bytes[4] != elf::ELFCLASS64 {
        return None;
    }
    let header = elf::FileHeader64::<Endianness>::parse(bytes).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, bytes).ok()?;
    let (dynamic, link) = sections.dynamic(endian, bytes).ok()??;
    let strtab = sections.section(link).ok()?;
    let base = strtab.sh_offset(endian) as usize;
    let strings = sections.strings(endian, bytes, link).ok()?;
    let (mut runpath, mut rpath) = (None, None);
    for entry in dynamic {
        match entry.tag32(endian) {
            Some(elf::DT_RUNPATH) => runpath = entry.val32(endian),
            Some(elf::DT_RPATH) => rpath = entry.val32(endian),
            _ => {}
        }
    }
    let at = runpath.or(rpath)?;
    let text = String::from_utf8_lossy(strings.get(at).ok()?).into_owned();
    Some((base + at as usize, text))
}

/// Streams the package to `dest` as a tar.zst, the same bytes for the same files (sorted, owner
/// 0, time 0), making each ELF object's run paths into `prefix` relative on the way (see
/// [`relocate`]). Gives the archive's sha256 and the run paths rewritten.
fn pack(items: &[(String, Item)], prefix: &Path, dest: &Path) -> Result<(String, Rewritten), String> {
    use sha2::Digest;
    /// The archive's bytes on their way to disk, hashed as they pass.
    struct Hashing {
        file: std::fs::File,
        hash: sha2::Sha256,
    }
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.file.write(buf)?;
            self.hash.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }
    let io = |e: std::io::Error| format!("cannot write `{}`: {e}", dest.display());
    let file = std::fs::File::create(dest).map_err(io)?;
    let encoder = zstd::Encoder::new(Hashing { file, hash: sha2::Sha256::new() }, 10).map_err(io)?;
    let mut tar = tar::Builder::new(encoder);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut rewritten = Vec::new();
    for (path, item) in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let done = match item {
            Item::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, format!("{path}/"), std::io::empty())
            }
            Item::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, path, target)
            }
            Item::File { source, mode, elf } => {
                let read = |e: std::io::Error| format!("cannot read `{}`: {e}", source.display());
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                if *elf {
                    // Its run path is patched in memory: one object at a time.
                    let mut bytes = std::fs::read(source).map_err(read)?;
                    relocate(&mut bytes, path, prefix, &mut rewritten)?;
                    h.set_size(bytes.len() as u64);
                    tar.append_data(&mut h, path, bytes.as_slice())
                } else {
                    let f = std::fs::File::open(source).map_err(read)?;
                    h.set_size(f.metadata().map_err(read)?.len());
                    tar.append_data(&mut h, path, f)
                }
            }
        };
        done.map_err(|e| format!("cannot pack `{path}`: {e}"))?;
    }
    let mut hashing = tar.into_inner().and_then(|encoder| encoder.finish()).map_err(io)?;
    std::io::Write::flush(&mut hashing).map_err(io)?;
    hashing.file.sync_all().map_err(io)?;
    let sha256 = hashing.hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((sha256, rewritten))
}

/// Unpacks the package into a fresh directory under `scratch` and runs its interpreter there
/// with an empty environment: the same build, with the new directory as its prefix.
fn check_moved(archive: &Path, i: &Interpreter, scratch: &Path) -> Result<(), String> {
    let dir = scratch.join(format!("envctl-import-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let result = (|| {
        let file =
            std::fs::File::open(archive).map_err(|e| format!("cannot read `{}`: {e}", archive.display()))?;
        let decoder = zstd::Decoder::new(file).map_err(|e| e.to_string())?;
        tar::Archive::new(decoder).unpack(&dir).map_err(|e| format!("cannot unpack the package: {e}"))?;
        let exe = dir.join(format!("bin/python{}", i.series));
        let out = Command::new(&exe)
            .args(["-I", "-c", "import sys; print(sys.prefix); print(sys.version.replace(chr(10), ' '))"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .map_err(|e| format!("the copy does not start: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let (prefix, build) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        if !out.status.success() {
            return Err(format!(
                "a copy unpacked elsewhere does not start: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if Path::new(prefix) != dir {
            return Err(format!(
                "a copy unpacked in `{}` takes `{prefix}` for its prefix: it would read another installation's standard library",
                dir.display()
            ));
        }
        if build != i.build {
            return Err(format!(
                "a copy unpacked elsewhere runs another build (`{build}`, not `{}`): it loads a libpython that is not its own",
                i.build
            ));
        }
        Ok(())
    })();
    make_writable(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_dir() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small ELF program linked with the run path `rpath`.
    fn program(dir: &Path, rpath: &str) -> Vec<u8> {
        let src = dir.join("p.c");
        std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
        let exe = dir.join("p");
        let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg(format!("-Wl,-rpath,{rpath}"))
            .arg("-Wl,--enable-new-dtags")
            .output()
            .expect("these tests need a C compiler");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(exe).unwrap()
    }

    #[test]
    fn links_that_leave_their_directory_are_not_kept() {
        assert!(
            stays_inside(Path::new("_sysconfigdata__x86_64-linux-gnu.py")) && stays_inside(Path::new("a/b"))
        );
        assert!(
            !stays_inside(Path::new("/etc/python3.11/sitecustomize.py")) && !stays_inside(Path::new("../x"))
        );
    }

    #[test]
    fn run_paths_into_the_prefix_become_relative_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut exe = program(dir.path(), "/opt/site/python-3.11/lib");
        let mut done = Vec::new();
        relocate(&mut exe, "bin/python3.11", Path::new("/opt/site/python-3.11"), &mut done).unwrap();
        assert_eq!(run_path_slot(&exe).unwrap().1, "$ORIGIN/../lib");
        assert_eq!(done[0].1, "/opt/site/python-3.11/lib");
        // An extension module two levels down.
        let mut so = program(dir.path(), "/opt/site/python-3.11/lib");
        relocate(
            &mut so,
            "lib/python3.11/lib-dynload/_ssl.so",
            Path::new("/opt/site/python-3.11"),
            &mut done,
        )
        .unwrap();
        assert_eq!(run_path_slot(&so).unwrap().1, "$ORIGIN/../..");
        // Outside the installation: refused, naming the file and the entry.
        let mut other = program(dir.path(), "/usr/local/ssl/lib");
        let err = relocate(&mut other, "bin/python3.11", Path::new("/opt/site/python-3.11"), &mut done)
            .unwrap_err();
        assert!(err.contains("bin/python3.11") && err.contains("/usr/local/ssl/lib"), "{err}");
        // A prefix so short that the relative form does not fit.
        let mut short = program(dir.path(), "/p/lib");
        let err = relocate(&mut short, "bin/python3.11", Path::new("/p"), &mut done).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }
}
