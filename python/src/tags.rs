//! Wheel file names and their compatibility tags (the platform compatibility tags spec): which
//! interpreters, ABIs and platforms a wheel runs on, and whether a profile's CPython on this
//! machine is one of them.

use envctl_recipes::Version;

/// The tags of a wheel file name `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`;
/// each part may be a `.`-separated set (`py2.py3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelTags {
    /// Interpreter tags (`cp311`, `py3`).
    pub python: Vec<String>,
    /// ABI tags (`cp311`, `abi3`, `none`).
    pub abi: Vec<String>,
    /// Platform tags (`manylinux_2_17_x86_64`, `any`).
    pub platform: Vec<String>,
}

impl WheelTags {
    /// Reads the tags of a wheel file name (or of a URL's last segment); `None` when it is not one.
    pub fn from_file_name(url: &str) -> Option<WheelTags> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        if !(5..=6).contains(&parts.len()) {
            return None;
        }
        let n = parts.len();
        let set = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        Some(WheelTags { python: set(parts[n - 3]), abi: set(parts[n - 2]), platform: set(parts[n - 1]) })
    }

    /// The tags as the file name writes them.
    pub fn text(&self) -> String {
        format!("{}-{}-{}", self.python.join("."), self.abi.join("."), self.platform.join("."))
    }

    /// Whether the wheel runs on CPython `python` (its `X.Y` is what counts) on Linux `arch`
    /// with `glibc` (unknown: manylinux wheels are taken). The error names the tag that does not
    /// fit and why.
    pub fn check(&self, python: &Version, arch: &str, glibc: Option<&Version>) -> Result<(), String> {
        let (major, minor) = match python.components() {
            [major, minor, ..] => (*major, *minor),
            [major] => (*major, 0),
            [] => (0, 0),
        };
        let ours = format!("cp{major}{minor}");
        let python_ok = |t: &str| -> bool {
            if let Some(v) = t.strip_prefix("py") {
                // py3, py311, py38 (an older minor runs on a newer one).
                return v == major.to_string()
                    || tag_version(v).is_some_and(|(a, b)| a == major && b <= minor);
            }
            t.strip_prefix("cp").and_then(tag_version).is_some_and(|(a, b)| a == major && b <= minor)
        };
        let pythons: Vec<&String> = self.python.iter().filter(|t| python_ok(t)).collect();
        if pythons.is_empty() {
            return Err(format!(
                "interpreter tag `{}` does not include CPython {major}.{minor} ({ours})",
                self.python.join(".")
            ));
        }
        let abi_ok = |abi: &str| -> bool {
            match abi {
                "none" => true,
                // The stable ABI of the interpreter tag's version or an older one.
                "abi3" => pythons.iter().any(|p| p.starts_with("cp")),
                // The interpreter's own ABI (3.7 still writes `cp37m`), for its own tag only.
                a => (a == ours || a == format!("{ours}m")) && pythons.iter().any(|p| **p == ours),
            }
        };
        if !self.abi.iter().any(|a| abi_ok(a)) {
            return Err(format!(
                "ABI tag `{}` does not run on CPython {major}.{minor} ({ours})",
                self.abi.join(".")
            ));
        }
        let mut why = Vec::new();
        for p in &self.platform {
            match platform_fits(p, arch, glibc) {
                Ok(()) => return Ok(()),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }
}

/// `311` → (3, 11), `3` → (3, 0).
fn tag_version(v: &str) -> Option<(u64, u64)> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let major = v[..1].parse().ok()?;
    let minor = if v.len() > 1 { v[1..].parse().ok()? } else { 0 };
    Some((major, minor))
}

/// The glibc `X.Y` a manylinux platform tag for `arch` needs (`manylinux2014_x86_64` → 2.17,
/// `manylinux_2_28_x86_64` → 2.28); `None` for any other tag.
pub fn manylinux_glibc(tag: &str, arch: &str) -> Option<(u64, u64)> {
    match tag.strip_suffix(&format!("_{arch}"))? {
        "manylinux1" => Some((2, 5)),
        "manylinux2010" => Some((2, 12)),
        "manylinux2014" => Some((2, 17)),
        r => {
            let (a, b) = r.strip_prefix("manylinux_")?.split_once('_')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }
    }
}

fn platform_fits(tag: &str, arch: &str, glibc: Option<&Version>) -> Result<(), String> {
    if tag == "any" || tag == format!("linux_{arch}") {
        return Ok(());
    }
    let Some((a, b)) = manylinux_glibc(tag, arch) else {
        return Err(format!("platform tag `{tag}` is not for glibc Linux on {arch}"));
    };
    match glibc {
        Some(have) if *have < Version::parse(&format!("{a}.{b}")).expect("two numbers are a version") => {
            Err(format!("platform tag `{tag}` needs glibc {a}.{b}, this machine has {have}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn tags_match_as_pip_would() {
        let t = |f: &str| WheelTags::from_file_name(f).unwrap();
        let glibc = v("2.17");
        let ok = |f: &str, py: &str| t(f).check(&v(py), "x86_64", Some(&glibc));
        assert!(ok("six-1.16.0-py2.py3-none-any.whl", "3.7.16").is_ok());
        assert!(
            ok("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "3.11.7").is_ok()
        );
        assert!(ok("x-1.0-cp37-cp37m-manylinux2010_x86_64.whl", "3.7.16").is_ok());
        assert!(ok("x-1.0-cp38-abi3-manylinux2014_x86_64.whl", "3.11.7").is_ok());
        assert!(ok("x-1.0-1build-py3-none-any.whl", "3.11").is_ok());
        let e = ok("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", "3.7.16").unwrap_err();
        assert!(e.contains("cp311") && e.contains("3.7"), "{e}");
        let e = ok("x-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "3.11.7").unwrap_err();
        assert!(e.contains("manylinux_2_28_x86_64") && e.contains("2.17"), "{e}");
        let e = ok("x-1.0-cp311-cp311-macosx_11_0_arm64.whl", "3.11.7").unwrap_err();
        assert!(e.contains("macosx_11_0_arm64"), "{e}");
        assert!(ok("x-1.0-cp311-cp311-musllinux_1_1_x86_64.whl", "3.11.7").is_err());
        assert!(WheelTags::from_file_name("x-1.0.tar.gz").is_none());
    }
}
