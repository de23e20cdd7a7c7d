//! Versions and version requirements.
//!
//! A version is any number of dot-separated numeric components, an optional pre-release tag and
//! an optional local label: `11.8.89`, `8.9.7.29`, `2.16.0rc1`, `8.9.7.29+cuda12`,
//! `2.1.2+cu121`. Trailing zero components do not matter (`11.8` = `11.8.0`). The order is total:
//!
//! - numeric components first, numerically;
//! - then a pre-release sorts before its release (`2.0rc1 < 2.0`); tags compare chunk by chunk,
//!   digits numerically and letters bytewise (`a1 < b1 < rc1 < rc2`);
//! - then a local label sorts after the plain version (`8.9.7 < 8.9.7+cuda11 < 8.9.7+cuda12`).
//!   Local labels name variants of one release, such as cuDNN's one archive per CUDA major.
//!
//! Requirements (grammar in `docs/reference/versions.md`):
//!
//! | written | means |
//! | --- | --- |
//! | `1.15`, `1.15.*`, `==1.15.*` | the 1.15 series: `>=1.15 (incl. its pre-releases), <1.16` (excl. 1.16's pre-releases) |
//! | `==11.8.89` | exactly 11.8.89, any local label; `==8.9.7+cuda11` pins the label too |
//! | `!=`, `>`, `>=`, `<`, `<=` | as written; `<8` excludes 8's pre-releases, `>8` excludes 8's local variants |
//! | `a,b` | both; `a|b` either (`,` binds tighter) |
//! | `*` | anything |
//!
//! Every requirement is a union of intervals between *bound versions*; a bound can sit just
//! below everything of a release ([`Tail::Min`]) or just above every local variant
//! ([`Tail::Max`]), which is how the table above is made exact.

use std::cmp::Ordering;
use std::fmt;

/// Where a version sits among the versions sharing its numeric components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tail {
    /// Below every version with these components: only used as a bound.
    Min,
    /// A pre-release, with its tag split into chunks.
    Pre(Vec<Chunk>),
    /// The release itself, or one of its local variants.
    Release(Option<Vec<Chunk>>),
    /// Above every local variant of the release: only used as a bound.
    Max,
}

/// A piece of a tag: digits compare numerically, letters bytewise, digits before letters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chunk {
    /// A run of digits.
    Num(u64),
    /// A run of anything else.
    Text(String),
}

fn chunks(tag: &str) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut digits = false;
    for c in tag.chars() {
        if matches!(c, '.' | '-' | '_') {
            flush(&mut out, &mut cur, digits);
            continue;
        }
        if !cur.is_empty() && c.is_ascii_digit() != digits {
            flush(&mut out, &mut cur, digits);
        }
        digits = c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    flush(&mut out, &mut cur, digits);
    out
}

fn flush(out: &mut Vec<Chunk>, cur: &mut String, digits: bool) {
    if cur.is_empty() {
        return;
    }
    out.push(if digits { Chunk::Num(cur.parse().unwrap_or(u64::MAX)) } else { Chunk::Text(cur.clone()) });
    cur.clear();
}

/// A version. Keeps its text as written for display; compares by meaning. Cloning is cheap (the
/// solver clones versions constantly).
#[derive(Debug, Clone)]
pub struct Version(std::sync::Arc<Inner>, u128);

#[derive(Debug)]
struct Inner {
    parts: Vec<u64>,
    tail: Tail,
    text: String,
}

impl Version {
    fn new(mut parts: Vec<u64>, tail: Tail, text: String) -> Version {
        while parts.last() == Some(&0) {
            parts.pop();
        }
        let key = sort_key(&parts, &tail);
        Version(std::sync::Arc::new(Inner { parts, tail, text }), key)
    }
}

/// A prefix of the order packed in 128 bits: four components of 28 bits, then the tail's rank.
/// Different keys order as their versions do; equal keys need the full comparison. A component
/// too large to fit saturates and ends the key (everything after it stays zero), so a saturated
/// key only ever ties, never misorders.
fn sort_key(parts: &[u64], tail: &Tail) -> u128 {
    const BITS: u32 = 28;
    const MAX: u64 = (1 << BITS) - 1;
    let mut key: u128 = 0;
    for i in 0..4 {
        let p = parts.get(i).copied().unwrap_or(0);
        key |= u128::from(p.min(MAX)) << (2 + BITS * (3 - i as u32));
        if p >= MAX {
            return key;
        }
    }
    let rank = if parts.len() > 4 {
        3 // more components follow: ties with Max, and the full comparison decides
    } else {
        match tail {
            Tail::Min => 0,
            Tail::Pre(_) => 1,
            Tail::Release(_) => 2,
            Tail::Max => 3,
        }
    };
    key | rank
}

