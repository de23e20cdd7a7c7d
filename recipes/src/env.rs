//! `[env]` tables of recipes and profile files: the variables a session sets.
//!
//! A key becomes a variable in the shell of whoever evaluates `envctl env`, so it must be a
//! variable name and nothing else (`[A-Za-z_][A-Za-z0-9_]*`); a value may be any text but NUL,
//! which no environment can carry. Output formats quote values; keys need no quoting because of
//! this check.
//!
//! A value may name other variables as `${NAME}` or `$NAME` (`$$` is a literal `$`): `profile`
//! (the generation's root), `HOME`, `USER`, the session's search-path variables (`PATH`,
//! `PYTHONPATH`, …) and the variable itself, which is the value it would have had without this
//! entry, so `PYTHONPATH = "/my/src:${PYTHONPATH}"` prepends and `"${PATH}:/opt/x"` appends. Any
//! other name is refused when the file is read (a typo such as `${profil}` would otherwise reach
//! the session literally). A reference that comes out empty takes its `:` separator with it, so
//! no empty entry (the current directory, for a search path) appears.

use std::collections::BTreeMap;

use toml::Spanned;

/// Whether `key` is a portable environment variable name.
pub fn is_variable_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks an `[env]` table; `bad(span, key, message)` makes the error naming file and line.
pub(crate) fn check<E>(
    raw: &BTreeMap<Spanned<String>, Spanned<String>>,
    bad: impl Fn(std::ops::Range<usize>, String, String) -> E,
) -> Result<BTreeMap<String, String>, E> {
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let dotted = format!("env.{}", key.get_ref().escape_debug());
        if !is_variable_name(key.get_ref()) {
            return Err(bad(
                key.span(),
                dotted,
                format!(
                    "`{}` is not a variable name: use letters, digits and `_`, not starting with a digit",
                    key.get_ref().escape_debug()
                ),
            ));
        }
        if value.get_ref().contains('\0') {
            return Err(bad(value.span(), dotted, "a value cannot contain a NUL character".into()));
        }
        if let Err(message) = check_references(key.get_ref(), value.get_ref()) {
            return Err(bad(value.span(), dotted, message));
        }
        out.insert(key.get_ref().clone(), value.get_ref().clone());
    }
    Ok(out)
}

