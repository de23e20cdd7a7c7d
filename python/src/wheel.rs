//! Installing a Python wheel the way pip and uv do (the binary distribution format, PEP 427 and
//! its successors), into a layout that does not depend on the Python version:
//!
//! | in the wheel | in the store path |
//! | --- | --- |
//! | `pkg/…`, `pkg-1.0.dist-info/…` | `site-packages/…` |
//! | `pkg-1.0.data/purelib/…`, `…/platlib/…` | `site-packages/…` |
//! | `pkg-1.0.data/scripts/…` | `bin/…`, a `#!python` line made portable |
//! | `pkg-1.0.data/headers/…` | `include/<distribution>/…` |
//! | `pkg-1.0.data/data/…` | `…` (the prefix itself) |
//! | `console_scripts`, `gui_scripts` entry points | `bin/<name>` |
//!
//! A profile mounts `site-packages/` at `lib/pythonX.Y/site-packages` of its own Python (see
//! `FarmInput::remap`), so one pure wheel serves profiles on several Python versions. Scripts
//! start with a two-line `/bin/sh` header that runs the `python3` beside the script as invoked
//! (the profile's `bin/`), so they need no absolute interpreter path either.
//!
//! `RECORD` is checked as the wheel's manifest while it is unpacked: every file must be listed
//! with a hash and the size it has, and every file listed with a hash must be in the wheel;
//! anything else refuses the wheel, naming the file. The hashes themselves are not computed again:
//! the archive's sha256, pinned by the recipe and the lock and checked as it is read, already
//! covers every byte, and without a signature over `RECORD` (which no index publishes) whoever
//! could alter a file could rewrite its line. pip and uv do not compute them either; doing so took
//! about 7% of the CPU of a cold PyTorch apply (docs/performance.md).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, Read};

use envctl_core::normalized_name;
use envctl_store::{
    Error, Format, Limits, Mapped, MappedReader, Result, Unpack, Unpacked, Unpacker, check_local_name,
};

/// What a wheel's scripts and entry points start with: `/bin/sh` runs the `python3` found beside
/// the script's path as invoked, which reads the rest as Python (the `'''` hides the shell part).
pub const SCRIPT_HEADER: &str = "#!/bin/sh\n'''exec' \"$(dirname -- \"$0\")/python3\" \"$0\" \"$@\"\n' '''\n";

