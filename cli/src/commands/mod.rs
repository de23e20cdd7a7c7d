//! Dispatch: one match, one file per command group, each returning an exit status.

mod apply;
mod cache;
mod daemon;
mod doctor;
mod edit;
mod env;
mod gc;
mod gpus;
mod import;
mod kernel;
mod profiles;
mod recipes;
mod resolve;
mod session;
mod store;

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::args::{Cli, Command};
use crate::printer;
use crate::settings::Settings;

/// Exit status of a command that ran: 0 success, 1 failure. Usage errors (2) are clap's.
pub enum Status {
    Success,
    Failure,
}

/// The umask the user started envctl with, restored for the programs sessions run.
static USER_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0o022);

/// envctl never creates anything group- or world-writable, whatever the caller's umask: another
/// user who could write to the home could re-point a profile or swap a lock file.
fn guard_umask() {
    use rustix::fs::Mode;
    let user = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(user | Mode::from_raw_mode(0o022));
    USER_UMASK.store(user.as_raw_mode(), std::sync::atomic::Ordering::Relaxed);
}

/// Gives the process the user's own umask back, just before it becomes the user's program.
pub fn restore_user_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(
        USER_UMASK.load(std::sync::atomic::Ordering::Relaxed),
    ));
}

/// Blocks of 128 KiB and more come from `mmap` and go back to the system when freed. glibc
/// otherwise raises that threshold the first time such a block is freed, after which the
/// installer's 256 KiB chunks and zstd's windows are carved from each thread's arena and stay
/// resident there: a 60-package apply peaked at 71–83 MB instead of 42–45 MB (see
/// docs/performance.md). Small allocations, and so the parallel recipe parse, are unaffected.
fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The command line, parsed. clap's model of every command is built for the parse and then
/// leaked rather than dropped: freeing its thousands of small allocations cost an eighth of the
/// instructions of a whole `envctl --version` (callgrind), and the process ends soon anyway.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let command = Box::leak(Box::new(Cli::command()));
    let mut matches = command.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(command))
}

/// The variable a completion script sets when it asks for candidates: envctl's own, not
/// clap_complete's default `COMPLETE`, which a user's environment may hold for something else.
const COMPLETE: &str = "ENVCTL_COMPLETE";

