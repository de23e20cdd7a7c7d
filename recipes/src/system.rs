//! System facts: what the machine offers, as plain data. Detection lives in the cli; the solver
//! sees facts as virtual packages.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result, line_of};
use crate::recipe::SystemRequirements;
use crate::version::{Requirement, Version};

/// What a machine offers, each fact with where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemFacts {
    /// NVIDIA driver version; `None`: no driver.
    pub driver: Option<Version>,
    /// Highest CUDA version the driver supports.
    pub cuda: Option<Version>,
    /// Compute capability of each GPU.
    pub sm: Vec<Version>,
    /// glibc version.
    pub glibc: Option<Version>,
    /// CPU architecture (`x86_64`).
    pub arch: Option<String>,
    /// Where each fact came from, by key (`driver` → `/sys/module/nvidia/version`).
    pub origin: BTreeMap<&'static str, String>,
}

impl SystemFacts {
    /// The platform name sources are selected by (`linux-x86_64`).
    pub fn platform(&self) -> String {
        format!("linux-{}", self.arch.as_deref().unwrap_or("x86_64"))
    }

    /// The lowest compute capability among the GPUs: a requirement on `sm` must hold for every GPU.
    pub fn min_sm(&self) -> Option<&Version> {
        self.sm.iter().min()
    }

    /// The requirements of `system` this machine does not meet, each in words with what the
    /// machine has: `the NVIDIA driver >=525.60.13 (this machine: 418.40, from ENVCTL_SYSTEM_DRIVER)`.
    /// Empty when every one is met. The solver never chooses such a recipe; this is for a lock
    /// that was resolved elsewhere (or before the driver changed) and is used as it is.
    pub fn unmet(&self, system: &SystemRequirements) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |key: &str, what: &str, req: &Option<Requirement>, have: Option<&Version>| {
            let Some(req) = req else { return };
            if have.is_some_and(|v| req.matches(v)) {
                return;
            }
            let have = have.map_or_else(|| "none".to_owned(), Version::to_string);
            let origin = self.origin.get(key).map(|o| format!(", from {o}")).unwrap_or_default();
            out.push(format!("{what} {req} (this machine: {have}{origin})"));
        };
        check("driver", "the NVIDIA driver", &system.driver, self.driver.as_ref());
        check("cuda", "a driver supporting CUDA", &system.cuda, self.cuda.as_ref());
        // A need on every GPU: one without GPUs has none to fail it.
        if !self.sm.is_empty() {
            check("sm", "GPU compute capability", &system.sm, self.min_sm());
        }
        check("glibc", "glibc", &system.glibc, self.glibc.as_ref());
        if let Some(arch) = &system.arch
            && self.arch.as_deref() != Some(arch.as_str())
        {
            out.push(format!(
                "the {arch} architecture (this machine: {})",
                self.arch.as_deref().unwrap_or("unknown")
            ));
        }
        out
    }
}

/// NVIDIA's minimum Linux driver for each CUDA toolkit release: the "CUDA Toolkit and Corresponding
/// Driver Versions" table of the CUDA release notes (Table 3, "Toolkit Driver Version"). From CUDA
/// 11 on, minor-version compatibility means one driver floor per major.
/// `(cuda, minimum driver)`, ascending.
pub const CUDA_DRIVER_TABLE: &[(&str, &str)] = &[
    ("9.0", "384.81"),
    ("9.1", "390.46"),
    ("9.2", "396.26"),
    ("10.0", "410.48"),
    ("10.1", "418.39"),
    ("10.2", "440.33"),
    ("11.8", "450.80.02"), // any 11.x runs on >= 450.80.02 (minor-version compatibility)
    ("12.9", "525.60.13"), // any 12.x runs on >= 525.60.13
    ("13.9", "580"),       // any 13.x runs on >= 580
];

/// The highest CUDA version a driver supports, from [`CUDA_DRIVER_TABLE`]. Used when NVML is not
/// there to ask.
pub fn cuda_for_driver(driver: &Version) -> Option<Version> {
    CUDA_DRIVER_TABLE
        .iter()
        .rev()
        .find(|(_, min)| driver >= &Version::parse(min).expect("the table's versions parse"))
        .map(|(cuda, _)| Version::parse(cuda).expect("the table's versions parse"))
}

