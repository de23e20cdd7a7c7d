//! Settings: flags, then environment variables, then the configuration file, then defaults.
//!
//! ```toml
//! recipes = ["/srv/team-recipes"]   # repositories layered over the bundled one
//! [mirrors]                         # mirror://NAME/rest expands to each base in turn
//! nvidia = ["https://…/compute"]
//! [indexes]                         # package indexes for `index = "NAME"` sources
//! pypi = ["https://…/simple", "/srv/wheels"]   # simple repositories or local directories
//! [store]
//! max-unpack-bytes = 68719476736
//! max-unpack-entries = 2000000
//! jobs = 4                          # parallel installs
//! fsync = true                      # flush each finished tree to disk before registering it
//! [fetch]
//! retries = 3
//! backoff-ms = 500
//! connect-timeout-secs = 15
//! read-timeout-secs = 60
//! deadline-secs = 10800            # a whole download, however steadily it trickles
//! trusted-keys = ["lab-1:BASE64…"]  # (top level) whose signed paths caches and imports may give
//! [[caches]]                        # asked before recipes' sources, lowest priority first
//! url = "/nfs/envctl-cache"         # a directory, file://DIR or http(s)://BASE
//! priority = 10
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Failure, Result};

/// Mirrors the bundled recipes use, with the publisher's own base; `[mirrors]` replaces them.
pub const DEFAULT_MIRRORS: &[(&str, &str)] = &[
    ("nvidia", "https://developer.download.nvidia.com/compute"),
    ("python-build-standalone", "https://github.com/astral-sh/python-build-standalone/releases/download"),
];

/// The configuration file's contents. Unknown keys are errors.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Recipe repositories layered over the bundled one.
    #[serde(default)]
    pub recipes: Vec<PathBuf>,
    /// Mirror bases.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Package index bases (simple repositories or local directories).
    #[serde(default)]
    pub indexes: BTreeMap<String, Vec<String>>,
    /// Store settings.
    #[serde(default)]
    pub store: StoreConfig,
    /// Fetch settings.
    #[serde(default)]
    pub fetch: FetchConfig,
    /// Binary caches asked before recipes' sources.
    #[serde(default)]
    pub caches: Vec<CacheConfig>,
    /// Public keys (`NAME:BASE64`) whose signatures make a cache's or an export's path acceptable.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// `envctl daemon`'s own settings (read by the daemon only).
    #[serde(default)]
    pub daemon: DaemonConfig,
}

/// `[daemon]`: who may use a shared store, and where it listens (see `docs/guides/shared-machine.md`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// The socket clients connect to.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Who may use the daemon at all: user names, `@group`, or `*` (everyone).
    #[serde(default = "everyone")]
    pub allowed_users: Vec<String>,
    /// Who may also collect garbage, repair and optimise the store: user names or `@group`.
    #[serde(default = "only_root")]
    pub trusted_users: Vec<String>,
    /// How long one build may run, in seconds.
    #[serde(default = "default_build_timeout")]
    pub build_timeout_secs: u64,
    /// End processes that have held GPU memory without computing for this long (`4h`); unset:
    /// never (`envctl gpus reclaim` still does it on request).
    #[serde(default)]
    pub gpu_idle_limit: Option<String>,
    /// How long before ending one its owner is warned (on its terminal, in the daemon's log and
    /// in `envctl gpus`).
    #[serde(default = "default_gpu_warning")]
    pub gpu_idle_warning: String,
    /// How often the daemon looks at the GPUs, in seconds.
    #[serde(default = "default_gpu_sample")]
    pub gpu_sample_secs: u64,
}

fn default_gpu_warning() -> String {
    "30m".into()
}

fn default_gpu_sample() -> u64 {
    60
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/envctl/daemon.sock")
}

fn everyone() -> Vec<String> {
    vec!["*".into()]
}

fn only_root() -> Vec<String> {
    vec!["root".into()]
}

