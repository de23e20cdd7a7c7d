//! The command line, as clap types. Dispatch is in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reproducible CUDA software environments for teams sharing GPU machines.
#[derive(Debug, Parser)]
#[command(name = "envctl", version, about, max_term_width = 100)]
pub struct Cli {
    /// envctl's home: the store, profiles and GC roots [default: $XDG_DATA_HOME/envctl]
    #[arg(long, global = true, env = "ENVCTL_HOME", value_name = "DIR", help_heading = "Global options")]
    pub home: Option<PathBuf>,

    /// Configuration file [default: $XDG_CONFIG_HOME/envctl/config.toml]
    #[arg(long, global = true, env = "ENVCTL_CONFIG", value_name = "FILE", help_heading = "Global options")]
    pub config: Option<PathBuf>,

    /// More logging (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,

    /// No progress output
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// A recipe repository layered over the bundled one and the configured ones (repeatable)
    #[arg(long = "recipes", global = true, value_name = "DIR", help_heading = "Global options")]
    pub recipes: Vec<PathBuf>,

    /// Resolve for the machine this file describes (keys: driver, cuda, sm, glibc, arch)
    #[arg(long = "system", global = true, value_name = "FILE", help_heading = "Global options")]
    pub system: Option<PathBuf>,

    /// The profile file's named environment to use (its `[environments]`), applied as the profile
    /// NAME-ENV [default: the default environment]
    #[arg(
        short,
        long,
        global = true,
        env = "ENVCTL_ENVIRONMENT",
        value_name = "ENV",
        help_heading = "Global options"
    )]
    pub environment: Option<String>,

    /// Give up waiting for a lock another envctl holds after this many seconds [default: wait]
    #[arg(
        long,
        global = true,
        env = "ENVCTL_LOCK_TIMEOUT",
        value_name = "SECONDS",
        help_heading = "Global options"
    )]
    pub timeout: Option<f64>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lock, install and switch a profile to what its file asks for
    Apply(ApplyArgs),
    /// Resolve a profile file and write its lock file beside it
    Lock(LockArgs),
    /// Start a shell (or run `-- CMD`) in a profile's environment
    Shell(ShellArgs),
    /// Run one command in a profile's environment and return its exit code
    Run(RunArgs),
    /// Binary caches: signing keys, pushing closures
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a profile's environment for `eval` or direnv
    Env(EnvArgs),
    /// Write a modulefile (Lmod, Environment Modules) that loads a profile
    Module(ModuleArgs),
    /// Jupyter kernels that run a profile's Python
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// The GPUs: who holds which, how much memory, which sessions; idle memory
    Gpus(GpusArgs),
    /// List profiles
    Profiles(JsonArgs),
    /// List an applied profile's packages, with versions and sizes
    List(ListArgs),
    /// Write a profile file, `envctl.toml`, in this directory
    Init(InitArgs),
    /// List the newer versions a profile file's requirements would allow (what `lock --update` would change)
    Outdated(OutdatedArgs),
    /// Add packages to a profile file (keeping its comments), then lock and apply it
    Add(EditArgs),
    /// Remove packages from a profile file (keeping its comments), then lock and apply it
    Remove(EditArgs),
    /// List (or delete) a profile's generations
    Generations(GenerationsArgs),
    /// Show what changed between two generations
    Diff(DiffArgs),
    /// Re-resolve a profile file (every package, or the NAMEs and what must move with them) and apply it
    Update(UpdateArgs),
    /// Apply exactly what a profile file's lock says (`apply --frozen`)
    Sync(SyncArgs),
    /// Switch a profile back to its previous generation (or `--to N`)
    Rollback(RollbackArgs),
    /// Delete a profile and all its generations (their store paths go at the next `gc`)
    Delete(DeleteArgs),
    /// Remove store paths that no generation, session or root uses
    Gc(GcArgs),
    /// Find packages by name or summary
    Search(SearchArgs),
    /// Show a package's versions, dependencies, system requirements and sources
    Show(ShowArgs),
    /// Show the chain from a requested package to NAME in a profile's resolution
    Why(WhyArgs),
    /// Show a profile's resolved dependency graph
    Graph(GraphArgs),
    /// Show this machine's facts (driver, CUDA, GPUs, glibc, arch) and check a profile against them
    Doctor(DoctorArgs),
    /// Work with the content-addressed store directly
    #[command(subcommand)]
    Store(StoreCommand),
    /// Write recipes from a publisher's own metadata
    #[command(subcommand)]
    Import(ImportCommand),
    /// Print a completion script: `envctl completions bash > /etc/bash_completion.d/envctl`
    Completions(CompletionsArgs),
    /// Print envctl's manual page (roff), generated from its command line: `envctl man | man -l -`
    Man,
    /// Serve a store several users share (run as the store's owner; see docs/guides/shared-machine.md)
    Daemon(DaemonArgs),
}

