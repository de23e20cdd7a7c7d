//! `envctl import nvidia-redist|python-build-standalone|conda …`: recipes from a publisher's
//! metadata, written into a recipe repository. Files whose text is already there are not
//! rewritten, so a re-run changes nothing; recipes already in the directory that this run does
//! not produce are kept.

use std::path::Path;

use envctl_recipes::import::{self, Generated};

use super::Status;
use crate::args::{ImportArgs, ImportCommand, ImportCondaArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn run(cmd: &ImportCommand, settings: &Settings) -> Result<Status> {
    match cmd {
        ImportCommand::NvidiaRedist(args) => {
            let inputs = read_all(args)?;
            let generated = import::nvidia::import(&inputs).map_err(|e| {
                Failure::new("cannot import NVIDIA's manifests", e)
                    .hint("give NVIDIA's redistrib_<release>.json files as they are published")
            })?;
            write_all(&args.out, &generated)
        }
        ImportCommand::Conda(args) => conda(args, settings),
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
    let (mut written, mut same) = (0, 0);
    for g in generated {
        let path = out.join(&g.path);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == g.text) {
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
