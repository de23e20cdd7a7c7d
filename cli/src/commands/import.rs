//! `envctl import nvidia-redist|python-build-standalone|conda …`: recipes from a publisher's
//! metadata, written into a recipe repository. Files whose text is already there are not
//! rewritten, so a re-run changes nothing; recipes already in the directory that this run does
//! not produce are kept.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::import::{self, Generated};

use super::Status;
use crate::args::{ImportArgs, ImportCommand, ImportCondaArgs, ImportPipArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn run(cmd: &ImportCommand, settings: &Settings) -> Result<Status> {
    match cmd {
        ImportCommand::Pip(args) => pip(args, settings),
        ImportCommand::NvidiaRedist(args) => {
            let inputs = read_all(args)?;
            let generated = import::nvidia::import(&inputs).map_err(|e| {
                Failure::new("cannot import NVIDIA's manifests", e)
                    .hint("give NVIDIA's redistrib_<release>.json files as they are published")
            })?;
            write_all(&args.out, &generated)
        }
        ImportCommand::Conda(args) => conda(args, settings),
        ImportCommand::Python(args) => python(args),
        ImportCommand::PythonBuildStandalone(args) => {
            let inputs = read_all(args)?;
            let generated = import::pbs::import(&inputs).map_err(|e| {
                Failure::new("cannot import python-build-standalone's metadata", e)
                    .hint("give uv's download-metadata.json (or a file of the same entries)")
            })?;
            write_all(&args.out, &generated)
        }
    }
}

/// Every input as `(file name as given, text)`, sorted by file name so that the order they are
/// given in changes nothing.
fn read_all(args: &ImportArgs) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in &args.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Failure::new(format!("cannot read `{}`", f.display()), e))?;
        out.push((f.display().to_string(), text));
    }
    out.sort_by(|a, b| {
        let name = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
        name(&a.0).cmp(&name(&b.0))
    });
    Ok(out)
}

fn write_all(out: &Path, generated: &[Generated]) -> Result<Status> {
    write_files(out, generated, false)
}