fn default_build_timeout() -> u64 {
    3600
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        DaemonConfig {
            socket: default_socket(),
            allowed_users: everyone(),
            trusted_users: only_root(),
            build_timeout_secs: default_build_timeout(),
            gpu_idle_limit: None,
            gpu_idle_warning: default_gpu_warning(),
            gpu_sample_secs: default_gpu_sample(),
        }
    }
}

/// What `<home>/daemon.toml` says: the home belongs to a daemon, listening there. `envctl daemon`
/// writes it; every other command reads it and sends its changes to the daemon.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonHome {
    /// The daemon's socket.
    pub socket: PathBuf,
}

/// The name of the file that says a home belongs to a daemon.
pub const DAEMON_MARKER: &str = "daemon.toml";

/// `[[caches]]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheConfig {
    /// A directory, `file://DIR`, or an `http(s)://` base.
    pub url: String,
    /// Lower is asked first (default 50).
    pub priority: Option<i64>,
}

/// `[store]`
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// `max-unpack-bytes`: the most one archive may unpack to.
    pub max_unpack_bytes: Option<u64>,
    /// `max-unpack-entries`: the most entries one archive may hold.
    pub max_unpack_entries: Option<u64>,
    /// `jobs`: installs at once.
    pub jobs: Option<usize>,
    /// `fsync`: flush finished trees before registering them.
    pub fsync: Option<bool>,
}

/// `[fetch]`
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FetchConfig {
    /// `retries` of a transient failure.
    pub retries: Option<u32>,
    /// `backoff-ms` before the first retry.
    pub backoff_ms: Option<u64>,
    /// `connect-timeout-secs`.
    pub connect_timeout_secs: Option<u64>,
    /// `read-timeout-secs`.
    pub read_timeout_secs: Option<u64>,
    /// `deadline-secs` for a whole download.
    pub deadline_secs: Option<u64>,
}

/// Resolved settings.
#[derive(Clone)]
pub struct Settings {
    /// envctl's home.
    pub home: PathBuf,
    /// The parsed configuration (defaults when there is no file).
    pub config: Config,
    /// Where the configuration file is (or would be), to name in hints.
    pub config_path: Option<PathBuf>,
    /// `trusted-keys`, parsed.
    pub trusted_keys: Vec<envctl_store::PublicKey>,
    /// The invocation these settings were resolved for.
    pub invocation: Invocation,
    /// This process is the daemon serving the home (it changes the store itself).
    pub serving: bool,
    /// Store options to use instead of the configuration's (the daemon's: sandbox required).
    pub store_overrides: Option<envctl_store::StoreOptions>,
    /// What `<home>/daemon.toml` says, read once.
    daemon_home: std::sync::OnceLock<Option<DaemonHome>>,
    /// The `[recipes]` of the profile file these settings are for (see [`Settings::for_profile`]).
    profile_recipes: Vec<PathBuf>,
    /// Its `[indexes]`, local bases made absolute.
    profile_indexes: BTreeMap<String, Vec<String>>,
}

fn env_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() && Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
        _ => std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(fallback)),
    }
}

/// The global options of one invocation that say where things are: what the command line (or
/// a daemon's request) gives, before defaults and the configuration file fill in the rest.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `--home`/`ENVCTL_HOME`.
    pub home: Option<PathBuf>,
    /// `--config`/`ENVCTL_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--recipes`, in order.
    pub recipes: Vec<PathBuf>,
    /// `--system FILE`: the machine to resolve for instead of this one.
    pub system: Option<PathBuf>,
    /// `-e ENV`: the profile file's named environment to use.
    pub environment: Option<String>,
}

impl Settings {
    /// The `--system` file, if one was given.
    pub fn system(&self) -> Option<&Path> {
        self.invocation.system.as_deref()
    }