/// `envctl daemon`
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The socket to listen on [default: `[daemon] socket` of the configuration, else
    /// /run/envctl/daemon.sock; systemd's socket activation takes precedence]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// `envctl import python`
#[derive(Debug, Args)]
pub struct ImportPythonArgs {
    /// Interpreters (`/usr/bin/python3.11`) or installations (`~/.pyenv/versions/3.11.7`)
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The recipe repository to write into (`python/VERSION.toml`, `artifacts/python-VERSION.tar.zst`)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `envctl init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The profile's name [default: this directory's name]
    #[arg(long)]
    pub name: Option<String>,
}

/// `envctl add` and `envctl remove`
#[derive(Debug, Args)]
pub struct EditArgs {
    /// Packages: NAME, or NAME@REQ / NAME=REQ for `add` (`tensorflow@2.15`, `python=3.11`)
    #[arg(required = true, add = crate::complete::package())]
    pub packages: Vec<String>,
    /// The profile file [default: envctl.toml here or in a parent directory]
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Edit the file only; do not lock or apply it
    #[arg(long)]
    pub no_apply: bool,
}

/// `envctl outdated`
#[derive(Debug, Args)]
pub struct OutdatedArgs {
    /// The profile file [default: envctl.toml here or in a parent directory]
    pub file: Option<PathBuf>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The profile [default: the one `envctl.toml` here or in a parent directory names]
    #[arg(add = crate::complete::profile())]
    pub profile: Option<String>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
    /// Each requested package with what it depends on, as a tree
    #[arg(long, conflicts_with = "json")]
    pub tree: bool,
    /// With --tree: at most this many levels below each root (0: the roots alone)
    #[arg(long, requires = "tree", value_name = "N")]
    pub depth: Option<usize>,
    /// With --tree: what depends on this package, as cargo tree -i shows it
    #[arg(long, short = 'i', requires = "tree", value_name = "PACKAGE")]
    pub invert: Option<String>,
}

/// `envctl completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

/// `envctl import …`
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// NVIDIA's CUDA and cuDNN `redistrib_<release>.json` manifests
    NvidiaRedist(ImportArgs),
    /// python-build-standalone's download metadata (uv's `download-metadata.json`, or a pin file)
    PythonBuildStandalone(ImportArgs),
    /// Conda packages from a channel (its `repodata.json`, read as a stream) or a JSON list of records
    Conda(ImportCondaArgs),
    /// An installed CPython (pyenv's, a distribution's, a site build) as a relocatable `python`
    /// package and its recipe
    Python(ImportPythonArgs),
    /// Python packages: the closure pip resolves for REQUIREMENTs, one recipe per wheel
    Pip(ImportPipArgs),
}

/// `envctl import pip`
#[derive(Debug, Args)]
pub struct ImportPipArgs {
    /// What to import, as pip takes it (`tensorflow==2.15.1`, `torch[cuda]>=2.1`)
    #[arg(required_unless_present = "stacks")]
    pub requirements: Vec<String>,
    /// The interpreter the recipes are for, `X.Y` (or `X.Y.Z`); repeat it (or give `3.10,3.11`)
    /// for recipes that serve several, each wheel a source for its own Python
    #[arg(long, value_name = "X.Y", required_unless_present = "stacks", value_delimiter = ',')]
    pub python: Vec<String>,
    /// A TOML file of requests, each `[[stack]]` with `requirements` and `python` lists: one
    /// import of them all, so recipes shared by several stacks serve all their Pythons
    #[arg(long, value_name = "FILE", conflicts_with_all = ["requirements", "python", "report", "source"])]
    pub stacks: Option<PathBuf>,
    /// A distribution published only as source that may be built (pure Python; repeatable).
    /// pip then runs without platform options, so `--pip` must run on the target Python
    #[arg(long, value_name = "NAME")]
    pub source: Vec<String>,
    /// Platform tags wheels may have (pip's `--platform`; repeatable). Default: manylinux for this
    /// machine's glibc and architecture
    #[arg(long, value_name = "TAG")]
    pub platform: Vec<String>,
    /// The index name the recipes' sources use (its location comes from the configuration)
    #[arg(long, value_name = "NAME", default_value = "pypi")]
    pub index: String,
    /// How to run pip; it resolves through the user's own pip configuration
    #[arg(long, value_name = "COMMAND", default_value = "python3 -m pip")]
    pub pip: String,
    /// A pip installation report to read instead of running pip (`pip install --dry-run
    /// --report`); one per `--python`, in the same order
    #[arg(long, value_name = "FILE", conflicts_with = "pip")]
    pub report: Vec<PathBuf>,
    /// The recipe repository to write into (created if needed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `envctl import conda`
#[derive(Debug, Args)]
pub struct ImportCondaArgs {
    /// The channel's URL (`https://…`, `file://…`, `mirror://NAME`, a directory), or a JSON file
    /// listing package records (name, version, build, filename, sha256, depends)
    pub channel: String,
    /// What to import: NAME or NAME=VERSION (a VERSION may end in `*`)
    #[arg(required = true)]
    pub packages: Vec<String>,
    /// The recipe repository to write into (created if needed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The channel's platform folder
    #[arg(long, default_value = "linux-64")]
    pub subdir: String,
    /// Write sources as `mirror://NAME/<subdir>/<file>` instead of the channel's URL
    #[arg(long, value_name = "NAME")]
    pub mirror: Option<String>,
}

/// Arguments of every importer.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The metadata files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The recipe repository to write into (created if needed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `envctl lock`
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The profile file (its lock is written beside it, `.lock` for `.toml`) [default:
    /// `envctl.toml` here or in a parent directory]
    pub file: Option<PathBuf>,
    /// Re-resolve: every package, or only NAME (and what must move with it)
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub update: Option<String>,
    /// The lock's packages and what changed, as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl search`
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Text to look for in names and summaries
    pub text: String,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// NAME, or NAME@REQUIREMENT (`cudnn@8.9`)
    #[arg(add = crate::complete::package())]
    pub spec: String,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl why`
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// A profile file (resolved now), or an applied profile's name (its current generation)
    #[arg(value_name = "FILE|PROFILE", add = crate::complete::profile())]
    pub target: String,
    /// The package to explain
    #[arg(add = crate::complete::package())]
    pub name: String,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl graph`
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// A profile file (resolved now), or an applied profile's name (its current generation)
    #[arg(value_name = "FILE|PROFILE")]
    pub target: String,
    /// Graphviz DOT on stdout
    #[arg(long, conflicts_with = "json")]
    pub dot: bool,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A profile file whose lock to check against this machine
    pub file: Option<PathBuf>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Fetch, verify and unpack an artifact into the store; prints its store path
    Add(AddArgs),
    /// List valid store paths
    Ls(JsonArgs),
    /// Show what the store knows about a path
    Info(InfoArgs),
    /// Recompute every tree hash and check modes; exits 1 naming each damaged path
    Verify(VerifyArgs),
    /// Hard-link identical files across store paths
    #[command(alias = "optimize")]
    Optimise(JsonArgs),
    /// Write the closure of profiles or store paths to one signed file (for an air-gapped site)
    Export(ExportArgs),
    /// Check and register the store paths of a file `store export` wrote
    Import(StoreImportArgs),
}

/// `envctl store export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Profiles (their current generation's packages) or store paths
    #[arg(required = true, value_name = "PROFILE|PATH")]
    pub what: Vec<String>,
    /// The secret key to sign with (`envctl cache keygen` writes one)
    #[arg(long, value_name = "SECRET_FILE")]
    pub key: PathBuf,
    /// The file to write
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

/// `envctl store import`
#[derive(Debug, Args)]
pub struct StoreImportArgs {
    /// A file `envctl store export` wrote
    pub file: PathBuf,
}

/// `envctl gpus`
#[derive(Debug, Args)]
pub struct GpusArgs {
    #[command(subcommand)]
    pub command: Option<GpusCommand>,
    /// Only the processes that hold GPU memory and have not computed for `--for`
    #[arg(long)]
    pub idle: bool,
    /// How long without computing counts as idle (30m, 2h, 1d)
    #[arg(long = "for", value_name = "AGE", default_value = "30m")]
    pub idle_for: String,
    /// For each GPU, which bundled framework stacks its compute capability and the driver run
    #[arg(long)]
    pub fits: bool,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl gpus` subcommands
#[derive(Debug, Subcommand)]
pub enum GpusCommand {
    /// End the processes that hold GPU memory and have not computed for `--for` (yours; root's:
    /// anyone's)
    Reclaim(ReclaimArgs),
}

/// `envctl gpus reclaim`
#[derive(Debug, Args)]
pub struct ReclaimArgs {
    /// How long without computing counts as idle (30m, 2h, 1d)
    #[arg(long = "for", value_name = "AGE", default_value = "30m")]
    pub idle_for: String,
    /// Say what would be ended; end nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `envctl kernel`
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Register a profile as a Jupyter kernel that follows it (an apply or a rollback takes
    /// effect at the next kernel start)
    Install(KernelInstallArgs),
    /// The kernels envctl registered, with their profiles
    List(JsonArgs),
    /// Unregister a kernel envctl registered
    Remove(KernelRemoveArgs),
}

/// `envctl kernel install`
#[derive(Debug, Args)]
pub struct KernelInstallArgs {
    /// The profile (`vision`, or `TEAM/vision` on a shared machine)
    #[arg(add = crate::complete::profile())]
    pub profile: String,
    /// The kernel's name [default: `envctl-` and the profile's name]
    #[arg(long)]
    pub name: Option<String>,
    /// The name Jupyter shows [default: the profile, its frameworks and Python]
    #[arg(long)]
    pub display_name: Option<String>,
}

/// `envctl kernel remove`
#[derive(Debug, Args)]
pub struct KernelRemoveArgs {
    /// The kernel's name (as `envctl kernel list` shows it)
    pub name: String,
}

/// `envctl cache`
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Write a new signing key pair: DIR/NAME.secret (mode 0600) and DIR/NAME.public
    Keygen(KeygenArgs),
    /// Upload the closure of profiles or store paths to a binary cache, signed
    Push(PushArgs),
}

/// `envctl cache keygen`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name (`lab-cache-1`): signatures and trusted keys carry it
    pub name: String,
    /// Where to write the two files
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `envctl cache push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The cache: a directory (local disk, NFS) or file://DIR
    pub target: String,
    /// Profiles (their current generation's packages) or store paths
    #[arg(required = true, value_name = "PROFILE|PATH")]
    pub what: Vec<String>,
    /// The secret key to sign with
    #[arg(long, value_name = "SECRET_FILE")]
    pub key: PathBuf,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `envctl store verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Fetch each corrupted path's source again and put the path right when it unpacks to the
    /// registered tree
    #[arg(long)]
    pub repair: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `envctl store add`
#[derive(Debug, Args)]
pub struct AddArgs {
    /// http(s)://, file://, mirror://NAME/… URL, or a local path
    pub source: String,
    /// The artifact's sha256 (64 hex digits)
    #[arg(long)]
    pub sha256: String,
    /// Package name
    #[arg(long)]
    pub name: String,
    /// Package version
    #[arg(long)]
    pub version: String,
    /// Archive format: tar, tar.gz, tar.xz, tar.zst, tar.bz2, zip, wheel [default: from the name]
    #[arg(long)]
    pub format: Option<String>,
    /// Leading path components to drop from every entry
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub strip_components: u32,
    /// Directory of the package tree where the contents land (e.g. lib/python3.11/site-packages)
    #[arg(long, value_name = "DIR")]
    pub subdir: Option<String>,
}

/// Commands whose only option is `--json`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl store info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A store path (its full path, or its `<hash>-<name>-<version>` name)
    pub path: String,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl apply`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The profile file
    pub file: PathBuf,
    /// Profile name [default: the file's `name`, else its stem]; `TEAM/NAME` for a team's in a
    /// shared store
    #[arg(long, add = crate::complete::profile())]
    pub profile: Option<String>,
    /// In a shared store: apply the team's (Unix group's) profile named after the file
    #[arg(long, value_name = "TEAM", conflicts_with = "profile")]
    pub team: Option<String>,
    /// Print the plan (what would be fetched, what would change) and touch nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Fail if the lock file is missing or the profile file changed since it was written,
    /// instead of re-resolving
    #[arg(long, conflicts_with = "frozen")]
    pub locked: bool,
    /// Use the lock file as it is, even if the profile file changed since (fail if it is missing)
    #[arg(long)]
    pub frozen: bool,
    /// Use only the store and local sources (files, `file://` mirrors); name each artifact that
    /// would need the network
    #[arg(long)]
    pub offline: bool,
    /// What happened (or, with --dry-run, would happen) as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Options shared by `shell` and `run`.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// A profile name, or a profile file (applied first) [default: `envctl.toml` here or in a
    /// parent directory]
    #[arg(add = crate::complete::profile())]
    pub profile: Option<String>,
    /// An ad-hoc environment of these packages instead of a profile (NAME=REQ, repeatable)
    #[arg(short = 'p', long = "package", value_name = "NAME=REQ", add = crate::complete::package())]
    pub packages: Vec<String>,
    /// Start from an almost empty environment (HOME, USER, TERM, LANG, … and a minimal PATH)
    #[arg(long)]
    pub pure: bool,
    /// Lease N GPUs nobody else holds for as long as the session lives (CUDA_VISIBLE_DEVICES
    /// names them); inside a scheduler's job, the GPUs it gave
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
    /// With --gpus: wait in line until N GPUs are free instead of failing
    #[arg(long, requires = "gpus")]
    pub wait: bool,
}

/// `envctl shell`
#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// A command to run instead of the shell
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `envctl run`
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// The command and its arguments, after the profile (`--` before it is optional; without a
    /// profile, `envctl run -- CMD` runs it in the profile `envctl.toml` names)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Output formats of `envctl env`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EnvFormat {
    /// POSIX shell `export` lines
    Sh,
    /// fish `set -gx` lines
    Fish,
    /// A JSON object
    Json,
    /// For direnv's `.envrc`: `watch_file` lines (the profile switching, its file changing),
    /// then `export` lines
    Direnv,
    /// Environment Modules / Lmod commands (`prepend-path`, `setenv`) through the profile's link,
    /// which `envctl module` files evaluate at each `module load`
    Module,
}

/// `envctl module`
#[derive(Debug, Args)]
pub struct ModuleArgs {
    /// The profile (`vision`, or `TEAM/vision` on a shared machine)
    #[arg(add = crate::complete::profile())]
    pub profile: String,
    /// The directory of modulefiles to write it in (`module use DIR`) [default: `modulefiles`
    /// in envctl's home]
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

/// `envctl env`
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// A profile name, or a profile file [default: `envctl.toml` here or in a parent directory]
    #[arg(add = crate::complete::profile())]
    pub profile: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "sh")]
    pub format: EnvFormat,
}

