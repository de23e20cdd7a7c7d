//! The only place that writes to the terminal. stdout carries data someone might pipe (store
//! paths, `--json`); everything else goes to stderr.
//!
//! A closed pipe is not an error of envctl's: what cannot be written is dropped (`envctl doctor |
//! head -1` must not panic), and the command's exit code still says how it went.

use std::io::Write;

/// Writes one line of data to stdout.
pub fn data(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Writes one line of data to stdout, coloured as [`paint`] says when stdout is a terminal that
/// wants colour (a change in a plan or a diff).
pub fn change(line: &str) {
    let _ = writeln!(anstream::stdout().lock(), "{}", paint(line));
}

/// Writes bytes of data to stdout as they are (a generated script or manual page).
pub fn raw(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}

fn to_stderr(text: &str) {
    // anstream drops the colour when stderr is not a terminal, or NO_COLOR is set.
    let mut err = anstream::stderr().lock();
    for line in text.split('\n') {
        let _ = writeln!(err, "{}", paint(line));
    }
}

/// A line with colour where its start says what it is: `error:` red, `warning:` and `problem:`
/// yellow, `hint:` cyan, a change (`+ added`, `- removed`, `~ changed`, indented or after
/// `change `) green, red or yellow. Anything else is left alone.
pub fn paint(line: &str) -> String {
    use anstyle::{AnsiColor, Style};
    let style = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    for (word, s) in [
        ("error:", style(AnsiColor::Red).bold()),
        ("warning:", style(AnsiColor::Yellow).bold()),
        ("problem:", style(AnsiColor::Yellow).bold()),
        ("hint:", style(AnsiColor::Cyan).bold()),
    ] {
        if let Some(rest) = line.strip_prefix(word) {
            return format!("{s}{word}{s:#}{rest}");
        }
    }
    let body = line.trim_start();
    let body = body.strip_prefix("change ").unwrap_or(body);
    let colour = match body.as_bytes() {
        [b'+', b' ', ..] => AnsiColor::Green,
        [b'-', b' ', ..] => AnsiColor::Red,
        [b'~', b' ', ..] => AnsiColor::Yellow,
        _ => return line.to_owned(),
    };
    let s = style(colour);
    format!("{s}{line}{s:#}")
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--quiet`: from now on [`status`] lines are not written.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Writes a message for people to stderr, `--quiet` or not: errors, warnings, problems found.
pub fn info(line: &str) {
    to_stderr(line);
}

/// Writes a progress or outcome message to stderr ("is now generation 2"), unless `--quiet`.
pub fn status(line: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        to_stderr(line);
    }
}

/// Writes pretty JSON to stdout.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => data(&s),
        Err(e) => to_stderr(&format!("error: cannot render JSON: {e}")),
    }
}

/// `n` and the noun, plural unless `n` is 1: "1 package", "3 packages".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Human-readable byte count (the one messages use everywhere).
pub use envctl_ops::error::bytes;

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_painted_by_what_they_start_with() {
        assert_eq!(super::paint("error: x"), "\u{1b}[1m\u{1b}[31merror:\u{1b}[0m x");
        assert!(super::paint("  + numpy 1.26").starts_with("\u{1b}[32m"));
        assert!(super::paint("change ~ python 3.7 -> 3.11").starts_with("\u{1b}[33m"));
        assert_eq!(super::paint("numpy 1.26"), "numpy 1.26");
        assert_eq!(super::paint("-1 B"), "-1 B");
    }

    #[test]
    fn timestamps_and_sizes_render() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::timestamp(1_795_521_600), "2026-11-24T12:00:00Z");
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::count(1, "package"), "1 package");
        assert_eq!(super::count(0, "package"), "0 packages");
        assert_eq!(super::bytes(3 << 20), "3.0 MiB");
    }
}