/// Unpacks a wheel from `file` into `dest` (see the module docs). `label` names it in errors
/// and, where it ends in a wheel's file name, says which distribution it must be; `expected`
/// (its recipe's package name and version) says so too. A wheel whose `.dist-info` or
/// `METADATA` names another distribution or version is refused, as pip and uv refuse it: a
/// `goodpkg-1.0` wheel must not install a `numpy-9.9.dist-info` while `envctl list` says goodpkg.
pub fn unpack_wheel(
    file: std::fs::File,
    dest: &std::path::Path,
    label: &str,
    limits: Limits,
    expected: Option<(&str, &str)>,
) -> Result<Unpacked> {
    let mut u = Unpacker::new(dest, label, Format::Wheel, &Unpack::default(), limits)?;
    let zip_err = |e: zip::result::ZipError| std::io::Error::other(e);
    let mapped = Mapped::new(&file).map_err(|e| u.corrupt(e))?;
    let headers: &[u8] = &mapped;
    let mut zip = zip::ZipArchive::new(MappedReader::new(&mapped)).map_err(|e| u.corrupt(zip_err(e)))?;
    let bad = |entry: &str, reason: String| Error::UnsafeEntry {
        archive: label.to_owned(),
        entry: entry.to_owned(),
        reason,
    };

    // The `.dist-info` directory names the distribution; its `.data` sibling holds the schemes.
    let dist_info = zip
        .file_names()
        .filter_map(|n| n.strip_suffix("/WHEEL"))
        .find(|d| d.ends_with(".dist-info") && !d.contains('/'))
        .map(str::to_owned)
        .ok_or_else(|| bad("WHEEL", "the wheel has no `NAME-VERSION.dist-info/WHEEL`".into()))?;
    let stem = dist_info.trim_end_matches(".dist-info").to_owned();
    let data_dir = format!("{stem}.data");
    let distribution = stem.split('-').next().unwrap_or(&stem).to_owned();
    check_identity(&stem, label, expected).map_err(|why| bad(&dist_info, why))?;
    // One `.dist-info` only: a second one would tell importers of another distribution.
    if let Some(other) = zip.file_names().find_map(|n| {
        let top = n.split('/').next().unwrap_or(n);
        (top.ends_with(".dist-info") && top != dist_info).then(|| top.to_owned())
    }) {
        return Err(bad(&other, format!("a second `.dist-info` beside `{dist_info}`")));
    }

    // Plan, in archive order: check and place every entry, make the directories, reserve each
    // file's slot. Then write the files on every core, largest first, and record them.
    let mut jobs = Vec::new();
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| u.corrupt(zip_err(e)))?;
        u.count_entry()?;
        let raw = f.name_raw().to_vec();
        check_local_name(headers, f.header_start(), &raw, &u)?;
        // Checked as any archive path is (no `..`, not absolute), then placed by scheme.
        let Some(comps) = u.map_path(&raw)? else { continue };
        let name = String::from_utf8_lossy(&raw).trim_end_matches('/').to_owned();
        let placed = place(comps, &data_dir, &distribution).map_err(|why| bad(&name, why))?;
        let Some((comps, scheme)) = placed else {
            if f.is_dir() {
                continue;
            }
            return Err(bad(&name, "a file must sit inside one of the `.data` schemes".into()));
        };
        if f.is_dir() {
            u.make_dir(&comps, &raw)?;
            continue;
        }
        let mode = f.unix_mode();
        if mode.is_some_and(|m| m & 0o170000 != 0o100000 && m & 0o170000 != 0) {
            return Err(bad(&name, "a wheel holds regular files only".into()));
        }
        let disk = u.reserve(&comps, &raw, f.size())?;
        jobs.push(Job {
            index: i,
            comps,
            disk,
            name,
            executable: scheme == Scheme::Scripts || mode.is_some_and(|m| m & 0o111 != 0),
            script: scheme == Scheme::Scripts,
            compressed: f.compressed_size(),
            size: f.size(),
        });
    }
    // The plan read a local header per entry all over the archive: let those pages go before the
    // writers read it again, so that four wheels planned side by side do not stay resident.
    mapped.release_touching(0, mapped.len() as u64);
    let written = write_parallel(&u, &zip, &mut jobs)?;
    // archive path -> its size, as shipped (a script's first line is rewritten when written)
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for (job, node) in jobs.into_iter().zip(written) {
        u.record(&job.comps, node);
        sizes.insert(job.name, job.size);
    }

    let record_path = format!("{dist_info}/RECORD");
    let record = read_back(dest, &["site-packages", &dist_info, "RECORD"])
        .ok_or_else(|| bad(&record_path, "the wheel has no RECORD".into()))?;
    check_record(&record, &sizes, &dist_info).map_err(|(entry, why)| bad(&entry, why))?;
    let metadata_path = format!("{dist_info}/METADATA");
    let metadata = read_back(dest, &["site-packages", &dist_info, "METADATA"])
        .ok_or_else(|| bad(&metadata_path, "the wheel has no METADATA".into()))?;
    check_metadata(&metadata, &stem).map_err(|why| bad(&metadata_path, why))?;

    if let Some(text) = read_back(dest, &["site-packages", &dist_info, "entry_points.txt"]) {
        for (script, target) in
            entry_points(&text).map_err(|why| bad(&format!("{dist_info}/entry_points.txt"), why))?
        {
            let comps = vec![OsString::from("bin"), OsString::from(&script)];
            let body = entry_point_script(&target)
                .map_err(|why| bad(&format!("{dist_info}/entry_points.txt"), why))?;
            let len = body.len() as u64;
            let raw = format!("{dist_info}/entry_points.txt:{script}");
            u.write_file(&comps, raw.as_bytes(), &mut std::io::Cursor::new(body.into_bytes()), true, len)?;
        }
    }
    u.finish()
}

