//! The command line, as clap types. Dispatch is in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reproducible CUDA software environments for teams sharing GPU machines.
#[derive(Debug, Parser)]
#[command(name = "envctl", version, about, max_term_width = 100)]
pub struct Cli {
    /// envctl's home: the store, profiles and GC roots [default: $XDG_DATA_HOME/envctl]
    #[arg(long, global = true, env = "ENVCTL_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Configuration file [default: $XDG_CONFIG_HOME/envctl/config.toml]
    #[arg(long, global = true, env = "ENVCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More logging (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No progress output
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the content-addressed store directly
    #[command(subcommand)]
    Store(StoreCommand),
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
    /// Recompute every tree hash; exits 1 naming each corrupted path
    Verify(JsonArgs),
    /// Hard-link identical files across store paths
    #[command(alias = "optimize")]
    Optimise(JsonArgs),
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