/// Facts a file asserts (`--system FILE`, or a profile's `[system]`): any subset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemOverrides {
    /// `Some(None)`: "no driver" (an empty string).
    pub driver: Option<Option<Version>>,
    /// Highest CUDA supported.
    pub cuda: Option<Version>,
    /// GPU compute capabilities.
    pub sm: Option<Vec<Version>>,
    /// glibc.
    pub glibc: Option<Version>,
    /// Architecture.
    pub arch: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOverrides {
    driver: Option<Spanned<String>>,
    cuda: Option<Spanned<String>>,
    sm: Option<Spanned<SmValue>>,
    glibc: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SmValue {
    One(String),
    Many(Vec<String>),
}

impl RawOverrides {
    pub(crate) fn check(self, text: &str, path: &Path, prefix: &str) -> Result<SystemOverrides> {
        let bad = |span: std::ops::Range<usize>, key: &str, message: String| Error::Value {
            path: path.to_path_buf(),
            line: line_of(text, span.start),
            key: format!("{prefix}{key}"),
            message,
        };
        let version = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Version>> {
            v.as_ref()
                .map(|s| Version::parse(s.get_ref()).map_err(|e| bad(s.span(), key, e.to_string())))
                .transpose()
        };
        let driver = match &self.driver {
            Some(s) if s.get_ref().is_empty() => Some(None),
            d => version(d, "driver")?.map(Some),
        };
        let sm = match &self.sm {
            None => None,
            Some(s) => {
                let list = match s.get_ref() {
                    SmValue::One(v) => vec![v.clone()],
                    SmValue::Many(v) => v.clone(),
                };
                Some(
                    list.iter()
                        .map(|v| Version::parse(v).map_err(|e| bad(s.span(), "sm", e.to_string())))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
        };
        Ok(SystemOverrides {
            driver,
            cuda: version(&self.cuda, "cuda")?,
            sm,
            glibc: version(&self.glibc, "glibc")?,
            arch: self.arch.map(|a| a.into_inner()),
        })
    }
}

impl SystemOverrides {
    /// Reads a system file (`--system FILE`): keys `driver`, `cuda`, `sm`, `glibc`, `arch`.
    pub fn load(path: &Path) -> Result<SystemOverrides> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        let raw: RawOverrides = toml::from_str(&text)
            .map_err(|e| Error::Toml { path: path.to_path_buf(), message: e.to_string() })?;
        raw.check(&text, path, "")
    }

    /// Applies these overrides on top of `facts`, recording `origin` for each fact set. A driver
    /// set without a CUDA version derives CUDA from the table.
    pub fn apply(&self, facts: &mut SystemFacts, origin: &str) {
        self.apply_with(facts, |_| origin.to_owned());
    }

    /// As [`apply`](Self::apply), with the origin given per fact (`driver`, `cuda`, `sm`, `glibc`,
    /// `arch`): one environment variable per fact, say.
    pub fn apply_with(&self, facts: &mut SystemFacts, origin: impl Fn(&'static str) -> String) {
        if let Some(d) = &self.driver {
            facts.driver = d.clone();
            facts.origin.insert("driver", origin("driver"));
            if self.cuda.is_none() {
                facts.cuda = d.as_ref().and_then(cuda_for_driver);
                facts.origin.insert("cuda", format!("derived from the driver set by {}", origin("driver")));
            }
        }
        if let Some(c) = &self.cuda {
            facts.cuda = Some(c.clone());
            facts.origin.insert("cuda", origin("cuda"));
        }
        if let Some(s) = &self.sm {
            facts.sm = s.clone();
            facts.origin.insert("sm", origin("sm"));
        }
        if let Some(g) = &self.glibc {
            facts.glibc = Some(g.clone());
            facts.origin.insert("glibc", origin("glibc"));
        }
        if let Some(a) = &self.arch {
            facts.arch = Some(a.clone());
            facts.origin.insert("arch", origin("arch"));
        }
    }

    /// Whether any fact is set.
    pub fn is_empty(&self) -> bool {
        *self == SystemOverrides::default()
    }

    /// Reads back what [`canonical`](Self::canonical) wrote (a generation's record of its
    /// profile's `[system]`).
    pub fn from_canonical(text: &str) -> std::result::Result<SystemOverrides, String> {
        let mut o = SystemOverrides::default();
        let version = |v: &str| Version::parse(v).map_err(|e| format!("`{v}`: {e}"));
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line.split_once('=').ok_or_else(|| format!("`{line}` is not `key=value`"))?;
            match key {
                "driver" if value.is_empty() => o.driver = Some(None),
                "driver" => o.driver = Some(Some(version(value)?)),
                "cuda" => o.cuda = Some(version(value)?),
                "sm" => {
                    o.sm = Some(
                        value
                            .split(',')
                            .filter(|v| !v.is_empty())
                            .map(version)
                            .collect::<std::result::Result<_, _>>()?,
                    )
                }
                "glibc" => o.glibc = Some(version(value)?),
                "arch" => o.arch = Some(value.to_owned()),
                _ => return Err(format!("unknown fact `{key}`")),
            }
        }
        Ok(o)
    }

    /// `driver 535.104.05, sm 8.0 8.6`: the facts set, for a person.
    pub fn describe(&self) -> String {
        let fact = |l: &str| match l.split_once('=') {
            Some(("driver", "")) => "no driver".to_owned(),
            Some((k, v)) => format!("{k} {}", v.replace(',', " ")),
            None => l.to_owned(),
        };
        self.canonical().lines().map(fact).collect::<Vec<_>>().join(", ")
    }

    /// A canonical text of the overrides, for the request hash.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.driver {
            s.push_str(&format!("driver={}\n", d.as_ref().map(|v| v.to_string()).unwrap_or_default()));
        }
        if let Some(c) = &self.cuda {
            s.push_str(&format!("cuda={c}\n"));
        }
        if let Some(sm) = &self.sm {
            s.push_str(&format!("sm={}\n", sm.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")));
        }
        if let Some(g) = &self.glibc {
            s.push_str(&format!("glibc={g}\n"));
        }
        if let Some(a) = &self.arch {
            s.push_str(&format!("arch={a}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_text_reads_back() {
        let o = SystemOverrides {
            driver: Some(None),
            cuda: Some(Version::parse("12.2").unwrap()),
            sm: Some(vec![Version::parse("8.0").unwrap(), Version::parse("8.6").unwrap()]),
            glibc: None,
            arch: Some("aarch64".into()),
        };
        assert_eq!(SystemOverrides::from_canonical(&o.canonical()).unwrap(), o);
        assert_eq!(o.describe(), "no driver, cuda 12.2, sm 8.0 8.6, arch aarch64");
        assert!(SystemOverrides::from_canonical("gpu=1\n").is_err());
    }

    #[test]
    fn unmet_requirements_name_what_is_needed_and_what_is_here() {
        let req = |s: &str| Some(Requirement::parse(s).unwrap());
        let needs = SystemRequirements {
            driver: req(">=525.60.13"),
            sm: req(">=7.0"),
            arch: Some("aarch64".into()),
            ..Default::default()
        };
        let mut facts = SystemFacts {
            driver: Some(Version::parse("418.40").unwrap()),
            arch: Some("x86_64".into()),
            ..Default::default()
        };
        facts.origin.insert("driver", "ENVCTL_SYSTEM_DRIVER".into());
        assert_eq!(
            facts.unmet(&needs),
            [
                "the NVIDIA driver >=525.60.13 (this machine: 418.40, from ENVCTL_SYSTEM_DRIVER)",
                "the aarch64 architecture (this machine: x86_64)",
            ],
            "no GPU: a compute-capability need has nothing to fail"
        );
        facts.sm = vec![Version::parse("6.1").unwrap()];
        assert!(facts.unmet(&needs).contains(&"GPU compute capability >=7.0 (this machine: 6.1)".to_owned()));
        facts.driver = Some(Version::parse("550.54.14").unwrap());
        facts.sm = vec![Version::parse("8.6").unwrap(), Version::parse("7.5").unwrap()];
        facts.arch = Some("aarch64".into());
        assert!(facts.unmet(&needs).is_empty());
    }

    #[test]
    fn the_driver_table_gives_the_highest_cuda() {
        let c = |d: &str| cuda_for_driver(&Version::parse(d).unwrap()).map(|v| v.to_string());
        assert_eq!(c("410.48").as_deref(), Some("10.0"));
        assert_eq!(c("418.40").as_deref(), Some("10.1"));
        assert_eq!(c("440.33").as_deref(), Some("10.2"));
        assert_eq!(c("450.80.02").as_deref(), Some("11.8"));
        assert_eq!(c("535.104.05").as_deref(), Some("12.9"));
        assert_eq!(c("580.65").as_deref(), Some("13.9"));
        assert_eq!(c("300"), None);
    }
}
