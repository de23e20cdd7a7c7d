//! Sessions: one inside another replaces it, `[env]` values as a session sees them, and the
//! profile first on PATH after bash, zsh and fish read the user's startup files.

mod common;

use common::fixture::Fixture;

#[test]
fn a_session_inside_another_replaces_it_instead_of_stacking() {
    let f = Fixture::new();
    f.run(&[
        "apply",
        &f.profile("nlp", "[packages]\nhello = \"2\"\n[env]\nNLP_ONLY = \"yes\"\nSHARED = \"nlp\"\n"),
    ])
    .ok();
    f.run(&["apply", &f.profile("vision", "[packages]\nworld = \"1\"\n[env]\nSHARED = \"vision\"\n")]).ok();
    let nlp = std::fs::canonicalize(f.profiles_dir().join("nlp")).unwrap();
    let show =
        "echo PATH=$PATH; echo NLP_ONLY=${NLP_ONLY-unset}; echo SHARED=$SHARED; echo PROFILE=$ENVCTL_PROFILE";
    let bin = env!("CARGO_BIN_EXE_envctl");
    let r = f.run(&["run", "nlp", "--", bin, "run", "vision", "--", "sh", "-c", show]);
    r.ok();
    assert!(r.stderr.contains("leaving the environment of `nlp` for `vision`"), "{}", r.stderr);
    assert!(!r.stdout.contains(&nlp.display().to_string()), "nlp's directories stayed:\n{}", r.stdout);
    assert!(
        r.stdout.contains("NLP_ONLY=unset")
            && r.stdout.contains("SHARED=vision")
            && r.stdout.contains("PROFILE=vision"),
        "{}",
        r.stdout
    );
    // The same with two `eval "$(envctl env …)"` in one shell.
    let script = format!("eval \"$(\"$0\" env nlp)\"; eval \"$(\"$0\" env vision)\"; {show}");
    let out = f.sb.through(&["sh", "-c", &script], &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(&nlp.display().to_string()), "nlp's directories stayed:\n{stdout}");
    assert!(stdout.contains("NLP_ONLY=unset") && stdout.contains("SHARED=vision"), "{stdout}");
}

#[test]
fn env_values_extend_path_variables_expand_home_and_refuse_unknown_names() {
    let f = Fixture::new();
    // A recipe's variable that the profile builds on rather than replaces.
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("lib/libtool.so", "x"));
    f.publish("tool", "1.0", &a.tar_gz(), "[env]\nTOOL_PLUGINS = \"${profile}/plugins\"");
    let file = f.profile(
        "p",
        "[packages]\nhello = \"1\"\ntool = \"1\"\n[env]\nPYTHONPATH = \"/my/src:${PYTHONPATH}\"\n\
         PATH = \"${PATH}:/opt/late\"\nDATA = \"$HOME/data\"\nTOOL_PLUGINS = \"/mine:${TOOL_PLUGINS}\"\n\
         PRICE = \"$$5\"\n",
    );
    f.run(&["apply", &file]).ok();
    let r = f.sb.run_env(&["env", "p", "--format", "json"], &[("PATH", "/usr/bin:/bin"), ("PYTHONPATH", "")]);
    let vars: serde_json::Value = serde_json::from_str(&r.success().stdout).unwrap();
    let generation = vars["ENVCTL_GENERATION"].as_str().unwrap();
    // Nothing on PYTHONPATH yet: no empty entry (the current directory) is left behind.
    assert_eq!(vars["PYTHONPATH"], "/my/src", "{vars}");
    assert_eq!(vars["PATH"], format!("{generation}/bin:/usr/bin:/bin:/opt/late"), "{vars}");
    assert_eq!(vars["DATA"], format!("{}/data", f.sb.path("user").display()), "{vars}");
    assert_eq!(vars["TOOL_PLUGINS"], format!("/mine:{generation}/plugins"), "{vars}");
    assert_eq!(vars["PRICE"], "$5", "{vars}");
    // With a PYTHONPATH outside, the profile's entry goes first and the outside one is kept.
    let r = f.sb.run_env(&["env", "p", "--format", "json"], &[("PYTHONPATH", "/outside")]);
    let vars: serde_json::Value = serde_json::from_str(&r.success().stdout).unwrap();
    assert_eq!(vars["PYTHONPATH"], "/my/src:/outside", "{vars}");

    // A typo is refused with the file, the line and the name it was probably meant to be.
    let bad = f.profile("q", "[packages]\nhello = \"1\"\n[env]\nX = \"${profil}/bin\"\n");
    let err = f.run(&["apply", &bad]).failed().to_owned();
    assert!(
        err.contains("q.toml") && err.contains("line 4") && err.contains("did you mean `${profile}`"),
        "{err}"
    );
}

/// `envctl shell p` in `shell`, with `rc` (relative to the sandbox's home) holding `rc_text`,
/// reading `commands` on its input; returns what it printed.
fn shell_session(f: &Fixture, shell: &std::path::Path, rc: &str, rc_text: &str, commands: &str) -> String {
    use std::io::Write;
    let rc = f.sb.path("user").join(rc);
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(&rc, rc_text).unwrap();
    let mut c = f.sb.command(&["shell", "p"]);
    c.env("SHELL", shell).env("PATH", "/usr/local/bin:/usr/bin:/bin");
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shell:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_profile_comes_first_after_bash_zsh_and_fish_read_the_users_startup_files() {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n[env]\nMODE = \"profile\"\n")]).ok();
    let generation = std::fs::canonicalize(f.profiles_dir().join("p")).unwrap();
    let first = format!("PATH={}/bin:", generation.display());
    let check = |shell: &str, out: &str| {
        let line = |key: &str| out.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_owned();
        // The profile first, what the startup file added kept after it, its variable overridden.
        assert!(line("PATH=").starts_with(&first), "{shell}: {out}");
        assert!(line("PATH=").contains("/opt/conda/bin"), "{shell}: {out}");
        assert_eq!(line("MODE="), "MODE=profile", "{shell}: {out}");
        assert!(line("PROMPT=").contains("(envctl:p)"), "{shell}: {out}");
        assert_eq!(line("HELLO="), "HELLO=hello 1.0", "{shell}: {out}");
    };
    let posix = "echo PATH=$PATH\necho MODE=$MODE\necho PROMPT=$PS1\necho HELLO=$(hello)\nexit\n";
    let rc = "export PATH=/opt/conda/bin:$PATH\nexport MODE=rc\nPS1='$ '\n";
    let out = shell_session(&f, std::path::Path::new("/bin/bash"), ".bashrc", rc, posix);
    check("bash", &out);
    let zsh = envctl_testkit::tools::tool("zsh", "zsh");
    let out = shell_session(&f, &zsh, ".zshrc", rc, posix);
    check("zsh", &out);
    let fish = envctl_testkit::tools::tool("fish", "fish");
    let fish_rc = "set -gx PATH /opt/conda/bin $PATH\nset -gx MODE rc\n";
    let commands = "echo PATH=(string join : $PATH)\necho MODE=$MODE\necho PROMPT=(fish_prompt)\necho HELLO=(hello)\nexit\n";
    let out = shell_session(&f, &fish, ".config/fish/config.fish", fish_rc, commands);
    check("fish", &out);
    // GC removes the startup files with their (now stale) roots.
    f.run(&["gc"]).ok();
    let left: Vec<_> = std::fs::read_dir(f.sb.path("envctl/gcroots/tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