/// Writes the recipes; with `keep`, a recipe file already there is left as it is (a version
/// imported before, perhaps edited since, stays).
fn write_files(out: &Path, generated: &[Generated], keep: bool) -> Result<Status> {
    let (mut written, mut same) = (0, 0);
    for g in generated {
        let path = out.join(&g.path);
        if (keep && path.exists()) || std::fs::read_to_string(&path).is_ok_and(|t| t == g.text) {
            same += 1;
            continue;
        }
        let fail = |e: std::io::Error| Failure::new(format!("cannot write `{}`", path.display()), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        // Temp, then rename: a reader of the repository never sees half a recipe.
        let tmp = path.with_extension(format!("toml.tmp{}", std::process::id()));
        std::fs::write(&tmp, &g.text).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        written += 1;
    }
    printer::status(&format!(
        "wrote {} into `{}` ({} unchanged)",
        printer::count(written, "recipe"),
        out.display(),
        same
    ));
    Ok(Status::Success)
}

fn conda(args: &ImportCondaArgs, settings: &Settings) -> Result<Status> {
    use envctl_recipes::import::conda::{self, Record, Spec};
    let specs: Vec<Spec> = args.packages.iter().map(|p| Spec::parse(p)).collect();
    let channel = args.channel.trim_end_matches('/');
    let (records, origin, base): (Vec<(String, Record)>, String, String) = if channel.ends_with(".json") {
        // A list of records that carry their own file names (and URLs).
        let text = std::fs::read_to_string(channel)
            .map_err(|e| Failure::new(format!("cannot read `{channel}`"), e))?;
        let name = channel.rsplit('/').next().unwrap_or(channel).to_owned();
        let records = conda::records_from_list(&text, &name)
            .map_err(|e| Failure::new("cannot import conda packages", e))?;
        (records, name, String::new())
    } else {
        let url = format!("{channel}/{}/repodata.json", args.subdir);
        let fetcher = envctl_store::Fetcher::new(settings.store_options().fetch);
        let fail = |e: envctl_store::Error| {
            Failure::new(format!("cannot read the channel's `{url}`"), e)
                .hint("give the channel's base URL, the folder that holds linux-64/ and noarch/")
        };
        let location =
            fetcher.locations(&url).map_err(fail)?.into_iter().next().expect("one location at least");
        let opened = fetcher.open(&location).map_err(fail)?;
        let names = specs.iter().map(|s| s.name.clone()).collect();
        let records = conda::read_repodata(opened.reader, &names)
            .map_err(|e| Failure::new(format!("cannot read the channel's `{url}`"), e))?;
        (records, format!("{channel} ({})", args.subdir), format!("{channel}/{}", args.subdir))
    };
    let records = match &args.mirror {
        Some(m) => conda::with_mirror(records, m, &args.subdir),
        None => records,
    };
    let (generated, skipped) = conda::import(records, &base, &specs, &origin)
        .map_err(|e| Failure::new("cannot import conda packages", e))?;
    for s in &skipped {
        printer::info(&format!("warning: left out {s}"));
    }
    write_all(&args.out, &generated)
}

/// `envctl import pip`: pip resolves the closure for the target (`install --dry-run --report`,
/// wheels only, through the user's own pip configuration); each distribution becomes a recipe.
/// One request of a `--stacks` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stack {
    requirements: Vec<String>,
    python: Vec<String>,
    /// How to run pip for this stack (else `--pip`).
    #[serde(default)]
    pip: Option<String>,
    /// Distributions published only as source that may be built.
    #[serde(default)]
    source: Vec<String>,
    /// Dependencies the metadata leaves out: distribution → dependency → requirement.
    #[serde(default)]
    add: BTreeMap<String, BTreeMap<String, String>>,
    /// Hints for dependencies that cannot be met: distribution → dependency → text.
    #[serde(default)]
    hints: BTreeMap<String, BTreeMap<String, String>>,
    /// System needs the metadata leaves out: distribution → key (`sm`) → requirement.
    #[serde(default)]
    system: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stacks {
    stack: Vec<Stack>,
}

fn pip(args: &ImportPipArgs, settings: &Settings) -> Result<Status> {
    use envctl_python::import::{Options, SdistRef, Target, import_many};
    use envctl_recipes::PackageName;
    let facts = crate::system::facts(None, settings.system())?;
    let arch = facts.arch.clone().unwrap_or_else(|| "x86_64".into());
    if !args.report.is_empty() && args.report.len() != args.python.len() {
        return Err(Failure::new(
            "cannot import Python packages",
            format!("{} reports for {} Pythons", args.report.len(), args.python.len()),
        )
        .hint("give one --report per --python, in the same order"));
    }
    let stacks = match &args.stacks {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::new(format!("cannot read `{}`", file.display()), e))?;
            let stacks: Stacks = toml::from_str(&text)
                .map_err(|e| Failure::new(format!("cannot read `{}`", file.display()), e))
                .map_err(|f| f.hint("give [[stack]] tables, each with `requirements` and `python` lists"))?;
            stacks.stack
        }
        None => vec![Stack {
            requirements: args.requirements.clone(),
            python: args.python.clone(),
            pip: None,
            source: args.source.clone(),
            add: BTreeMap::new(),
            hints: BTreeMap::new(),
            system: BTreeMap::new(),
        }],
    };
    let platforms = if args.platform.is_empty() {
        let glibc = facts.glibc.as_ref().map(|g| g.components().to_vec()).unwrap_or_else(|| vec![2, 17]);
        manylinux_tags(glibc.get(1).copied().unwrap_or(17), &arch)
    } else {
        args.platform.clone()
    };
    let by_name = |table: &BTreeMap<String, BTreeMap<String, String>>| -> Result<_> {
        table
            .iter()
            .map(|(n, v)| {
                Ok((PackageName::parse(n).map_err(|e| Failure::new("cannot read the stacks", e))?, v.clone()))
            })
            .collect::<Result<BTreeMap<_, _>>>()
    };
    let mut reports = Vec::new();
    for stack in &stacks {
        for (i, python) in stack.python.iter().enumerate() {
            let target = Target {
                python: python.clone(),
                arch: arch.clone(),
                index: args.index.clone(),
                add: by_name(&stack.add)?,
                hints: by_name(&stack.hints)?,
                system: by_name(&stack.system)?,
            };
            let (report, origin) = match args.report.get(i) {
                Some(file) => (
                    std::fs::read_to_string(file)
                        .map_err(|e| Failure::new(format!("cannot read `{}`", file.display()), e))?,
                    file.display().to_string(),
                ),
                None => (
                    run_pip(stack.pip.as_deref().unwrap_or(&args.pip), stack, python, &platforms)?,
                    format!("pip's report of {} for CPython {python}", stack.requirements.join(" ")),
                ),
            };
            reports.push((report, target, origin));
        }
    }
    let reports: Vec<(&str, &Target, &str)> =
        reports.iter().map(|(r, t, o)| (r.as_str(), t, o.as_str())).collect();
    // A source distribution is put into the store and looked into (build system, compiler).
    let mut inspector = crate::sdist::Inspector::new(settings);
    let mut inspect = |sdist: &SdistRef| inspector.look_into(sdist);
    let options = Options { inspect: Some(&mut inspect) };
    let generated =
        import_many(&reports, options).map_err(|e| Failure::new("cannot import Python packages", e))?;
    write_files(&args.out, &generated, true)
}

/// A list of platform tags, shortened when it is the long manylinux list.
fn tags_shown(tags: &[String]) -> String {
    match tags {
        [first, .., last] if tags.len() > 3 => format!("{first} … {last} ({} tags)", tags.len()),
        _ => tags.join(", "),
    }
}

/// Every manylinux tag a machine with glibc 2.`minor` runs, newest first: pip takes `--platform`
/// tags literally, so the older ones are spelled out (with their legacy aliases).
fn manylinux_tags(minor: u64, arch: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in (5..=minor).rev() {
        out.push(format!("manylinux_2_{m}_{arch}"));
        match m {
            17 => out.push(format!("manylinux2014_{arch}")),
            12 => out.push(format!("manylinux2010_{arch}")),
            5 => out.push(format!("manylinux1_{arch}")),
            _ => {}
        }
    }
    out
}

