//! Python bytecode compiled the same on every machine, every time.
//!
//! CPython's `marshal` marks an object it may meet again (`FLAG_REF`) when its reference count is
//! above one, so a `.pyc` depends on what else the compiling process holds at that moment: a
//! cycle not yet collected, modules a worker pool imported, or the files a worker happened to
//! compile before. A pool that hands out files as workers free up therefore writes a different
//! byte now and then (seen: `ftplib` of CPython 3.12, two homes in six).
//!
//! Here what a file is compiled after is fixed by construction:
//!
//! - a **unit** is one tree compiled by one interpreter (an interpreter's standard library, one
//!   wheel's `site-packages`), never several wheels together, so what else a home needs does not
//!   matter;
//! - its files are sorted by their relative name's bytes and cut into **shards** of [`SHARD`]
//!   files: the cut depends on the unit alone, never on the machine's cores;
//! - each shard is compiled by a fresh interpreter, one file after the other, with the cyclic
//!   garbage collector off, so no collection runs at a moment that depends on the machine, and
//!   `PYTHONHASHSEED=0`;
//! - shards run side by side on the machine's cores, which changes when they run, not what they
//!   write.
//!
//! [`SHARD`] is part of the output: changing it changes bytecode and so store paths.
//!
//! A file the interpreter cannot compile as Python (Python 2 syntax in a test directory) stays
//! uncompiled, as pip leaves it; any other failure (a read or a write, a full disk) fails the
//! whole unit, so a tree is never named with bytecode missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use envctl_store::{Error, Host, Result};

/// Files per shard (see the module docs): part of what the bytecode is.
pub(crate) const SHARD: usize = 512;

/// Compiles the files listed on stdin (`source<TAB>output root<TAB>relative name`), in order, as
/// PEP 552 unchecked-hash `.pyc` files named by their relative name. Python 3.7 and later.
const COMPILE: &str = r#"
import gc, importlib.util, os, py_compile, sys
gc.disable()
for line in sys.stdin.buffer:
    src, root, rel = (os.fsdecode(p) for p in line.rstrip(b"\n").split(b"\t"))
    out = os.path.join(root, importlib.util.cache_from_source(rel))
    try:
        py_compile.compile(src, cfile=out, dfile=rel, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        pass
"#;

/// One tree's files, compiled by one interpreter.
#[derive(Debug)]
pub(crate) struct Unit {
    /// The interpreter.
    pub exe: PathBuf,
    /// Where the `__pycache__` directories go: `rel`'s root.
    pub out: PathBuf,
    /// `(source file, its name relative to out)`.
    pub files: Vec<(PathBuf, PathBuf)>,
}

impl Unit {
    /// A unit with no files yet.
    pub(crate) fn new(exe: PathBuf, out: PathBuf) -> Unit {
        Unit { exe, out, files: Vec::new() }
    }

    /// Adds every `.py` file under `dir` (named `rel` in the tree), skipping `__pycache__`.
    pub(crate) fn add_sources(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        for entry in fs_err::read_dir(dir)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let name = entry.file_name();
            let sub = rel.join(&name);
            if ft.is_dir() && name != "__pycache__" {
                self.add_sources(&entry.path(), &sub)?;
            } else if ft.is_file() && sub.extension().is_some_and(|e| e == "py") {
                self.add(entry.path(), sub);
            }
        }
        Ok(())
    }

    /// Adds one source file, named `rel` in the tree.
    pub(crate) fn add(&mut self, src: PathBuf, rel: PathBuf) {
        self.files.push((src, rel));
    }

    /// The shards' stdin texts, in the unit's fixed order.
    fn shards(mut self) -> Vec<(PathBuf, Vec<u8>)> {
        use std::os::unix::ffi::OsStrExt;
        self.files.sort_by(|a, b| a.1.as_os_str().as_bytes().cmp(b.1.as_os_str().as_bytes()));
        // Tabs and newlines cannot be passed this way; such files stay uncompiled. They are left
        // out before the cut, so they move no other file into another shard on another machine.
        self.files.retain(|(src, rel)| {
            [src.as_os_str(), rel.as_os_str(), self.out.as_os_str()]
                .iter()
                .all(|p| !p.as_bytes().contains(&b'\t') && !p.as_bytes().contains(&b'\n'))
        });
        self.files
            .chunks(SHARD)
            .map(|chunk| {
                let mut text = Vec::new();
                for (src, rel) in chunk {
                    for (i, part) in
                        [src.as_os_str(), self.out.as_os_str(), rel.as_os_str()].iter().enumerate()
                    {
                        if i > 0 {
                            text.push(b'\t');
                        }
                        text.extend_from_slice(part.as_bytes());
                    }
                    text.push(b'\n');
                }
                (self.exe.clone(), text)
            })
            .collect()
    }
}

/// Compiles every unit (see the module docs), shards side by side on the machine's cores, each
/// interpreter confined to the store's sandbox with the unit's work directory (the second of
/// each pair, one the store gave the layer) its only writable one.
pub(crate) fn compile(store: &dyn Host, units: Vec<(Unit, PathBuf)>) -> Result<()> {
    let shards: Vec<(PathBuf, Vec<u8>, PathBuf)> = units
        .into_iter()
        .flat_map(|(unit, work)| unit.shards().into_iter().map(move |(exe, text)| (exe, text, work.clone())))
        .collect();
    let files: usize = shards.iter().map(|(_, text, _)| text.iter().filter(|b| **b == b'\n').count()).sum();
    let started = std::time::Instant::now();
    envctl_store::parallel::on_every_core(&shards, |(exe, text, work), _: &mut Vec<()>| {
        run_shard(store, exe, text, work)
    })?;
    tracing::info!(files, shards = shards.len(), elapsed = ?started.elapsed(), "compiled bytecode");
    Ok(())
}

fn run_shard(store: &dyn Host, exe: &Path, jobs: &[u8], work: &Path) -> Result<()> {
    let failed =
        |message: String| Error::Derivation { key: format!("compile with {}", exe.display()), message };
    // The jobs go in through a file: a sandboxed program's stdin is not ours to feed as it runs.
    let list = tempfile_in(work)?;
    fs_err::write(&list, jobs)?;
    // -B: the compiler's own imports write no bytecode anywhere (it may be running from the store).
    let mut command = Command::new(exe);
    command
        .args(["-B", "-s", "-c", COMPILE])
        .env_clear()
        .env("PYTHONHASHSEED", "0")
        .env("PATH", "/usr/bin:/bin")
        .stdin(fs_err::File::open(&list)?.into_parts().0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = store.run_confined(&mut command, work);
    let _ = std::fs::remove_file(&list);
    let output = output.map_err(|e| failed(format!("cannot run the interpreter: {e}")))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        // The traceback's last line says what failed (`OSError: [Errno 28] No space left …`).
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(failed(format!("the interpreter exited with {}: {last}", output.status)));
    }
    Ok(())
}

/// A fresh file name in `dir` for one shard's job list.
fn tempfile_in(dir: &Path) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    Ok(dir.join(format!("compile-jobs-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))))
}
