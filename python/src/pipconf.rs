//! The pip configuration a user already has, read for one purpose: where the index named `pypi`
//! is, when envctl's own `[indexes]` does not say. Read as pip reads it: the files
//! `/etc/xdg/pip/pip.conf`, `/etc/pip.conf`, `~/.pip/pip.conf`, `~/.config/pip/pip.conf` (later
//! ones override earlier ones), then `PIP_CONFIG_FILE` (`/dev/null`: none of them), then the variables `PIP_INDEX_URL`,
//! `PIP_EXTRA_INDEX_URL` and `PIP_FIND_LINKS`; in a file, `[install]` overrides `[global]`.
//! Only `index-url`, `extra-index-url` and `find-links` (local directories) are used.

use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
struct PipIndexes {
    index_url: Option<String>,
    extra_index_urls: Vec<String>,
    find_links: Vec<String>,
    /// Where each setting came from (`PIP_FIND_LINKS`, `/etc/pip.conf`), by setting.
    origin: std::collections::BTreeMap<&'static str, String>,
}

/// What pip's configuration says `pypi` is, and where it says it.
#[derive(Debug, Clone, Default)]
pub struct PipIndex {
    /// The bases, in the order to try them: the index URL, the extra ones, then `find-links`
    /// directories. Empty when pip's configuration names none (pip then uses its built-in
    /// default, which envctl does not assume).
    pub bases: Vec<String>,
    /// The settings and where each came from, for messages: `find-links from PIP_FIND_LINKS`.
    pub origin: Vec<String>,
    /// Only `find-links` directories: pip would look in its default index beside them.
    pub only_find_links: bool,
}

/// The bases of the `pypi` index from the pip configuration (see [`PipIndex::bases`]).
pub fn pypi_bases() -> Vec<String> {
    pypi().bases
}

/// What pip's configuration says `pypi` is, read once per process (the settings ask for the store
/// options several times a command).
pub fn pypi() -> PipIndex {
    static READ: std::sync::OnceLock<PipIndex> = std::sync::OnceLock::new();
    READ.get_or_init(read_pypi).clone()
}

fn read_pypi() -> PipIndex {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut files = vec![PathBuf::from("/etc/xdg/pip/pip.conf"), PathBuf::from("/etc/pip.conf")];
    if let Some(h) = &home {
        files.push(h.join(".pip/pip.conf"));
    }
    if let Some(x) = &xdg {
        files.push(x.join("pip/pip.conf"));
    }
    match std::env::var_os("PIP_CONFIG_FILE") {
        // As pip: the null device means "read no configuration file".
        Some(f) if f == "/dev/null" => files.clear(),
        Some(f) => files.push(PathBuf::from(f)),
        None => {}
    }
    let mut found = PipIndexes::default();
    for file in files {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let before = (found.index_url.clone(), found.extra_index_urls.len(), found.find_links.len());
            apply_file(&mut found, &text);
            let shown = file.display().to_string();
            if found.index_url != before.0 {
                found.origin.insert("index-url", shown.clone());
            }
            if found.extra_index_urls.len() != before.1 {
                found.origin.insert("extra-index-url", shown.clone());
            }
            if found.find_links.len() != before.2 {
                found.origin.insert("find-links", shown);
            }
        }
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(v) = var("PIP_INDEX_URL") {
        found.index_url = Some(v.trim().to_owned());
        found.origin.insert("index-url", "PIP_INDEX_URL".into());
    }
    if let Some(v) = var("PIP_EXTRA_INDEX_URL") {
        found.extra_index_urls = v.split_whitespace().map(str::to_owned).collect();
        found.origin.insert("extra-index-url", "PIP_EXTRA_INDEX_URL".into());
    }
    if let Some(v) = var("PIP_FIND_LINKS") {
        found.find_links = v.split_whitespace().map(str::to_owned).collect();
        found.origin.insert("find-links", "PIP_FIND_LINKS".into());
    }
    let only_find_links =
        found.index_url.is_none() && found.extra_index_urls.is_empty() && !found.find_links.is_empty();
    let origin = found.origin.iter().map(|(k, v)| format!("{k} from {v}")).collect();
    let local = found.find_links.into_iter().filter(|l| l.starts_with('/') || l.starts_with("file://"));
    let bases = found.index_url.into_iter().chain(found.extra_index_urls).chain(local).collect();
    PipIndex { bases, origin, only_find_links }
}

/// Applies one pip.conf: `[global]` first, then `[install]` over it. A file pip could not read
/// either is passed over, as pip would fail on it before using anything in it.
fn apply_file(found: &mut PipIndexes, text: &str) {
    // An indented line continues the value above it: a list, one item a line.
    let syntax = crate::ini::Syntax { delimiters: &['=', ':'], multiline: true, case_sensitive: false };
    let Ok(sections) = crate::ini::read(text, syntax) else { return };
    for wanted in ["global", "install"] {
        let Some(section) = sections.get(wanted) else { continue };
        // pip takes `index_url` for `index-url`.
        let mut keys: Vec<(String, &str)> =
            section.iter().filter_map(|(k, v)| Some((k.replace('_', "-"), v.as_deref()?))).collect();
        keys.sort();
        for (key, value) in keys {
            let mut values = value.split_whitespace().map(str::to_owned);
            match key.as_str() {
                "index-url" => found.index_url = values.next_back().or(found.index_url.take()),
                "extra-index-url" => found.extra_index_urls.extend(values),
                "find-links" => found.find_links.extend(values),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_conf_sections_and_continuations() {
        let mut found = PipIndexes::default();
        apply_file(
            &mut found,
            "[global]\nindex-url = https://a.example/simple\nfind-links =\n    /opt/wheels\n    /srv/w\n[install]\nindex_url: https://b.example/simple\n[download]\nindex-url = https://c.example/simple\n",
        );
        assert_eq!(found.index_url.as_deref(), Some("https://b.example/simple"));
        assert_eq!(found.find_links, ["/opt/wheels", "/srv/w"]);
    }
}
