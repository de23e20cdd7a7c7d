//! The interactive shell of `envctl shell`: bash, zsh and fish read the user's startup files
//! first, then get the session's variables back on top of whatever those files changed, with the
//! profile's name in the prompt, as `nix develop` and `pixi shell` do. A `~/.bashrc` that puts
//! pyenv, conda or cargo first on PATH would otherwise hide the profile's `python3`.
//!
//! Search paths are merged, not replaced: the session's value first, then any entry the startup
//! files added that it lacks. Other variables get the session's value again. Startup material
//! lives beside the session's GC root (`<root>.bashrc`, `<root>.zsh/`), and GC removes it with
//! the root.

use std::collections::BTreeMap;
use std::path::Path;

/// How to start a shell: its arguments, and variables to add to its environment.
#[derive(Debug, Default)]
pub struct Startup {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The startup for `shell` (a path, from `$SHELL`) in the session `name` with the variables
/// `env`, writing any file it needs at `companion` plus an extension; `home_zdotdir` is where zsh
/// would otherwise read its files. Shells other than bash, zsh and fish start as they are. With
/// `remove`, the files' first line removes that directory: it is private to this one session and
/// nothing else would remove it once the shell has read them.
pub fn startup(
    shell: &str,
    name: &str,
    env: &BTreeMap<String, String>,
    companion: &Path,
    home_zdotdir: &str,
    remove: Option<&Path>,
) -> std::io::Result<Startup> {
    let cleanup =
        remove.map(|dir| format!("rm -rf -- {}\n", sh_quote(&dir.display().to_string()))).unwrap_or_default();
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.+@".contains(*c)).collect();
    let marker = format!("(envctl:{name}) ");
    match Path::new(shell).file_name().and_then(|n| n.to_str()) {
        Some("bash") => {
            let rc = companion.with_extension("bashrc");
            let text = format!(
                "{cleanup}[ -f ~/.bashrc ] && . ~/.bashrc\n{}PS1={}\"$PS1\"\n",
                posix_reapply(env, BASH_MERGE),
                sh_quote(&marker)
            );
            write_private(&rc, &text)?;
            Ok(Startup { args: vec!["--rcfile".into(), rc.display().to_string(), "-i".into()], env: vec![] })
        }
        Some("zsh") => {
            // zsh reads $ZDOTDIR/.zshenv then $ZDOTDIR/.zshrc: ours read the user's, put ZDOTDIR
            // back, then reapply.
            let dir = companion.with_extension("zsh");
            std::fs::create_dir(&dir)?;
            let user = sh_quote(home_zdotdir);
            write_private(&dir.join(".zshenv"), &format!("[ -f {user}/.zshenv ] && . {user}/.zshenv\n"))?;
            let text = format!(
                "{cleanup}ZDOTDIR={user}\n[ -f \"$ZDOTDIR/.zshrc\" ] && . \"$ZDOTDIR/.zshrc\"\n{}PS1={}\"$PS1\"\n",
                posix_reapply(env, ZSH_MERGE),
                sh_quote(&marker.replace('%', "%%"))
            );
            write_private(&dir.join(".zshrc"), &text)?;
            Ok(Startup { args: vec!["-i".into()], env: vec![("ZDOTDIR".into(), dir.display().to_string())] })
        }
        Some("fish") => {
            // `-C` runs after the configuration files: no file needed.
            let mut text = String::new();
            for (k, v) in env.iter().filter(|(k, _)| envctl_recipes::is_variable_name(k)) {
                let v = fish_quote(v);
                if envctl_recipes::SEARCH_VARIABLES.contains(&k.as_str()) {
                    text.push_str(&format!(
                        "set -l __envctl_new (string split -n : {v}); for e in ${k}; contains -- $e $__envctl_new; or set -a __envctl_new $e; end; set -gx {k} $__envctl_new\n"
                    ));
                } else {
                    text.push_str(&format!("set -gx {k} {v}\n"));
                }
            }
            text.push_str(&format!(
                "functions -q fish_prompt; and functions -c fish_prompt __envctl_prompt; and function fish_prompt; echo -n {}; __envctl_prompt; end\n",
                fish_quote(&marker)
            ));
            Ok(Startup { args: vec!["-i".into(), "-C".into(), text], env: vec![] })
        }
        _ => Ok(Startup::default()),
    }
}

/// `__envctl_merge VAR VALUE`: VALUE, then each entry of $VAR that VALUE lacks.
const BASH_MERGE: &str = r#"__envctl_merge() { local out="$2" e parts; IFS=: read -ra parts <<< "${!1-}"; for e in "${parts[@]}"; do [[ -n $e && ":$out:" != *":$e:"* ]] && out="$out${out:+:}$e"; done; export "$1=$out"; }"#;
const ZSH_MERGE: &str = r#"__envctl_merge() { local out="$2" e; for e in "${(@s.:.)${(P)1}}"; do [[ -n $e && ":$out:" != *":$e:"* ]] && out="$out${out:+:}$e"; done; export "$1=$out"; }"#;

fn posix_reapply(env: &BTreeMap<String, String>, merge: &str) -> String {
    let mut text = format!("{merge}\n");
    for (k, v) in env.iter().filter(|(k, _)| envctl_recipes::is_variable_name(k)) {
        if envctl_recipes::SEARCH_VARIABLES.contains(&k.as_str()) {
            text.push_str(&format!("__envctl_merge {k} {}\n", sh_quote(v)));
        } else {
            text.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
    }
    text.push_str("unset -f __envctl_merge\n");
    text
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}