/// Whether two version strings are the same PEP 440 version (`1.0` and `1.0.0` are); strings
/// that are not PEP 440 versions must be equal as written.
fn same_version(a: &str, b: &str) -> bool {
    use std::str::FromStr;
    match (pep440_rs::Version::from_str(a), pep440_rs::Version::from_str(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `(name, version)` of a `NAME-VERSION` stem (a `.dist-info` directory's, or the start of a
/// wheel's file name).
fn split_stem(stem: &str) -> Option<(&str, &str)> {
    let mut parts = stem.splitn(3, '-');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let version = parts.next().filter(|v| !v.is_empty())?;
    Some((name, version))
}

/// Checks that the `.dist-info` stem names the distribution the wheel's file name (the last
/// part of `label`, when it is one) and its recipe (`expected`) say it is.
fn check_identity(
    stem: &str,
    label: &str,
    expected: Option<(&str, &str)>,
) -> std::result::Result<(), String> {
    let (name, version) = split_stem(stem)
        .ok_or_else(|| "its `.dist-info` is not named `NAME-VERSION.dist-info`".to_owned())?;
    let file = label.split(['?', '#']).next().unwrap_or(label);
    let file = file.rsplit('/').next().unwrap_or(file);
    let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
    let from_file = file.strip_suffix(".whl").and_then(split_stem);
    let claims =
        from_file.map(|c| ("its file name", c)).into_iter().chain(expected.map(|c| ("its recipe", c)));
    for (whose, (want_name, want_version)) in claims {
        if normalized_name(name) != normalized_name(want_name) || !same_version(version, want_version) {
            return Err(format!(
                "the wheel says it is `{name} {version}`, but {whose} says `{want_name} {want_version}`"
            ));
        }
    }
    Ok(())
}

/// Checks that METADATA's `Name` and `Version` are the `.dist-info` stem's.
fn check_metadata(metadata: &str, stem: &str) -> std::result::Result<(), String> {
    let (name, version) = split_stem(stem).unwrap_or((stem, ""));
    // The headers end at the first empty line; the description follows.
    let headers = metadata.split("\n\n").next().unwrap_or(metadata);
    let field = |key: &str| {
        headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim().to_owned())
        })
    };
    let (Some(meta_name), Some(meta_version)) = (field("Name"), field("Version")) else {
        return Err("it has no `Name` and `Version`".into());
    };
    if normalized_name(&meta_name) != normalized_name(name) || !same_version(&meta_version, version) {
        return Err(format!("it says `{meta_name} {meta_version}`, its directory says `{name} {version}`"));
    }
    Ok(())
}

/// A file written: its model.
type Written = envctl_store::Node;

/// One file of a wheel to write.
struct Job {
    index: usize,
    comps: Vec<OsString>,
    disk: std::path::PathBuf,
    name: String,
    executable: bool,
    script: bool,
    compressed: u64,
    /// Its size in the archive (the zip reader checks that it inflates to as many bytes).
    size: u64,
}

/// Writes every job's file into its reserved slot, on up to four threads, largest first (one
/// big shared library should not be the last thing started). Returns each job's node, in the
/// order of `jobs` as it is left (sorted by size).
fn write_parallel(
    u: &Unpacker<'_>,
    zip: &zip::ZipArchive<MappedReader<'_>>,
    jobs: &mut [Job],
) -> Result<Vec<Written>> {
    use std::sync::atomic::AtomicU64;
    jobs.sort_by(|a, b| b.compressed.cmp(&a.compressed).then(a.index.cmp(&b.index)));
    let threads = envctl_store::parallel::cores().clamp(1, 4);
    let budget = AtomicU64::new(0);
    // Each thread reads through its own view of the archive, into its own buffer.
    let results = envctl_store::parallel::map_on_threads(
        threads,
        jobs,
        || (zip.clone(), vec![0u8; 256 * 1024]),
        |(zip, buf), _, job| write_one(u, zip, job, &budget, buf),
        Result::is_err,
    );
    let mut out = Vec::with_capacity(results.len());
    for slot in results {
        match slot {
            Some(Ok(done)) => out.push(done),
            Some(Err(e)) => return Err(e),
            // Left undone because another job failed; that failure is reported.
            None => {}
        }
    }
    Ok(out)
}

fn write_one(
    u: &Unpacker<'_>,
    zip: &mut zip::ZipArchive<MappedReader<'_>>,
    job: &Job,
    budget: &std::sync::atomic::AtomicU64,
    buf: &mut [u8],
) -> Result<Written> {
    let mut f = zip.by_index(job.index).map_err(|e| u.corrupt(std::io::Error::other(e)))?;
    if job.script {
        // Written with a portable first line, streamed like any file.
        let mut script = portable_script(std::io::BufReader::new(&mut f)).map_err(|e| u.corrupt(e))?;
        return u.stream(&job.disk, &mut script, true, budget, buf);
    }
    u.stream(&job.disk, &mut f, job.executable, budget, buf)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Lib,
    Scripts,
    Other,
}

/// Where a wheel entry lands in the store path; `None` for `NAME.data/` and its scheme
/// directories themselves, which are not placed anywhere.
fn place(
    comps: Vec<OsString>,
    data_dir: &str,
    distribution: &str,
) -> std::result::Result<Option<(Vec<OsString>, Scheme)>, String> {
    let site = || OsString::from("site-packages");
    if comps.first().is_none_or(|c| c != data_dir) {
        let mut out = vec![site()];
        out.extend(comps);
        return Ok(Some((out, Scheme::Lib)));
    }
    let Some(scheme) = comps.get(1).map(|s| s.to_string_lossy().into_owned()) else { return Ok(None) };
    let (mut out, kind) = match scheme.as_str() {
        "purelib" | "platlib" => (vec![site()], Scheme::Lib),
        "scripts" => (vec![OsString::from("bin")], Scheme::Scripts),
        "headers" => (vec![OsString::from("include"), OsString::from(distribution)], Scheme::Other),
        "data" => (Vec::new(), Scheme::Other),
        other => return Err(format!("names the unknown install scheme `{other}`")),
    };
    if comps.len() == 2 {
        return Ok(None);
    }
    out.extend(comps.into_iter().skip(2));
    Ok(Some((out, kind)))
}

/// Replaces a `#!python` (or `#!pythonw`) first line with [`SCRIPT_HEADER`]; other scripts are
/// kept as they are.
fn portable_script<'r>(mut script: impl BufRead + 'r) -> std::io::Result<impl Read + 'r> {
    // The first line only (at most 4 KiB: a longer one is no `#!python` line), the rest streamed.
    let mut first = Vec::new();
    (&mut script).take(4096).read_until(b'\n', &mut first)?;
    if first.starts_with(b"#!python") && first.ends_with(b"\n") {
        first = SCRIPT_HEADER.as_bytes().to_vec();
    }
    Ok(std::io::Cursor::new(first).chain(script))
}