/// A malformed version or requirement, pointing at the character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {message} at column {column}")]
pub struct ParseError {
    /// "version" or "requirement".
    pub what: &'static str,
    /// The text given.
    pub input: String,
    /// 1-based column of the offending character.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

impl Version {
    /// Parses `11.8.89`, `2.16.0rc1`, `8.9.7.29+cuda12`, …
    pub fn parse(s: &str) -> Result<Version, ParseError> {
        parse_version(s, 0, s).map(|(v, _)| v)
    }

    /// Numeric components, without trailing zeros.
    pub fn components(&self) -> &[u64] {
        &self.0.parts
    }

    /// Whether this is a pre-release.
    pub fn is_prerelease(&self) -> bool {
        matches!(self.0.tail, Tail::Pre(_))
    }

    /// Whether this is a bound made by a requirement rather than a real version.
    pub fn is_bound(&self) -> bool {
        matches!(self.0.tail, Tail::Min | Tail::Max)
    }

    /// The local label (`cuda12` in `8.9.7.29+cuda12`).
    pub fn local(&self) -> Option<&str> {
        self.0.text.split_once('+').map(|(_, l)| l)
    }

    /// The same version with a different tail (for bounds).
    fn with_tail(&self, tail: Tail) -> Version {
        // Bounds display as the release they bound: `>=1.15, <1.16` reads right.
        let text = match &tail {
            Tail::Min | Tail::Max => self.base_text().to_owned(),
            _ => self.0.text.clone(),
        };
        Version::new(self.0.parts.clone(), tail, text)
    }

    fn base_text(&self) -> &str {
        self.0.text.split(['+']).next().unwrap_or(&self.0.text)
    }

    /// The first version of the next series at this depth: `1.15` → `1.16`, as a lower bound
    /// ([`Tail::Min`]) with the given number of components.
    fn next_series(prefix: &[u64]) -> Version {
        let mut parts = prefix.to_vec();
        if let Some(last) = parts.last_mut() {
            *last += 1;
        }
        let text = parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        Version::new(parts, Tail::Release(None), text).with_tail(Tail::Min)
    }

    /// The lowest possible version: a lower bound below everything.
    pub fn lowest() -> Version {
        Version::new(Vec::new(), Tail::Min, "0".into())
    }
}

/// Words that start a pre-release tag (`2.16.0rc1`, `1.0.0-beta.2`, `3.13.0a1`).
const PRE_WORDS: &[&str] = &["a", "b", "c", "rc", "alpha", "beta", "pre", "preview", "dev"];

fn parse_version(s: &str, offset: usize, whole: &str) -> Result<(Version, usize), ParseError> {
    let err = |at: usize, message: &str| ParseError {
        what: "version",
        input: whole.to_owned(),
        column: offset + at + 1,
        message: message.to_owned(),
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut parts = Vec::new();
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err(i, if i < bytes.len() { "expected a digit" } else { "expected a number" }));
        }
        parts.push(s[start..i].parse::<u64>().map_err(|_| err(start, "number too large"))?);
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i += 1;
            continue;
        }
        break;
    }
    let mut tail = Tail::Release(None);
    // Pre-release tag: an optional separator, then a letter.
    let mut j = i;
    if j < bytes.len()
        && matches!(bytes[j], b'-' | b'_' | b'.')
        && j + 1 < bytes.len()
        && bytes[j + 1].is_ascii_alphabetic()
    {
        j += 1;
    }
    let word_end = j + bytes[j.min(bytes.len())..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let word = s[j.min(s.len())..word_end.min(s.len())].to_ascii_lowercase();
    if PRE_WORDS.contains(&word.as_str()) {
        let tag_start = j;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || matches!(bytes[j], b'.' | b'-' | b'_'))
        {
            j += 1;
        }
        tail = Tail::Pre(chunks(&s[tag_start..j]));
        i = j;
    }
    if i < bytes.len() && bytes[i] == b'+' {
        let start = i + 1;
        let mut k = start;
        while k < bytes.len() && (bytes[k].is_ascii_alphanumeric() || matches!(bytes[k], b'.' | b'_' | b'-'))
        {
            k += 1;
        }
        if k == start {
            return Err(err(start, "expected a local label after `+`"));
        }
        if matches!(tail, Tail::Pre(_)) {
            return Err(err(i, "a pre-release cannot have a local label"));
        }
        tail = Tail::Release(Some(chunks(&s[start..k])));
        i = k;
    }
    let v = Version::new(parts, tail, s[..i].to_owned());
    if offset == 0 && i != s.len() {
        return Err(err(i, &format!("unexpected `{}`", &s[i..].chars().next().unwrap_or(' '))));
    }
    Ok((v, i))
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.parts.hash(state);
        self.0.tail.hash(state);
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        if self.1 != other.1 {
            return self.1.cmp(&other.1);
        }
        if std::sync::Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        self.0.parts.cmp(&other.0.parts).then_with(|| self.0.tail.cmp(&other.0.tail))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl std::str::FromStr for Version {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Version, ParseError> {
        Version::parse(s)
    }
}

