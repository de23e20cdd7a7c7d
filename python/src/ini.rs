//! The INI files of the Python world, read with one reader (the `configparser` crate) set up as
//! Python's own `configparser` reads them: `#` and `;` start a comment only at the start of a
//! line, and a key's value is the rest of its line.

use std::collections::HashMap;

/// Sections, each its keys and values.
pub(crate) type Sections = HashMap<String, HashMap<String, Option<String>>>;

/// How a kind of file is written.
pub(crate) struct Syntax {
    /// What separates a key from its value.
    pub delimiters: &'static [char],
    /// Whether an indented line continues the value above it (pip.conf's lists).
    pub multiline: bool,
    /// Whether keys keep their case (entry point names do; pip's options do not).
    pub case_sensitive: bool,
}

/// Reads `text`, or says what is wrong with it.
pub(crate) fn read(text: &str, syntax: Syntax) -> Result<Sections, String> {
    let mut defaults = configparser::ini::Ini::new().defaults();
    // Lines before any section are not a section anyone reads.
    defaults.default_section = "\u{0}".to_owned();
    defaults.delimiters = syntax.delimiters.to_vec();
    defaults.multiline = syntax.multiline;
    defaults.enable_inline_comments = false;
    defaults.case_sensitive = syntax.case_sensitive;
    let mut ini = configparser::ini::Ini::new_from_defaults(defaults);
    let mut sections = ini.read(text.to_owned())?;
    sections.remove("\u{0}");
    Ok(sections)
}