fn read_back(dest: &std::path::Path, parts: &[&str]) -> Option<String> {
    let path: std::path::PathBuf =
        std::iter::once(dest.as_os_str()).chain(parts.iter().map(|p| std::ffi::OsStr::new(*p))).collect();
    std::fs::read_to_string(path).ok()
}

/// Checks `RECORD` against what the wheel held, `sizes` by archive path (see the module docs: the
/// hashes are read, not computed). The error names the entry and why.
fn check_record(
    record: &str,
    sizes: &BTreeMap<String, u64>,
    dist_info: &str,
) -> std::result::Result<(), (String, String)> {
    let own =
        [format!("{dist_info}/RECORD"), format!("{dist_info}/RECORD.jws"), format!("{dist_info}/RECORD.p7s")];
    // path -> (hash, size), each as written
    let mut listed: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    // CSV as Python's `csv` module writes it (a path holding a comma or a quote is quoted).
    let mut rows = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(record.as_bytes());
    for row in rows.records() {
        let row = row.map_err(|e| (format!("{dist_info}/RECORD"), format!("is not CSV: {e}")))?;
        let line = row.position().map_or(0, |p| p.line());
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let path = row.get(0).unwrap_or_default().to_owned();
        let field = |i: usize| row.get(i).filter(|f| !f.is_empty()).map(str::to_owned);
        if path.is_empty() {
            return Err((format!("{dist_info}/RECORD"), format!("line {line} names no file")));
        }
        listed.insert(path, (field(1), field(2)));
    }
    for (path, size) in sizes {
        if own.contains(path) {
            continue;
        }
        let Some((hash, listed_size)) = listed.get(path) else {
            return Err((path.clone(), "is not listed in the wheel's RECORD".into()));
        };
        let Some(hash) = hash else {
            return Err((path.clone(), "has no hash in the wheel's RECORD".into()));
        };
        if !hash_shaped(hash) {
            return Err((
                path.clone(),
                format!("has a RECORD hash that is not `ALGORITHM=BASE64`: `{hash}`"),
            ));
        }
        match listed_size.as_deref().map(str::parse::<u64>) {
            None => {}
            Some(Ok(n)) if n == *size => {}
            Some(Ok(n)) => {
                return Err((
                    path.clone(),
                    format!(
                        "is {size} bytes where the wheel's RECORD lists {n}: the wheel was altered after it was built"
                    ),
                ));
            }
            Some(Err(_)) => {
                let n = listed_size.as_deref().unwrap_or_default();
                return Err((path.clone(), format!("has a RECORD size that is not a number: `{n}`")));
            }
        }
    }
    for (path, (hash, _)) in &listed {
        if hash.is_some() && !sizes.contains_key(path) {
            return Err((path.clone(), "is listed in RECORD but the wheel does not hold it".into()));
        }
    }
    Ok(())
}

