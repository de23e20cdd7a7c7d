//! How a failure reaches the user: what envctl was doing, the chain of causes, then hints.

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    context: String,
    error: Box<dyn std::error::Error + Send + Sync>,
    hints: Vec<String>,
}

/// Result of a command.
pub type Result<T> = std::result::Result<T, Failure>;

impl Failure {
    /// A failure with context.
    pub fn new(
        context: impl Into<String>,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Failure {
        Failure { context: context.into(), error: error.into(), hints: Vec::new() }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hints.push(hint.into());
        self
    }

    /// The same failure as the cause of `context` (its message and hints kept).
    pub fn context_for(self, context: impl Into<String>) -> Failure {
        let hints = self.hints.clone();
        Failure { context: context.into(), error: format!("{}: {}", self.context, self.error).into(), hints }
    }

    /// What it says, in parts that travel (the daemon sends them to its client): what envctl was
    /// doing, the causes as `render` prints them after the first `caused by:`, and the hints.
    pub fn parts(&self) -> (String, String, Vec<String>) {
        let rendered = self.render();
        let causes = rendered.split_once("\n  caused by: ").map(|(_, rest)| rest).unwrap_or("");
        let causes = causes.split("\n\nhint: ").next().unwrap_or("").to_owned();
        (self.context.clone(), causes, self.hints.clone())
    }

    /// The failure [`Failure::parts`] describes.
    pub fn from_parts(context: String, causes: String, hints: Vec<String>) -> Failure {
        Failure { context, error: causes.into(), hints }
    }

    /// The message as printed: context, causes, hints.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n  caused by: {}", self.context, self.error);
        let mut last = self.error.to_string();
        let mut source = self.error.source();
        while let Some(s) = source {
            // A message that already quotes its cause (`cannot read `x`: denied`) is not followed
            // by the cause again.
            let text = s.to_string();
            if !last.contains(&text) {
                out.push_str(&format!("\n  caused by: {text}"));
            }
            last = text;
            source = s.source();
        }
        for h in &self.hints {
            out.push_str(&format!("\n\nhint: {h}"));
        }
        out
    }
}

/// Adds context to store errors, and the hints that go with each kind.
pub trait StoreContext<T> {
    /// Wraps the error with what envctl was doing.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> StoreContext<T> for std::result::Result<T, envctl_store::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            let hints = store_hints(&e);
            let mut f = Failure::new(what(), e);
            f.hints = hints;
            f
        })
    }
}

impl<T> StoreContext<T> for std::result::Result<T, envctl_core::Invalid> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(envctl_store::Error::from).context(what)
    }
}

fn store_hints(e: &envctl_store::Error) -> Vec<String> {
    use envctl_store::Error as E;
    match e {
        E::HashMismatch { .. } => vec![
            "nothing was added to the store. If the publisher replaced the file, confirm the new sha256 with them before changing the recipe".into(),
        ],
        E::HttpStatus { status: 404, .. } => vec!["check the URL; a mirror:// source tries every configured base in turn".into()],
        E::UnsafeEntry { .. } => vec![
            "nothing was written outside envctl's temporary directory and nothing was registered; do not use this archive".into(),
        ],
        E::UnknownMirror { name, .. } => vec![format!(
            "define it in the configuration file:\n\n    [mirrors]\n    {name} = [\"https://…\"]"
        )],
        E::UnknownIndex { name, .. } => vec![format!(
            "name it in the profile file, and commit it, so that every clone has it (a relative directory is relative to the file):\n\n    [indexes]\n    {name} = [\"https://…/simple\"]   # or a directory of wheels\n\nor define it for this machine in the configuration file's [indexes]{}",
            if name == "pypi" { "\n\nor give pip an index (`PIP_INDEX_URL`, or `index-url` in pip.conf): envctl uses it for `pypi`" } else { "" }
        )],
        E::NotOnIndex { name, tried, .. } => {
            let mut hints = vec![format!(
                "check the file name in the recipe, or add a base that has it to `[indexes] {name}` (the profile file's, or the configuration file's)"
            )];
            let pip = envctl_python::pipconf::pypi();
            // Only when the bases tried were pip's (a `pypi` of envctl's own is not pip's).
            let from_pip = pip.bases.iter().any(|b| {
                let b = b.trim_start_matches("file://").trim_end_matches('/');
                tried.iter().any(|t| t.contains(b))
            });
            if name == "pypi" && from_pip && !pip.origin.is_empty() {
                hints.push(format!("envctl's `pypi` is what pip's configuration says: {}", pip.origin.join("; ")));
                if pip.only_find_links {
                    hints.push("pip names only find-links directories, which pip reads beside its default index; envctl assumes no default index: set pip's `index-url` (pip.conf or PIP_INDEX_URL) or `[indexes] pypi`".into());
                }
            }
            hints
        }
        E::UnknownFormat(_) => vec!["give the format with --format (tar, tar.gz, tar.xz, tar.zst, tar.bz2, zip, wheel)".into()],
        E::TooNew { .. } => vec!["this store was written by a newer envctl; use that version, or another --home".into()],
        _ => Vec::new(),
    }
}

pub use envctl_recipes::nearest;

/// A byte count as messages write it: `512 B`, `1.5 KiB`, `2.3 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}