/// The search-path variables a session computes; `${NAME}` of one is its session value.
pub const SEARCH_VARIABLES: &[&str] =
    &["PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "PKG_CONFIG_PATH", "PYTHONPATH"];

/// Names any `[env]` value may refer to, besides the variable it sets.
const KNOWN: &[&str] = &["profile", "HOME", "USER"];

/// One part of a value: text, or a reference to a variable.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a value into text and `${NAME}` / `$NAME` references; `$$` is a `$`, and a `$` that
/// starts neither is itself. An unclosed `${` is an error.
fn pieces(value: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        if at > 0 {
            out.push(Piece::Text(&rest[..at]));
        }
        let after = &rest[at + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or_else(|| {
                format!(
                    "`${{` at `{}` is not closed: write `${{NAME}}`, or `$$` for a `$`",
                    rest.escape_debug()
                )
            })?;
            out.push(Piece::Var(&inner[..end]));
            rest = &inner[end + 1..];
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push(Piece::Text("$"));
            rest = tail;
        } else {
            let len = after
                .bytes()
                .enumerate()
                .take_while(|&(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
                .count();
            if len == 0 {
                out.push(Piece::Text("$"));
            } else {
                out.push(Piece::Var(&after[..len]));
            }
            rest = &after[len..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Refuses references to variables a session does not know.
fn check_references(key: &str, value: &str) -> Result<(), String> {
    for piece in pieces(value)? {
        let Piece::Var(name) = piece else { continue };
        if name == key || KNOWN.contains(&name) || SEARCH_VARIABLES.contains(&name) {
            continue;
        }
        let mut known: Vec<&str> = KNOWN.iter().chain(SEARCH_VARIABLES).copied().collect();
        known.push(key);
        let near = crate::nearest(name, known.iter().copied())
            .map(|n| format!(" (did you mean `${{{n}}}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "`${{{name}}}` is not a variable a session knows{near}: a value may use ${{profile}}, ${{HOME}}, \
             ${{USER}}, ${{{key}}} (its value without this entry) and the search paths ({}); write `$$` for a `$`",
            SEARCH_VARIABLES.join(", ")
        ));
    }
    Ok(())
}

/// `value` with its references to itself (`${key}`) replaced by `previous`, verbatim: how a
/// later `[env]` entry (the profile's) builds on an earlier one (a recipe's) for the same variable.
pub fn compose(key: &str, value: &str, previous: &str) -> String {
    let Ok(parts) = pieces(value) else { return value.to_owned() };
    if !parts.contains(&Piece::Var(key)) {
        return value.to_owned();
    }
    let mut out = String::new();
    for p in parts {
        match p {
            Piece::Var(name) if name == key => out.push_str(previous),
            Piece::Var(name) => {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
            Piece::Text("$") => out.push_str("$$"),
            Piece::Text(t) => out.push_str(&t.replace('$', "$$")),
        }
    }
    out
}

/// `value` with every reference replaced by `lookup(name)`; an empty or unknown one drops a `:`
/// next to it. A value that does not parse (from a generation written before values were
/// checked) is returned as it is.
pub fn expand(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let Ok(parts) = pieces(value) else { return value.to_owned() };
    let mut out = String::new();
    let mut skip_colon = false;
    for p in parts {
        match p {
            Piece::Text(t) => {
                let t = if skip_colon { t.strip_prefix(':').unwrap_or(t) } else { t };
                out.push_str(t);
                skip_colon = false;
            }
            Piece::Var(name) => match lookup(name).filter(|v| !v.is_empty()) {
                Some(v) => {
                    out.push_str(&v);
                    skip_colon = false;
                }
                None if out.ends_with(':') => {
                    out.pop();
                }
                None => skip_colon = out.is_empty(),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{check_references, compose, expand};

    fn lookup(name: &str) -> Option<String> {
        match name {
            "profile" => Some("/store/g".into()),
            "HOME" => Some("/home/a".into()),
            "PYTHONPATH" => Some("/store/g/site".into()),
            _ => None,
        }
    }

    #[test]
    fn references_expand_and_empty_ones_take_their_separator() {
        assert_eq!(expand("/my/src:${PYTHONPATH}", lookup), "/my/src:/store/g/site");
        assert_eq!(expand("$HOME/x:$PATH", lookup), "/home/a/x");
        assert_eq!(expand("${PATH}:/opt/x", lookup), "/opt/x");
        assert_eq!(expand("/a:${PATH}:/b", lookup), "/a:/b");
        assert_eq!(
            expand("cost: $$5 and $ 3 and ${profile}/bin", lookup),
            "cost: $5 and $ 3 and /store/g/bin"
        );
    }

    #[test]
    fn unknown_names_are_refused_with_the_nearest_known_one() {
        let e = check_references("X", "${profil}/bin").unwrap_err();
        assert!(e.contains("`${profil}`") && e.contains("did you mean `${profile}`"), "{e}");
        assert!(check_references("X", "${X}:${HOME}:$PYTHONPATH:$$FOO").is_ok());
        assert!(check_references("X", "${HOME").unwrap_err().contains("not closed"));
    }

    #[test]
    fn a_later_entry_builds_on_an_earlier_one() {
        assert_eq!(compose("P", "/mine:${P}", "/recipe:${P}"), "/mine:/recipe:${P}");
        assert_eq!(compose("P", "$$x", "y"), "$$x");
        assert_eq!(compose("P", "/a:$P:${HOME}", "/b"), "/a:/b:${HOME}");
    }
}