fn run_pip(pip: &str, stack: &Stack, python: &str, platforms: &[String]) -> Result<String> {
    let requirements = &stack.requirements;
    let words: Vec<&str> = pip.split_whitespace().collect();
    let Some((program, lead)) = words.split_first() else {
        return Err(Failure::new("cannot run pip", "--pip is empty"));
    };
    let shown = format!("{pip} install --dry-run --report … {}", requirements.join(" "));
    let work = tempfile::tempdir().map_err(|e| Failure::new("cannot make a temporary directory", e))?;
    let report = work.path().join("report.json");
    let mut cmd = std::process::Command::new(program);
    cmd.args(lead).args(["install", "--dry-run", "--ignore-installed", "--quiet"]);
    if stack.source.is_empty() {
        cmd.args(["--only-binary=:all:", "--implementation", "cp"])
            .arg("--python-version")
            .arg(python)
            // Platform options need a target; a dry run writes nothing there.
            .arg("--target")
            .arg(work.path().join("target"));
        for p in platforms {
            cmd.arg("--platform").arg(p);
        }
    } else {
        // pip builds an sdist's metadata with its own interpreter and refuses platform options
        // then: it resolves for the Python it runs on, which must be the target.
        let runs_on = pip_python(program, lead)?;
        if runs_on.split('.').take(2).ne(python.split('.').take(2)) {
            return Err(Failure::new(
                format!("cannot resolve {} for CPython {python}", requirements.join(" ")),
                format!("`{pip}` runs on Python {runs_on}"),
            )
            .hint(format!("a distribution published only as source ({}) needs pip on the target Python: give --pip \"python{python} -m pip\"", stack.source.join(", "))));
        }
        cmd.arg("--only-binary=:all:").arg(format!("--no-binary={}", stack.source.join(",")));
    }
    cmd.arg("--report").arg(&report);
    cmd.args(requirements);
    let out = cmd.output().map_err(|e| {
        Failure::new(format!("cannot run `{shown}`"), e)
            .hint("give the command that runs pip with --pip (pip 22.2 or later)")
    })?;
    if !out.status.success() {
        return Err(Failure::new(
            format!("pip could not resolve {}", requirements.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
        .hint(format!("pip ran as `{shown}` for CPython {python} on {}", tags_shown(platforms)))
        .hint("envctl imports wheels, and source distributions named with --source (pure Python only)"));
    }
    std::fs::read_to_string(&report).map_err(|e| Failure::new("pip wrote no report", e))
}

/// The `X.Y.Z` of the Python a pip command runs on.
fn pip_python(program: &str, lead: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(lead)
        .arg("--version")
        .output()
        .map_err(|e| Failure::new(format!("cannot run `{program}`"), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "pip 22.0.4 from /…/site-packages/pip (python 3.7)"
    text.rsplit("(python ")
        .next()
        .and_then(|t| t.split(')').next())
        .filter(|v| out.status.success() && v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .ok_or_else(|| {
            let said = [text.trim(), String::from_utf8_lossy(&out.stderr).trim()].join("\n");
            Failure::new(format!("cannot tell which Python `{program}` runs on"), said.trim().to_owned())
        })
}

/// `envctl import python`: each interpreter as a relocatable package beside its recipe (see
/// envctl-python's `interpreter.rs`), or refused with the exact reason.
fn python(args: &crate::args::ImportPythonArgs) -> Result<Status> {
    let mut failed = Vec::new();
    for path in &args.paths {
        match envctl_python::interpreter::import(path, &args.out, &std::env::temp_dir()) {
            Ok(done) => {
                let i = &done.interpreter;
                for (file, old, new) in &done.rewritten {
                    tracing::info!("{file}: run path `{old}` -> `{new}`");
                }
                if let Some((_, old, _)) = done.rewritten.first() {
                    printer::info(&format!(
                        "made {} run paths relative (`{old}` and the like; -v lists them)",
                        done.rewritten.len()
                    ));
                }
                printer::status(&format!(
                    "python {} from {}: wrote {} and {} ({}); a copy unpacked elsewhere ran as the same build",
                    i.version,
                    i.prefix.display(),
                    done.recipe.display(),
                    done.archive.display(),
                    printer::bytes(std::fs::metadata(&done.archive).map(|m| m.len()).unwrap_or(0))
                ));
            }
            Err(why) => failed.push(format!("{}: {why}", path.display())),
        }
    }
    if !failed.is_empty() {
        return Err(Failure::new(
            "cannot import the interpreter(s) as relocatable packages",
            failed.join("\n"),
        ));
    }
    printer::info(&format!(
        "add `{}` to `recipes` in the configuration (or a profile file's [recipes]), then `python = \"VERSION\"` in [packages]",
        args.out.display()
    ));
    Ok(Status::Success)
}