/// One end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The version itself is in.
    Included(Version),
    /// The version itself is out.
    Excluded(Version),
    /// No bound.
    Unbounded,
}

/// A set of versions: a union of intervals. The resolver turns it into pubgrub's ranges; the
/// recipes crate uses it to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Alternatives (`|`), each a conjunction (`,`) of clauses.
    alternatives: Vec<Vec<Clause>>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Prefix,
    Eq,
    Ne,
    NePrefix,
    Gt,
    Ge,
    Lt,
    Le,
}

/// One comparison, `>=7.6` or the series `1.15`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    op: Op,
    version: Version,
}

/// An interval `(low, high)`.
pub type Interval = (Bound, Bound);

impl Clause {
    /// The clause as intervals (one, or two for `!=`).
    pub fn intervals(&self) -> Vec<Interval> {
        use Bound::*;
        let v = &self.version;
        let base = || v.with_tail(Tail::Release(None));
        match self.op {
            Op::Prefix => {
                vec![(Included(v.with_tail(Tail::Min)), Excluded(Version::next_series(&self.prefix())))]
            }
            Op::NePrefix => vec![
                (Unbounded, Excluded(v.with_tail(Tail::Min))),
                (Included(Version::next_series(&self.prefix())), Unbounded),
            ],
            Op::Eq | Op::Ne => {
                let (lo, hi) = match &v.0.tail {
                    // `==8.9.7` matches the release and all its local variants.
                    Tail::Release(None) => (base(), v.with_tail(Tail::Max)),
                    _ => (v.clone(), v.clone()),
                };
                if self.op == Op::Eq {
                    vec![(Included(lo), Included(hi))]
                } else {
                    vec![(Unbounded, Excluded(lo)), (Excluded(hi), Unbounded)]
                }
            }
            Op::Ge => vec![(Included(v.clone()), Unbounded)],
            Op::Gt => vec![(
                Excluded(if v.0.tail == Tail::Release(None) { v.with_tail(Tail::Max) } else { v.clone() }),
                Unbounded,
            )],
            Op::Lt => vec![(
                Unbounded,
                Excluded(if v.0.tail == Tail::Release(None) { v.with_tail(Tail::Min) } else { v.clone() }),
            )],
            Op::Le => vec![(
                Unbounded,
                Included(if v.0.tail == Tail::Release(None) { v.with_tail(Tail::Max) } else { v.clone() }),
            )],
        }
    }

    /// The numeric prefix a series clause names, as written (`1.15` → [1, 15], even `11.0`).
    fn prefix(&self) -> Vec<u64> {
        let base = self.version.base_text();
        base.split('.').map_while(|p| p.parse().ok()).collect()
    }

    fn matches(&self, v: &Version) -> bool {
        self.intervals().iter().any(|(lo, hi)| {
            let above = match lo {
                Bound::Included(b) => v >= b,
                Bound::Excluded(b) => v > b,
                Bound::Unbounded => true,
            };
            let below = match hi {
                Bound::Included(b) => v <= b,
                Bound::Excluded(b) => v < b,
                Bound::Unbounded => true,
            };
            above && below
        })
    }
}