    /// Resolves settings for this invocation.
    pub fn load(invocation: &Invocation) -> Result<Settings> {
        let cli = invocation;
        let home = match &cli.home {
            Some(h) => absolute(h)?,
            None => env_dir("XDG_DATA_HOME", ".local/share").map(|d| d.join("envctl")).ok_or_else(|| {
                Failure::new("cannot find envctl's home", "neither HOME nor XDG_DATA_HOME is set")
                    .hint("give one with --home DIR or ENVCTL_HOME")
            })?,
        };
        let (path, explicit) = match &cli.config {
            Some(p) => (Some(p.clone()), true),
            None => (env_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("envctl/config.toml")), false),
        };
        let config = match path.clone() {
            Some(p) => match fs_err::read_to_string(&p) {
                Ok(text) => toml::from_str(&text).map_err(|e| {
                    Failure::new(format!("invalid configuration file `{}`", p.display()), e)
                        .hint("the keys are documented in docs/reference/configuration.md")
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::default(),
                Err(e) => return Err(Failure::new("cannot read the configuration file", e)),
            },
            None => Config::default(),
        };
        let mut trusted_keys = Vec::new();
        for text in &config.trusted_keys {
            let key = envctl_store::PublicKey::parse(text).map_err(|e| {
                Failure::new(
                    format!(
                        "invalid configuration file `{}`",
                        path.as_deref().map_or_else(|| "?".into(), |p| p.display().to_string())
                    ),
                    format!("trusted-keys: {e}"),
                )
                .hint("each entry is the one line of a `.public` file `envctl cache keygen` wrote")
            })?;
            trusted_keys.push(key);
        }
        Ok(Settings {
            home,
            config,
            config_path: path,
            trusted_keys,
            invocation: invocation.clone(),
            serving: false,
            store_overrides: None,
            daemon_home: Default::default(),
            profile_recipes: Vec::new(),
            profile_indexes: BTreeMap::new(),
        })
    }

    /// These settings for the profile file `profile`: the repositories its `[recipes]` names join
    /// the ones in force (after the configuration's and `ENVCTL_RECIPES`, before `--recipes`),
    /// and the indexes its `[indexes]` names join the configuration's, which wins for a name both
    /// give (a site's own mirror of an index). A teammate's clone then needs no configuration.
    pub fn for_profile(&self, profile: &envctl_recipes::ProfileFile) -> Settings {
        self.with_indexes(profile.recipe_dirs(), profile.index_bases())
    }

    /// [`Settings::for_profile`] from its parts.
    pub fn with_indexes(&self, recipes: Vec<PathBuf>, indexes: BTreeMap<String, Vec<String>>) -> Settings {
        let mut s = self.clone();
        s.profile_recipes = recipes;
        s.profile_indexes = indexes;
        s
    }

    /// The recipe repositories in force: the bundled one, then the configuration's `recipes`,
    /// then `ENVCTL_RECIPES` (`:`-separated), then `--recipes`, each overriding the ones before.
    pub fn repository(&self) -> Result<envctl_recipes::Repository> {
        let mut repo = envctl_recipes::Repository::bundled()
            .map_err(|e| Failure::new("the bundled recipe repository is broken", e))?;
        let mut dirs: Vec<PathBuf> = self.config.recipes.clone();
        if let Some(v) = std::env::var_os("ENVCTL_RECIPES") {
            dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs.extend(self.profile_recipes.iter().cloned());
        dirs.extend(self.invocation.recipes.iter().cloned());
        for dir in dirs {
            let layer = envctl_recipes::Repository::load_dir_cached(&dir, &self.home.join("cache/recipes"))
                .map_err(|e| {
                Failure::new(format!("cannot load the recipe repository `{}`", dir.display()), e)
            })?;
            repo.layer(layer);
        }
        Ok(repo)
    }

    /// The configuration file, for hints: its path, or where it would be read from.
    pub fn config_file(&self) -> String {
        self.config_path
            .as_ref()
            .map_or_else(|| "the configuration file".to_owned(), |p| format!("`{}`", p.display()))
    }

    /// The daemon this home belongs to, if it belongs to one and this process is not that daemon.
    pub fn daemon(&self) -> Option<DaemonHome> {
        if self.serving {
            return None;
        }
        self.daemon_home
            .get_or_init(|| {
                let text = std::fs::read_to_string(self.home.join(DAEMON_MARKER)).ok()?;
                toml::from_str(&text).ok()
            })
            .clone()
    }

    /// The user whose own profiles a bare name means, when the home is a daemon's.
    pub fn daemon_user(&self) -> Option<String> {
        // The name only: a session's start should not wait for the user's groups.
        self.daemon().map(|_| {
            let uid = rustix::process::geteuid().as_raw();
            crate::users::user_name(uid).unwrap_or_else(|| uid.to_string())
        })
    }

    /// The profile a command names (`NAME`, or `TEAM/NAME` in a daemon's home), and its
    /// profiles directory for reading.
    pub fn profile(&self, spec: &str) -> Result<(crate::profiles::ProfileRef, envctl_store::Profiles)> {
        // A team's profile names its owner: no need to ask the user database who this is.
        let user = match self.daemon() {
            Some(_) if spec.contains('/') => Some(String::new()),
            _ => self.daemon_user(),
        };
        let profile = crate::profiles::ProfileRef::parse(spec, user.as_deref())?;
        let profiles = profile.profiles(&self.home);
        Ok((profile, profiles))
    }

    /// The store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.home.join("store")
    }

    /// Store options from the configuration.
    pub fn store_options(&self) -> envctl_store::StoreOptions {
        if let Some(o) = &self.store_overrides {
            let mut o = o.clone();
            o.layer.get_or_insert_with(envctl_python::Python::layer);
            return o;
        }
        let mut o =
            envctl_store::StoreOptions { layer: Some(envctl_python::Python::layer()), ..Default::default() };
        // `index://` sources are the Python layer's to resolve.
        o.fetch.resolvers = envctl_store::Resolvers(vec![envctl_python::Python::package_index()]);
        let s = &self.config.store;
        let f = &self.config.fetch;
        if let Some(v) = s.max_unpack_bytes {
            o.limits.max_bytes = v;
        }
        if let Some(v) = s.max_unpack_entries {
            o.limits.max_entries = v;
        }
        if let Some(v) = s.jobs {
            o.jobs = v.max(1);
        }
        if let Some(v) = s.fsync {
            o.fsync = v;
        }
        // The publishers' own download roots, for the bundled recipes' `mirror://` sources; a site
        // replaces one by naming it in `[mirrors]` (an air-gapped site names a `file://` copy).
        o.fetch.mirrors = DEFAULT_MIRRORS
            .iter()
            .map(|(name, base)| ((*name).to_owned(), vec![(*base).to_owned()]))
            .chain(self.config.mirrors.clone())
            .collect();
        // `pypi` is where the user's pip looks, unless the configuration names it.
        o.fetch.indexes = self.config.indexes.clone();
        for (name, bases) in &self.profile_indexes {
            o.fetch.indexes.entry(name.clone()).or_insert_with(|| bases.clone());
        }
        if !o.fetch.indexes.contains_key("pypi") {
            let bases = envctl_python::pipconf::pypi_bases();
            if !bases.is_empty() {
                o.fetch.indexes.insert("pypi".into(), bases);
            }
        }
        if let Some(v) = f.retries {
            o.fetch.retries = v;
        }
        if let Some(v) = f.backoff_ms {
            o.fetch.backoff = Duration::from_millis(v);
        }
        if let Some(v) = f.connect_timeout_secs {
            o.fetch.connect_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.read_timeout_secs {
            o.fetch.read_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.deadline_secs {
            o.fetch.deadline = Duration::from_secs(v);
        }
        o
    }

    /// The binary caches the configuration names, with the keys their paths must be signed by;
    /// fetched with `fetch` (offline: only caches on a local directory are asked).
    pub fn caches(&self, fetch: &envctl_store::FetchOptions) -> envctl_store::Caches {
        let list: Vec<envctl_store::Cache> = self
            .config
            .caches
            .iter()
            .map(|c| envctl_store::Cache { url: c.url.clone(), priority: c.priority.unwrap_or(50) })
            .collect();
        envctl_store::Caches::new(&list, self.trusted_keys.clone(), fetch)
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Failure::new(format!("cannot use `{}`", p.display()), e))
}
