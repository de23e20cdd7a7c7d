//! Local paths written as a recipe's or a lock's `url`: which are relative, and what they are
//! relative to.

use std::path::Path;

/// Whether a recipe's or lock's `url` is a plain relative path (no scheme, not absolute).
pub(crate) fn is_relative_path(url: &str) -> bool {
    !url.contains("://") && url != "empty:" && !url.starts_with('/') && !url.is_empty()
}

/// The directory a file is in (`.` for a bare name).
pub(crate) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `rel` in `dir`, absolute, symlinks resolved where it exists.
pub(crate) fn absolute_in(dir: &Path, rel: &str) -> String {
    // Through components: `./` and a trailing `/` go, so the path reads back as it was written.
    let joined: std::path::PathBuf = dir.join(rel).components().collect();
    std::fs::canonicalize(&joined)
        .or_else(|_| std::path::absolute(&joined))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| rel.to_owned())
}
