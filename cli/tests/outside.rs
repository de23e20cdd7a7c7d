//! A profile outside `envctl run` and `envctl shell`: loaded by the module systems HPC sites use
//! (Lmod, Environment Modules) and by direnv, with the real tools, over the two-team example's
//! stand-in artifacts. Each follows the profile: an apply or a rollback takes effect at the next
//! load with no new file.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, Sandbox, copy_tracked};

/// The two-team example in a sandbox with the NLP team's profile applied.
fn applied() -> Sandbox {
    let sb = Sandbox::new();
    copy_tracked(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"), &sb.path("examples"));
    let nlp = sb.path("examples/nlp.toml").display().to_string();
    envctl(&sb, &["apply", &nlp]).ok();
    sb
}

fn envctl(sb: &Sandbox, args: &[&str]) -> Run {
    let recipes = sb.path("examples/recipes").display().to_string();
    let mut all = vec!["--recipes", &recipes];
    all.extend_from_slice(args);
    sb.run_env(&all, &[("ENVCTL_SYSTEM_DRIVER", "550.54.14")])
}

/// Upgrades the NLP team to TensorFlow 2.16 (a new generation).
fn upgrade(sb: &Sandbox) {
    let nlp = sb.path("examples/nlp.toml");
    let text = std::fs::read_to_string(&nlp).unwrap().replace("\"2.15\"", "\"2.16\"");
    std::fs::write(&nlp, text).unwrap();
    envctl(sb, &["apply", &nlp.display().to_string()]).ok();
}

/// Runs the bash `script` with the sandbox's environment; `$1` is the envctl binary.
fn bash(sb: &Sandbox, script: &str) -> Run {
    Run::from(sb.through(&["bash", "-c", script, "bash"], &[]).output().unwrap())
}

const VERSIONS: &str = r#"python3 --version; python3 -c 'import tensorflow; print(tensorflow.__version__)'"#;

/// Loads the modulefile through `init` (a module system's bash initialisation), prints the
/// versions, unloads it and says what is left.
fn load_and_unload(sb: &Sandbox, init: &str, modules: &Path) -> String {
    let script = format!(
        "set -e; {init}; module use '{}'; module load nlp; {VERSIONS}; echo \"CUDA_HOME=$CUDA_HOME\"; module unload nlp; echo \"after: ${{CUDA_HOME-unset}} $(command -v nvcc || echo no-nvcc)\"",
        modules.display()
    );
    bash(sb, &script).success().stdout
}

fn module_file(sb: &Sandbox) -> PathBuf {
    let modules = sb.path("modulefiles");
    let out = envctl(sb, &["module", "nlp", "--out", &modules.display().to_string()]);
    out.ok();
    assert!(out.stderr.contains("module load nlp"), "{}", out.stderr);
    assert!(std::fs::read_to_string(modules.join("nlp")).unwrap().starts_with("#%Module"));
    modules
}

#[test]
fn lmod_loads_the_profile_and_the_next_load_follows_an_apply_and_a_rollback() {
    let init = envctl_testkit::tools::package_file("/usr/share/lmod/lmod/init/bash", "lmod");
    let init = format!("source '{}'", init.display());
    let sb = applied();
    let modules = module_file(&sb);
    let out = load_and_unload(&sb, &init, &modules);
    assert!(out.contains("Python 3.11.9 (stand-in)\n2.15.1\n"), "{out}");
    assert!(out.contains(&format!("CUDA_HOME={}", sb.path("envctl/profiles/nlp").display())), "{out}");
    assert!(out.contains("after: unset no-nvcc"), "unloading takes everything back:\n{out}");
    upgrade(&sb);
    assert!(load_and_unload(&sb, &init, &modules).contains("\n2.16.1\n"));
    envctl(&sb, &["rollback", "nlp"]).ok();
    assert!(load_and_unload(&sb, &init, &modules).contains("\n2.15.1\n"));
}

#[test]
fn environment_modules_loads_the_same_file() {
    // Environment Modules conflicts with Lmod as a package: its modulecmd runs unpacked.
    let modulecmd =
        envctl_testkit::tools::unpacked_file("usr/lib/x86_64-linux-gnu/modulecmd.tcl", "environment-modules");
    let tclsh = envctl_testkit::tools::tool("tclsh", "tcl");
    let init =
        format!("module() {{ eval \"$('{}' '{}' bash \"$@\")\"; }}", tclsh.display(), modulecmd.display());
    let sb = applied();
    let modules = module_file(&sb);
    let out = load_and_unload(&sb, &init, &modules);
    assert!(out.contains("Python 3.11.9 (stand-in)\n2.15.1\n"), "{out}");
    assert!(out.contains("after: unset no-nvcc"), "{out}");
    upgrade(&sb);
    assert!(load_and_unload(&sb, &init, &modules).contains("\n2.16.1\n"));
}

#[test]
fn a_broken_profile_fails_the_module_load_with_envctls_words() {
    let init = envctl_testkit::tools::package_file("/usr/share/lmod/lmod/init/bash", "lmod");
    let sb = applied();
    let modules = module_file(&sb);
    envctl(&sb, &["delete", "nlp"]).ok();
    let script = format!("source '{}'; module use '{}'; module load nlp", init.display(), modules.display());
    let out = bash(&sb, &script);
    let all = format!("{}{}", out.stdout, out.stderr);
    // Lmod wraps its message at the terminal's width, wherever the module's path ends.
    let words = all.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("envctl could not give the profile `nlp`"), "{all}");
}

#[test]
fn direnv_loads_the_profile_in_a_directory_and_watches_for_switches() {
    let direnv = envctl_testkit::tools::tool("direnv", "direnv");
    let sb = applied();
    let project = sb.path("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join(".envrc"), "eval \"$(\"$ENVCTL\" env --format direnv nlp)\"\n").unwrap();
    let printed = envctl(&sb, &["env", "--format", "direnv", "nlp"]).success().stdout;
    assert!(
        printed.starts_with(&format!("watch_file '{}'\n", sb.path("envctl/profiles").display())),
        "{printed}"
    );
    let direnv = direnv.display().to_string();
    let script = format!(
        "export ENVCTL=\"$1\"; cd '{}'; '{direnv}' allow . && '{direnv}' exec . sh -c \"{}\"",
        project.display(),
        VERSIONS.replace('"', "\\\"")
    );
    let out = bash(&sb, &script).success().stdout;
    assert!(out.contains("Python 3.11.9 (stand-in)\n2.15.1\n"), "{out}");
    upgrade(&sb);
    let out = bash(&sb, &script).success().stdout;
    assert!(out.contains("\n2.16.1\n"), "{out}");
}