/// Parses the command line, runs the command, renders a failure. The one place exit codes are
/// decided.
pub fn run() -> ExitCode {
    // A shell asking for completions (see complete.rs) is answered, and nothing else runs.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).var(COMPLETE).complete();
    return_large_blocks();
    guard_umask();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    init_logging(cli.verbose);
    printer::set_quiet(cli.quiet);
    envctl_store::set_wait_policy(envctl_store::WaitPolicy {
        timeout: cli.timeout.filter(|t| t.is_finite() && *t >= 0.0).map(std::time::Duration::from_secs_f64),
        notice: lock_notice,
    });
    // Generated from the command line itself; no settings, home or store involved.
    match &cli.command {
        Command::Completions(args) => {
            use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
            let shell: &dyn EnvCompleter = match args.shell {
                clap_complete::Shell::Elvish => &Elvish,
                clap_complete::Shell::Fish => &Fish,
                clap_complete::Shell::PowerShell => &Powershell,
                clap_complete::Shell::Zsh => &Zsh,
                _ => &Bash,
            };
            // The script calls `ENVCTL_COMPLETE=SHELL envctl -- WORDS…` at each Tab, answered at
            // the top of `run`.
            let mut out = Vec::new();
            if let Err(e) = shell.write_registration(COMPLETE, "envctl", "envctl", "envctl", &mut out) {
                printer::info(&format!("error: cannot write the completion script: {e}"));
                return ExitCode::from(1);
            }
            printer::raw(&out);
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            let mut out = Vec::new();
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            if let Err(e) = page.render(&mut out) {
                printer::info(&format!("error: cannot render the manual page: {e}"));
                return ExitCode::from(1);
            }
            printer::raw(&out);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let invocation = envctl_ops::Invocation {
        home: cli.home.clone(),
        config: cli.config.clone(),
        recipes: cli.recipes.clone(),
        system: cli.system.clone(),
        environment: cli.environment.clone(),
    };
    let result = Settings::load(&invocation).and_then(|settings| match &cli.command {
        Command::Store(crate::args::StoreCommand::Export(args)) => cache::export(args, &settings),
        Command::Store(crate::args::StoreCommand::Import(args)) => cache::import(args, &settings, &cli),
        Command::Store(cmd) => store::run(cmd, &settings, &cli),
        Command::Cache(cmd) => cache::run(cmd, &settings, &cli),
        Command::Import(cmd) => import::run(cmd, &settings),
        Command::Lock(args) => resolve::lock(args, &settings),
        Command::Apply(args) => apply::run(args, &settings, &cli),
        Command::Shell(args) => session::session(&args.session, args.command.clone(), &settings, &cli),
        Command::Run(args) => {
            let (session, command) = session::run_words(&args.session, &args.command);
            if command.is_empty() {
                return Err(crate::error::Failure::new("no command to run", "give one after the profile").hint(
                    "`envctl run PROFILE CMD ARGS…`, or `envctl run -- CMD ARGS…` in the profile of `envctl.toml`; `envctl shell PROFILE` starts a shell",
                ));
            }
            session::session(&session, command, &settings, &cli)
        }
        Command::Env(args) => env::env(args, &settings, &cli),
        Command::Module(args) => env::module(args, &settings, &cli),
        Command::Kernel(command) => kernel::run(command, &settings, &cli),
        Command::Gpus(args) => gpus::run(args, &settings),
        Command::Profiles(args) => profiles::list(args, &settings, &cli),
        Command::List(args) => profiles::packages(args, &settings, &cli),
        Command::Init(args) => edit::init(args),
        Command::Outdated(args) => resolve::outdated(args, &settings),
        Command::Add(args) => edit::add(args, &settings, &cli),
        Command::Remove(args) => edit::remove(args, &settings, &cli),
        Command::Generations(args) => profiles::generations(args, &settings, &cli),
        Command::Diff(args) => profiles::diff(args, &settings, &cli),
        Command::Rollback(args) => profiles::rollback(args, &settings, &cli),
        Command::Delete(args) => profiles::delete(args, &settings, &cli),
        Command::Update(args) => {
            let file = edit::profile_file(args.file.as_deref())?;
            let update = match args.names.is_empty() {
                true => resolve::Update::Everything,
                false => resolve::Update::Packages(args.names.clone()),
            };
            resolve::relock_environments(&file, &update, &settings, false)?;
            if args.no_apply {
                return Ok(Status::Success);
            }
            apply::apply(&file, &Default::default(), &settings, &cli).map(|_| Status::Success)
        }
        Command::Sync(args) => {
            let file = edit::profile_file(args.file.as_deref())?;
            let options = envctl_ops::apply::ApplyOptions { frozen: true, offline: args.offline, ..Default::default() };
            apply::apply(&file, &options, &settings, &cli).map(|_| Status::Success)
        }
        Command::Gc(args) => gc::run(args, &settings, &cli),
        Command::Why(args) => resolve::why(args, &settings),
        Command::Graph(args) => resolve::graph(args, &settings),
        Command::Search(args) => recipes::search(args, &settings),
        Command::Show(args) => recipes::show(args, &settings),
        Command::Doctor(args) => doctor::run(args, &settings),
        Command::Daemon(args) => daemon::run(args, &settings),
        Command::Completions(_) | Command::Man => unreachable!("answered above"),
    });
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Failure) => ExitCode::from(1),
        Err(failure) => {
            printer::info(&failure.render());
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .without_time()
        .with_target(false)
        .init();
}

/// What a command says when it has waited a second for a lock: who holds it, and that it keeps
/// waiting (cargo's "Blocking waiting for file lock", with the holder named).
fn lock_notice(waiting: &envctl_store::Waiting<'_>) {
    let by = if waiting.holders.is_empty() {
        "another process".to_owned()
    } else {
        waiting.holders.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    printer::info(&format!(
        "waiting for the lock `{}`, held by {by} (--timeout SECONDS stops waiting)",
        waiting.path.display()
    ));
}
