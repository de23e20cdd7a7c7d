//! `[env]` tables of recipes and profile files: the variables a session sets.
//!
//! A key becomes a variable in the shell of whoever evaluates `envctl env`, so it must be a
//! variable name and nothing else (`[A-Za-z_][A-Za-z0-9_]*`); a value may be any text but NUL,
//! which no environment can carry. Output formats quote values; keys need no quoting because of
//! this check.

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
        out.insert(key.get_ref().clone(), value.get_ref().clone());
    }
    Ok(out)
}
