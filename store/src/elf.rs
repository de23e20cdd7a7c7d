//! What the dynamic loader reads of a shared object that matters to a symlink farm: run paths
//! that climb out of the object's directory.
//!
//! The frameworks' wheels find each other's libraries through run paths relative to the object
//! (`$ORIGIN/../../nvidia/cublas/lib` in torch's `torch/lib/libtorch_cuda.so`). The loader takes
//! `$ORIGIN` from the path the object was opened by, and the kernel resolves each `..` from where
//! the path physically is: under a directory the farm links whole, `torch/lib/../..` is the
//! parent of torch's own store path, where no `nvidia/` is. So the farm makes such a directory a
//! real one (see `farm.rs`), and the climb ends inside the profile.

use std::path::Path;

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{Dyn, FileHeader};
use object::{Endianness, ReadCache, ReadRef};

/// The run path of the ELF object in `file`: its `DT_RUNPATH`, else its `DT_RPATH`, split at
/// `:`. `None` when it is not an ELF object or has neither. Reads only the headers, the dynamic
/// section and its string table (torch's largest library is over a gigabyte).
pub(crate) fn run_path(file: std::fs::File) -> Option<Vec<String>> {
    let cache = ReadCache::new(file);
    let ident = (&cache).read_bytes_at(0, 16).ok()?;
    if ident[..4] != elf::ELFMAG {
        return None;
    }
    match ident[4] {
        elf::ELFCLASS64 => run_path_of::<FileHeader64<Endianness>>(&cache),
        elf::ELFCLASS32 => run_path_of::<FileHeader32<Endianness>>(&cache),
        _ => None,
    }
}

fn run_path_of<H: FileHeader<Endian = Endianness>>(data: &ReadCache<std::fs::File>) -> Option<Vec<String>> {
    let header = H::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let (dynamic, link) = sections.dynamic(endian, data).ok()??;
    let strings = sections.strings(endian, data, link).ok()?;
    let (mut runpath, mut rpath) = (None, None);
    for entry in dynamic {
        match entry.tag32(endian) {
            Some(elf::DT_RUNPATH) => runpath = entry.val32(endian).and_then(|at| strings.get(at).ok()),
            Some(elf::DT_RPATH) => rpath = entry.val32(endian).and_then(|at| strings.get(at).ok()),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(runpath.or(rpath)?).into_owned();
    Some(text.split(':').filter(|e| !e.is_empty()).map(str::to_owned).collect())
}

/// How many directories a run path entry climbs above its object's directory at most:
/// `$ORIGIN/../../nvidia/cublas/lib` climbs 2, `$ORIGIN` and `$ORIGIN/lib` climb 0. `None` for
/// an entry not relative to the object (`/usr/lib`, `$LIB`).
pub(crate) fn climb(entry: &str) -> Option<usize> {
    let rest = entry.strip_prefix("$ORIGIN").or_else(|| entry.strip_prefix("${ORIGIN}"))?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let (mut depth, mut lowest) = (0i64, 0i64);
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                lowest = lowest.min(depth);
            }
            _ => depth += 1,
        }
    }
    Some(lowest.unsigned_abs() as usize)
}

/// Whether a file name is a shared library's (`libx.so`, `libx.so.12`, `_C.cpython-311-x86_64-linux-gnu.so`).
fn looks_shared(name: &str) -> bool {
    name.ends_with(".so") || name.contains(".so.")
}

/// The directories under `root` (relative, `/`-separated) holding a shared object whose run path
/// climbs out of its own directory, each with the most any climbs. Files reached through
/// symlinks are read too: a wheel's bytecode tree links to the wheel's files. Sorted.
pub(crate) fn climbing_dirs(root: &Path) -> std::io::Result<Vec<(String, u32)>> {
    let mut found: std::collections::BTreeMap<String, u32> = Default::default();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_type().is_dir() || !looks_shared(&entry.file_name().to_string_lossy()) {
            continue;
        }
        // A link that leads nowhere (or to a directory) is not an object to load.
        let Ok(file) = std::fs::File::open(entry.path()) else { continue };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(entries) = run_path(file) else { continue };
        let most = entries.iter().filter_map(|e| climb(e)).max().unwrap_or(0);
        if most == 0 {
            continue;
        }
        let dir = entry.path().parent().and_then(|d| d.strip_prefix(root).ok()).unwrap_or(Path::new(""));
        let dir = dir.to_string_lossy().into_owned();
        let slot = found.entry(dir).or_insert(0);
        *slot = (*slot).max(most as u32);
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_climb_counts_the_levels_above_the_object_it_reaches() {
        assert_eq!(climb("$ORIGIN"), Some(0));
        assert_eq!(climb("$ORIGIN/lib"), Some(0));
        assert_eq!(climb("$ORIGIN/../lib"), Some(1));
        assert_eq!(climb("${ORIGIN}/../../nvidia/cublas/lib"), Some(2));
        assert_eq!(climb("$ORIGIN/lib/../../.."), Some(2));
        assert_eq!(climb("/usr/lib"), None);
        assert_eq!(climb("$ORIGINAL/x"), None);
    }

    #[test]
    fn looks_shared_takes_versioned_names_and_extension_modules() {
        for yes in ["libcublas.so.12", "libtorch.so", "_C.cpython-311-x86_64-linux-gnu.so"] {
            assert!(looks_shared(yes), "{yes}");
        }
        for no in ["so.py", "x.sol", "README"] {
            assert!(!looks_shared(no), "{no}");
        }
    }
}