/// `envctl generations`
#[derive(Debug, Args)]
pub struct GenerationsArgs {
    /// The profile
    #[arg(add = crate::complete::profile())]
    pub profile: String,
    /// Delete these generations (never the current one)
    #[arg(long, num_args = 1.., value_name = "N")]
    pub delete: Vec<u32>,
    /// Delete generations older than this (30d, 12h, 90m)
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Delete all but the newest K generations
    #[arg(long, value_name = "K")]
    pub keep: Option<usize>,
    /// With a deletion: list what would be deleted and delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl diff`
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The profile
    #[arg(add = crate::complete::profile())]
    pub profile: String,
    /// From this generation [default: the one before the current]
    pub a: Option<u32>,
    /// To this generation [default: the current one]
    pub b: Option<u32>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}

/// `envctl rollback`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The profile
    #[arg(add = crate::complete::profile())]
    pub profile: String,
    /// Switch to this generation instead of the previous one
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,
}

/// `envctl update`
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Packages to move to the newest version that fits [default: every package]
    #[arg(add = crate::complete::package())]
    pub names: Vec<String>,
    /// The profile file [default: `envctl.toml` here or in a parent directory]
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Update the lock only; do not apply it
    #[arg(long)]
    pub no_apply: bool,
}

/// `envctl sync`
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The profile file [default: `envctl.toml` here or in a parent directory]
    pub file: Option<PathBuf>,
    /// Use only the store and local sources
    #[arg(long)]
    pub offline: bool,
}

/// `envctl delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The profile
    #[arg(add = crate::complete::profile())]
    pub profile: String,
    /// List what would be deleted and delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `envctl gc`
#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed, with sizes, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// First delete every profile's generations older than AGE (30d, 12h, 90m; never a current
    /// one), then collect what only they used
    #[arg(long, value_name = "AGE")]
    pub delete_older_than: Option<String>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
}