/// Whether a `RECORD` hash has the form PEP 376 gives it: a hashlib algorithm's name, `=`, and the
/// digest in URL-safe base64 without padding.
fn hash_shaped(hash: &str) -> bool {
    use base64::Engine;
    let Some((algorithm, digest)) = hash.split_once('=') else { return false };
    !algorithm.is_empty()
        && algorithm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(digest.trim_end_matches('='))
            .is_ok_and(|d| !d.is_empty())
}

/// The `console_scripts` and `gui_scripts` of an `entry_points.txt`: `(name, "module:attr")`.
pub fn entry_points(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let syntax = crate::ini::Syntax { delimiters: &['='], multiline: false, case_sensitive: true };
    let sections = crate::ini::read(text, syntax)?;
    let mut out = Vec::new();
    for section in ["console_scripts", "gui_scripts"] {
        let mut entries: Vec<(&String, &Option<String>)> =
            sections.get(section).into_iter().flatten().collect();
        entries.sort();
        for (name, target) in entries {
            let target = target.as_deref().ok_or_else(|| format!("`{name}` is not `name = module:attr`"))?;
            out.push(entry(name.trim(), target)?);
        }
    }
    Ok(out)
}

/// One entry point, checked: a script name that stays in `bin/`, and its target without extras.
fn entry(name: &str, target: &str) -> std::result::Result<(String, String), String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("`{name}` cannot be a script name"));
    }
    // Extras (`[extra]`) say what must be installed; they do not change the script.
    let target = target.split('[').next().unwrap_or(target).trim();
    Ok((name.to_owned(), target.to_owned()))
}