impl Requirement {
    /// Parses a requirement (see the module docs).
    pub fn parse(s: &str) -> Result<Requirement, ParseError> {
        let err = |at: usize, message: String| ParseError {
            what: "requirement",
            input: s.to_owned(),
            column: at + 1,
            message,
        };
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(err(0, "expected a version or `*`".into()));
        }
        if trimmed == "*" {
            return Ok(Requirement { alternatives: vec![Vec::new()], text: "*".into() });
        }
        let mut alternatives = Vec::new();
        let mut pos = 0;
        for alt in s.split('|') {
            let mut clauses = Vec::new();
            let mut cpos = pos;
            for clause in alt.split(',') {
                let lead = clause.len() - clause.trim_start().len();
                let c = clause.trim();
                let at = cpos + lead;
                if c.is_empty() {
                    return Err(err(at, "expected a version".into()));
                }
                let (op, rest) = [
                    ("==", Op::Eq),
                    ("!=", Op::Ne),
                    (">=", Op::Ge),
                    ("<=", Op::Le),
                    (">", Op::Gt),
                    ("<", Op::Lt),
                    ("=", Op::Eq),
                ]
                .into_iter()
                .find_map(|(p, op)| c.strip_prefix(p).map(|r| (Some(op), r)))
                .unwrap_or((None, c));
                let op_len = c.len() - rest.len();
                let vtext = rest.trim_start();
                let vat = at + op_len + (rest.len() - vtext.len());
                let (series, vtext) = match vtext.strip_suffix(".*") {
                    Some(v) => (true, v),
                    None => (false, vtext),
                };
                let (version, used) = parse_version(vtext, vat, s).map_err(|mut e| {
                    e.what = "requirement";
                    e
                })?;
                if used != vtext.len() {
                    let bad = vtext[used..].chars().next().unwrap_or(' ');
                    return Err(err(vat + used, format!("unexpected `{bad}`")));
                }
                let op = match (op, series) {
                    (None, _) | (Some(Op::Eq), true) => Op::Prefix,
                    (Some(Op::Ne), true) => Op::NePrefix,
                    (Some(_), true) => {
                        return Err(err(vat, "`.*` goes only with `==`, `!=` or no operator".into()));
                    }
                    (Some(op), false) => op,
                };
                if op == Op::Prefix && version.0.tail != Tail::Release(None) {
                    return Err(err(
                        vat,
                        "a series (`1.15` or `1.15.*`) has no pre-release or local label; use `==`".into(),
                    ));
                }
                clauses.push(Clause { op, version });
                cpos += clause.len() + 1;
            }
            alternatives.push(clauses);
            pos += alt.len() + 1;
        }
        Ok(Requirement { alternatives, text: trimmed.to_owned() })
    }

    /// Anything.
    pub fn any() -> Requirement {
        Requirement { alternatives: vec![Vec::new()], text: "*".into() }
    }

    /// Exactly this version (local label included).
    pub fn exact(v: &Version) -> Requirement {
        Requirement {
            alternatives: vec![vec![Clause { op: Op::Eq, version: v.clone() }]],
            text: format!("=={v}"),
        }
    }

    /// Whether `v` satisfies it.
    pub fn matches(&self, v: &Version) -> bool {
        self.alternatives.iter().any(|all| all.iter().all(|c| c.matches(v)))
    }

    /// The requirement as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Alternatives, each a conjunction of clauses (for conversion to solver ranges).
    pub fn alternatives(&self) -> &[Vec<Clause>] {
        &self.alternatives
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }
    fn r(s: &str) -> Requirement {
        Requirement::parse(s).unwrap()
    }

    #[test]
    fn versions_order_by_meaning() {
        let ordered = [
            "2.0rc1",
            "2.0",
            "2.0.1",
            "8.9.7",
            "8.9.7+cuda11",
            "8.9.7+cuda12",
            "8.9.7.29",
            "11.8",
            "11.8.89",
            "12",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("11.8"), v("11.8.0"));
        assert!(
            v("2.0a1") < v("2.0b1")
                && v("2.0b1") < v("2.0rc1")
                && v("2.0rc1") < v("2.0rc2")
                && v("2.0rc2") < v("2.0rc10")
        );
        assert_eq!(v("535.104.05").to_string(), "535.104.05");
        assert_eq!(v("8.9.7.29+cuda12").local(), Some("cuda12"));
    }

    #[test]
    fn requirements_match_as_documented() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("1.15", &["1.15", "1.15.0", "1.15.5", "1.15.5+cu100"], &["1.14.9", "1.16", "1.16.0rc1", "1.1"]),
            ("1.15.*", &["1.15.5"], &["1.16"]),
            ("==11.8.89", &["11.8.89", "11.8.89+x"], &["11.8.90", "11.8"]),
            ("==8.9.7+cuda11", &["8.9.7+cuda11"], &["8.9.7+cuda12", "8.9.7"]),
            (">=7.6,<8", &["7.6", "7.6.5.32", "7.99"], &["7.5", "8", "8.0rc1", "8.1"]),
            ("!=2.0", &["1.9", "2.0.1"], &["2.0", "2.0+x"]),
            ("!=2.*", &["1.9", "3.0"], &["2.0", "2.9"]),
            (">8", &["8.0.1"], &["8", "8+local"]),
            ("<=8", &["8", "8+local", "7"], &["8.0.1"]),
            ("*", &["0.1", "99"], &[]),
            ("3.7|3.8", &["3.7.12", "3.8.1"], &["3.9"]),
            ("11", &["11.0", "11.8"], &["12.0", "10.2"]),
        ];
        for (req, yes, no) in cases {
            let req = r(req);
            for y in *yes {
                assert!(req.matches(&v(y)), "{req} should match {y}");
            }
            for n in *no {
                assert!(!req.matches(&v(n)), "{req} should not match {n}");
            }
        }
    }

    #[test]
    fn parse_errors_point_at_the_character() {
        let e = Requirement::parse(">=7.6,<8x").unwrap_err();
        assert_eq!(e.column, 9, "{e}");
        assert!(e.to_string().contains("`x`"), "{e}");
        let e = Requirement::parse(">=,<8").unwrap_err();
        assert_eq!(e.column, 3, "{e}");
        let e = Version::parse("1.2.x").unwrap_err();
        assert_eq!(e.column, 4, "{e}");
        assert!(Requirement::parse("").is_err());
        assert!(Requirement::parse(">1.*").is_err());
    }

    /// A small xorshift generator: the property tests need no dependency.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    pub(crate) fn random_version(rng: &mut Rng) -> String {
        let n = 1 + rng.below(3);
        let mut s = (0..n).map(|_| rng.below(4).to_string()).collect::<Vec<_>>().join(".");
        match rng.below(6) {
            0 => s.push_str(&format!("rc{}", rng.below(3))),
            1 => s.push_str(&format!("+cu{}", 11 + rng.below(2))),
            _ => {}
        }
        s
    }

    #[test]
    fn ordering_is_a_total_order_consistent_with_equality() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let vs: Vec<Version> = (0..300).map(|_| v(&random_version(&mut rng))).collect();
        for a in &vs {
            for b in &vs {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} {b}");
                assert_eq!(a == b, a.cmp(b) == Ordering::Equal);
                for c in vs.iter().take(40) {
                    if a <= b && b <= c {
                        assert!(a <= c, "{a} <= {b} <= {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_packed_key_never_contradicts_the_full_order() {
        let mut rng = Rng(777);
        let mut vs: Vec<Version> = (0..400).map(|_| v(&random_version(&mut rng))).collect();
        for t in
            ["1.2.3.4.5", "1.2.3.4", "1.2.3.4.0.1", "268435455.1", "268435456.0", "268435457", "1.2rc1", "0"]
        {
            vs.push(v(t));
            vs.push(v(t).with_tail(Tail::Min));
            vs.push(v(t).with_tail(Tail::Max));
        }
        for a in &vs {
            for b in &vs {
                let full = a.0.parts.cmp(&b.0.parts).then_with(|| a.0.tail.cmp(&b.0.tail));
                if a.1 != b.1 {
                    assert_eq!(a.1.cmp(&b.1), full, "{a:?} vs {b:?}");
                }
                assert_eq!(a.cmp(b), full, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn matching_agrees_with_the_intervals_and_with_negation() {
        let mut rng = Rng(12345);
        let ops = ["", "==", "!=", ">", ">=", "<", "<="];
        for _ in 0..2000 {
            let op = ops[rng.below(ops.len() as u64) as usize];
            let mut text = random_version(&mut rng);
            if op.is_empty() {
                text = text.split(['r', '+']).next().unwrap().to_owned();
            }
            let req = r(&format!("{op}{text}"));
            let target = v(&random_version(&mut rng));
            // `!=X` is exactly the complement of `==X`, and `<X` of `>=X` for releases.
            if op == "==" || op == "!=" {
                let other = r(&format!("{}{text}", if op == "==" { "!=" } else { "==" }));
                assert_ne!(req.matches(&target), other.matches(&target), "{req} vs {other} on {target}");
            }
            if op.is_empty() {
                let series = r(&format!("{text}.*"));
                assert_eq!(req.matches(&target), series.matches(&target));
            }
        }
    }
}