/// The script for an entry point `module:attr.sub`, as pip writes it.
fn entry_point_script(target: &str) -> std::result::Result<String, String> {
    let (module, attr) =
        target.split_once(':').ok_or_else(|| format!("entry point `{target}` has no `:attr`"))?;
    let ident = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    };
    let (module, attr) = (module.trim(), attr.trim());
    if !ident(module) || !ident(attr) {
        return Err(format!("entry point `{target}` is not `module:attr`"));
    }
    let root = attr.split('.').next().unwrap_or(attr);
    Ok(format!(
        "{SCRIPT_HEADER}# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {root}\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit({attr}())\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_become_scripts() {
        let eps = entry_points("[console_scripts]\ntool = pkg.cli:main [extra]\n\n[gui_scripts]\ng=pkg:App.run\n[other]\nx = y:z\n").unwrap();
        assert_eq!(eps, vec![("tool".into(), "pkg.cli:main".into()), ("g".into(), "pkg:App.run".into())]);
        let s = entry_point_script("pkg:App.run").unwrap();
        assert!(
            s.starts_with(SCRIPT_HEADER)
                && s.contains("from pkg import App\n")
                && s.contains("sys.exit(App.run())"),
            "{s}"
        );
        assert!(entry_point_script("pkg").is_err());
        assert!(entry_point_script("pkg:main; rm").is_err());
    }

    #[test]
    fn record_is_read_as_csv_as_python_writes_it() {
        let info = "p-1.0.dist-info";
        let hash = "sha256=ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5yuYB3ha_uSLs";
        let sizes: BTreeMap<String, u64> =
            [("p/a,b.py".to_owned(), 1), ("p/say \"hi\".py".to_owned(), 1)].into();
        // Quoted fields, a doubled quote, CRLF line ends, the RECORD's own empty hash, a blank line.
        let record =
            format!("\"p/a,b.py\",{hash},1\r\n\"p/say \"\"hi\"\".py\",{hash},1\r\n{info}/RECORD,,\r\n\r\n");
        assert_eq!(check_record(&record, &sizes, info), Ok(()));
        // Unquoted, the comma splits the path: that file is not listed.
        let one: BTreeMap<String, u64> = [("p/a,b.py".to_owned(), 1)].into();
        let (entry, why) = check_record(&format!("p/a,b.py,{hash},1\n"), &one, info).unwrap_err();
        assert_eq!(entry, "p/a,b.py");
        assert!(why.contains("not listed"), "{why}");
        let (entry, why) = check_record(&format!("p/a.py,,\n,{hash},1\n"), &one, info).unwrap_err();
        assert_eq!((entry.as_str(), why.as_str()), ("p-1.0.dist-info/RECORD", "line 2 names no file"));
    }

    #[test]
    fn record_is_the_wheels_manifest_sizes_and_all() {
        let info = "p-1.0.dist-info";
        let hash = "sha256=ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5yuYB3ha_uSLs";
        let sizes: BTreeMap<String, u64> = [("p/a.py".to_owned(), 5)].into();
        let check = |record: &str| check_record(record, &sizes, info);
        assert_eq!(check(&format!("p/a.py,{hash},5\n")), Ok(()));
        // No size listed is allowed (PEP 376 makes it optional); another algorithm too.
        assert_eq!(check(&format!("p/a.py,{hash},\n")), Ok(()));
        assert_eq!(check("p/a.py,sha512=AAAA,5\n"), Ok(()));
        let why = |record: &str| check(record).unwrap_err().1;
        assert!(why(&format!("p/a.py,{hash},6\n")).contains("is 5 bytes where the wheel's RECORD lists 6"));
        assert!(why(&format!("p/a.py,{hash},five\n")).contains("not a number: `five`"));
        assert!(why("p/a.py,,5\n").contains("has no hash"));
        assert!(why("p/a.py,d41d8cd98f00b204e9800998ecf8427e,5\n").contains("not `ALGORITHM=BASE64`"));
        let (entry, why) = check(&format!("p/a.py,{hash},5\np/gone.py,{hash},1\n")).unwrap_err();
        assert_eq!(entry, "p/gone.py");
        assert!(why.contains("the wheel does not hold it"), "{why}");
    }

    #[test]
    fn python_scripts_get_the_portable_header() {
        let read = |script: &[u8]| {
            let mut out = Vec::new();
            portable_script(script).unwrap().read_to_end(&mut out).unwrap();
            out
        };
        let out = read(b"#!python\nprint(1)\n");
        assert_eq!(String::from_utf8(out).unwrap(), format!("{SCRIPT_HEADER}print(1)\n"));
        assert_eq!(read(b"#!/bin/sh\necho\n"), b"#!/bin/sh\necho\n");
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn names_compare_normalized_and_versions_as_pep_440_versions() {
        assert!(
            check_identity(
                "Greeter_Lib-1.2.post1",
                "https://x/wheels/greeter_lib-1.2.post1-py3-none-any.whl",
                Some(("greeter-lib", "1.2.post1"))
            )
            .is_ok()
        );
        assert!(
            check_identity(
                "torch-2.3.0+cu121",
                "https://x/torch-2.3.0%2Bcu121-cp311-cp311-linux_x86_64.whl",
                Some(("torch", "2.3.0+cu121"))
            )
            .is_ok()
        );
        assert!(check_identity("pkg-1.0", "pkg-1.0.0-py3-none-any.whl", None).is_ok());
        let e = check_identity("numpy-9.9", "https://x/goodpkg-1.0-py3-none-any.whl", None).unwrap_err();
        assert!(
            e.contains("`numpy 9.9`") && e.contains("its file name") && e.contains("`goodpkg 1.0`"),
            "{e}"
        );
        let e = check_identity("goodpkg-1.1", "built.bin", Some(("goodpkg", "1.0"))).unwrap_err();
        assert!(e.contains("its recipe"), "{e}");
        assert!(check_identity("nodash", "x.whl", None).is_err());
    }

    #[test]
    fn metadata_must_name_the_directorys_distribution() {
        let ok = "Metadata-Version: 2.1\nName: Greeter-Lib\nVersion: 1.2.post1\n\nName: in the description\n";
        assert!(check_metadata(ok, "greeter_lib-1.2.post1").is_ok());
        let e = check_metadata("Name: numpy\nVersion: 9.9\n", "goodpkg-1.0").unwrap_err();
        assert!(e.contains("`numpy 9.9`") && e.contains("`goodpkg 1.0`"), "{e}");
        assert!(check_metadata("Metadata-Version: 2.1\n", "goodpkg-1.0").is_err());
    }
}
