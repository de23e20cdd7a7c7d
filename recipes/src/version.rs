//! Versions and version requirements.
//!
//! One version type serves every package: its syntax and its order are PEP 440's, which also
//! covers what CUDA, cuDNN and interpreter releases write (`11.8.89`, `8.9.7.29+cuda12`,
//! `2.16.0rc1`). Parsing is done by `pep440_rs` (the parser uv uses); this module keeps the
//! order in a form the solver can bound. The order (PEP 440):
//!
//! - epoch first (`1!0.5 > 2.0`), then the release numerically, trailing zeros ignored
//!   (`11.8` = `11.8.0`);
//! - then `1.0.dev1 < 1.0a1.dev1 < 1.0a1 < 1.0a1.post1 < 1.0b1 < 1.0rc1 < 1.0 < 1.0.post1.dev1 <
//!   1.0.post1`;
//! - then a local label sorts after the plain version (`8.9.7 < 8.9.7+cuda11 < 8.9.7+cuda12`),
//!   segment by segment, numbers above words. Local labels name variants of one release, such as
//!   cuDNN's one archive per CUDA major.
//!
//! Requirements (grammar in `docs/reference/versions.md`): PEP 440's specifiers, plus envctl's
//! bare series (`1.15`) and alternatives (`|`).
//!
//! | written | means |
//! | --- | --- |
//! | `1.15`, `1.15.*`, `==1.15.*` | the 1.15 series: `>=1.15.dev0`, `<1.16.dev0` |
//! | `==11.8.89` | exactly 11.8.89, any local label; `==8.9.7+cuda11` pins the label too |
//! | `~=2.2` | `>=2.2, ==2.*`; `~=1.4.5` is `>=1.4.5, ==1.4.*` |
//! | `!=`, `>=`, `<=` | as written; `<=8` takes 8's local variants |
//! | `<8` | below 8, and none of 8's pre-releases (unless `8` is written as one) |
//! | `>8` | above 8, and none of 8's post-releases or local variants |
//! | `>8rc1` | above 8rc1, taking 8 but none of 8's post-releases or local variants |
//! | `===X` | exactly the version X |
//! | `a,b` | both; `a|b` either (`,` binds tighter) |
//! | `*` | anything |
//!
//! Every requirement is a union of intervals between *bound versions*: a bound can sit just
//! below everything of a release ([`Tail::Min`]), just above everything of it ([`Tail::Max`]),
//! or just above a version's post-releases or its local variants (a [`Level::Top`] inside the
//! suffix), which is how the table above is made exact.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A place in one part of a version's suffix. Derived order: `Low < Val < High < Top`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level<T> {
    /// Below every value (an absent post-release; a dev release's missing pre-release).
    Low,
    /// A value.
    Val(T),
    /// Above every value (an absent pre-release or dev release).
    High,
    /// Above everything, `High` included: only used in bounds.
    Top,
}

/// A segment of a local label: words sort below numbers (PEP 440).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// Letters (and digits), compared as lowercase text.
    Word(String),
    /// Digits only.
    Num(u64),
}

/// What follows the release numbers, in PEP 440's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Suffix {
    /// `(kind, n)` of `aN`/`bN`/`rcN` (kind 0, 1, 2); `Low` for a bare dev release.
    pub pre: Level<(u8, u64)>,
    /// `.postN`.
    pub post: Level<u64>,
    /// `.devN`.
    pub dev: Level<u64>,
    /// `+local`.
    pub local: Level<Vec<Segment>>,
}

/// Where a version sits among the versions sharing its epoch and release numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tail {
    /// Below everything of the release, dev releases included: only used as a bound.
    Min,
    /// A real version (or a bound just above one's post-releases or local variants).
    At(Suffix),
    /// Above everything of the release, post-releases and local variants included: a bound.
    Max,
}

impl Suffix {
    /// The plain release: no pre, post, dev or local part.
    fn release() -> Suffix {
        Suffix { pre: Level::High, post: Level::Low, dev: Level::High, local: Level::Low }
    }
}

/// A version. Keeps its text as written for display; compares by meaning. Cloning is cheap (the
/// solver clones versions constantly).
#[derive(Debug, Clone)]
pub struct Version(std::sync::Arc<Inner>, u128);

#[derive(Debug)]
struct Inner {
    epoch: u64,
    parts: Vec<u64>,
    tail: Tail,
    text: String,
}

impl Version {
    fn new(epoch: u64, mut parts: Vec<u64>, tail: Tail, text: String) -> Version {
        while parts.last() == Some(&0) {
            parts.pop();
        }
        let key = sort_key(epoch, &parts, &tail);
        Version(std::sync::Arc::new(Inner { epoch, parts, tail, text }), key)
    }
}

/// A prefix of the order packed in 128 bits: the epoch in 8 bits, four release numbers of 28
/// bits, then the tail's rank. Different keys order as their versions do; equal keys need the
/// full comparison. A number too large to fit saturates and ends the key (everything after it
/// stays zero), so a saturated key only ever ties, never misorders.
fn sort_key(epoch: u64, parts: &[u64], tail: &Tail) -> u128 {
    const BITS: u32 = 28;
    const MAX: u64 = (1 << BITS) - 1;
    let mut key: u128 = u128::from(epoch.min(255)) << (2 + BITS * 4);
    if epoch >= 255 {
        return key;
    }
    for i in 0..4 {
        let p = parts.get(i).copied().unwrap_or(0);
        key |= u128::from(p.min(MAX)) << (2 + BITS * (3 - i as u32));
        if p >= MAX {
            return key;
        }
    }
    let rank = if parts.len() > 4 {
        3 // more numbers follow: ties with Max, and the full comparison decides
    } else {
        match tail {
            Tail::Min => 0,
            Tail::At(s) if matches!(s.pre, Level::Low | Level::Val(_)) => 1,
            Tail::At(_) => 2,
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
    /// Parses a PEP 440 version: `11.8.89`, `2.16.0rc1`, `8.9.7.29+cuda12`, `1!2.0.post1.dev3`.
    pub fn parse(s: &str) -> Result<Version, ParseError> {
        parse_version(s, 0, s)
    }

    /// Release numbers, without trailing zeros.
    pub fn components(&self) -> &[u64] {
        &self.0.parts
    }

    /// The epoch (`1` in `1!2.0`; usually 0).
    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }

    /// Whether this is a pre-release or a dev release (PEP 440 counts both).
    pub fn is_prerelease(&self) -> bool {
        matches!(&self.0.tail, Tail::At(s) if matches!(s.pre, Level::Val(_)) || matches!(s.dev, Level::Val(_)))
    }

    /// Whether this is a bound made by a requirement rather than a real version.
    pub fn is_bound(&self) -> bool {
        match &self.0.tail {
            Tail::Min | Tail::Max => true,
            Tail::At(s) => s.post == Level::Top || s.local == Level::Top,
        }
    }

    /// The local label (`cuda12` in `8.9.7.29+cuda12`).
    pub fn local(&self) -> Option<&str> {
        self.0.text.split_once('+').map(|(_, l)| l)
    }

    fn suffix(&self) -> Option<&Suffix> {
        match &self.0.tail {
            Tail::At(s) => Some(s),
            _ => None,
        }
    }

    fn is_post(&self) -> bool {
        self.suffix().is_some_and(|s| matches!(s.post, Level::Val(_)))
    }

    /// Below its release: a pre-release, a release's dev release, or a post-release of either.
    fn is_unreleased(&self) -> bool {
        self.suffix().is_some_and(|s| s.pre != Level::High)
    }

    fn is_dev(&self) -> bool {
        self.suffix().is_some_and(|s| matches!(s.dev, Level::Val(_)))
    }

    fn has_local(&self) -> bool {
        self.suffix().is_some_and(|s| matches!(s.local, Level::Val(_)))
    }

    /// The same version with a different tail (for bounds).
    fn with_tail(&self, tail: Tail) -> Version {
        // Bounds display as the version they bound: `>=1.15, <1.16` reads right.
        let text = match &tail {
            Tail::At(s) if s.post != Level::Top && s.local != Level::Top => self.0.text.clone(),
            _ => self.base_text().to_owned(),
        };
        Version::new(self.0.epoch, self.0.parts.clone(), tail, text)
    }

    /// The same version with its suffix changed by `f` (for bounds).
    fn with_suffix(&self, f: impl FnOnce(&mut Suffix)) -> Version {
        let mut s = self.suffix().cloned().unwrap_or_else(Suffix::release);
        f(&mut s);
        self.with_tail(Tail::At(s))
    }

    fn base_text(&self) -> &str {
        self.0.text.split(['+']).next().unwrap_or(&self.0.text)
    }

    /// The first version of the next series at this depth: `1.15` → `1.16`, as a lower bound
    /// ([`Tail::Min`]) with the given number of components.
    fn next_series(epoch: u64, prefix: &[u64]) -> Version {
        let mut parts = prefix.to_vec();
        if let Some(last) = parts.last_mut() {
            *last += 1;
        }
        let mut text = parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        if epoch != 0 {
            text = format!("{epoch}!{text}");
        }
        Version::new(epoch, parts, Tail::Min, text)
    }

    /// The lowest possible version: a lower bound below everything.
    pub fn lowest() -> Version {
        Version::new(0, Vec::new(), Tail::Min, "0".into())
    }
}

/// Parses `s` (which starts at `offset` of `whole`, for error columns) as a whole version.
fn parse_version(s: &str, offset: usize, whole: &str) -> Result<Version, ParseError> {
    let parsed = pep440_rs::Version::from_str(s).map_err(|e| {
        // pep440_rs says what is wrong; the column is where the longest valid prefix ends.
        let valid = (1..s.len())
            .rev()
            .find(|&i| s.is_char_boundary(i) && pep440_rs::Version::from_str(&s[..i]).is_ok());
        let at = valid.unwrap_or(0);
        let message = match s[at..].chars().next() {
            Some(c) if valid.is_some() => format!("unexpected `{c}`"),
            _ => e.to_string(),
        };
        ParseError { what: "version", input: whole.to_owned(), column: offset + at + 1, message }
    })?;
    let pre = match (parsed.pre(), parsed.post(), parsed.dev()) {
        (Some(p), _, _) => {
            let kind = match p.kind {
                pep440_rs::PrereleaseKind::Alpha => 0,
                pep440_rs::PrereleaseKind::Beta => 1,
                pep440_rs::PrereleaseKind::Rc => 2,
            };
            Level::Val((kind, p.number))
        }
        (None, None, Some(_)) => Level::Low,
        (None, _, _) => Level::High,
    };
    let local = parsed.local();
    let suffix = Suffix {
        pre,
        post: parsed.post().map_or(Level::Low, Level::Val),
        dev: parsed.dev().map_or(Level::High, Level::Val),
        local: if local.is_empty() {
            Level::Low
        } else {
            Level::Val(
                local
                    .iter()
                    .map(|seg| match seg {
                        pep440_rs::LocalSegment::Number(n) => Segment::Num(*n),
                        pep440_rs::LocalSegment::String(w) => Segment::Word(w.to_ascii_lowercase()),
                    })
                    .collect(),
            )
        },
    };
    Ok(Version::new(parsed.epoch(), parsed.release().to_vec(), Tail::At(suffix), s.trim().to_owned()))
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.epoch.hash(state);
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
        full_cmp(&self.0, &other.0)
    }
}

fn full_cmp(a: &Inner, b: &Inner) -> Ordering {
    a.epoch.cmp(&b.epoch).then_with(|| a.parts.cmp(&b.parts)).then_with(|| a.tail.cmp(&b.tail))
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
    Compatible,
    Identical,
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
        let epoch = v.0.epoch;
        // Just above `v` and its local variants; just above its post-releases too.
        let above_locals = || v.with_suffix(|s| s.local = Level::Top);
        let above_posts = || {
            v.with_suffix(|s| {
                s.post = Level::Top;
                s.dev = Level::High;
                s.local = Level::Low;
            })
        };
        match self.op {
            Op::Prefix => vec![(
                Included(v.with_tail(Tail::Min)),
                Excluded(Version::next_series(epoch, &self.prefix())),
            )],
            Op::NePrefix => vec![
                (Unbounded, Excluded(v.with_tail(Tail::Min))),
                (Included(Version::next_series(epoch, &self.prefix())), Unbounded),
            ],
            Op::Compatible => {
                let prefix = &v.0.parts_as_written()[..];
                let prefix = &prefix[..prefix.len().saturating_sub(1)];
                vec![(Included(v.clone()), Excluded(Version::next_series(epoch, prefix)))]
            }
            Op::Identical => vec![(Included(v.clone()), Included(v.clone()))],
            Op::Eq | Op::Ne => {
                // `==8.9.7` matches the release and all its local variants.
                let (lo, hi) =
                    if v.has_local() { (v.clone(), v.clone()) } else { (v.clone(), above_locals()) };
                if self.op == Op::Eq {
                    vec![(Included(lo), Included(hi))]
                } else {
                    vec![(Unbounded, Excluded(lo)), (Excluded(hi), Unbounded)]
                }
            }
            Op::Ge => vec![(Included(v.clone()), Unbounded)],
            // `>2.1rc1` takes 2.1 but none of 2.1's post-releases or local variants (PEP 440, as
            // pip reads it: they are of the release the clause names); `>2.1rc1.post1` takes
            // 2.1's post-releases, not its local variants. A dev release and a post-release have
            // no post-releases of their own: `>0.dev0` takes `0.dev1`.
            Op::Gt if v.is_unreleased() => {
                let release = v.with_tail(Tail::At(Suffix::release()));
                let own = if v.is_dev() || v.is_post() { above_locals() } else { above_posts() };
                let above_release = if v.is_post() {
                    release.with_suffix(|s| s.local = Level::Top)
                } else {
                    release.with_suffix(|s| {
                        s.post = Level::Top;
                        s.dev = Level::High;
                        s.local = Level::Low;
                    })
                };
                vec![(Excluded(own), Included(release)), (Excluded(above_release), Unbounded)]
            }
            Op::Gt if v.is_post() => vec![(Excluded(above_locals()), Unbounded)],
            Op::Gt => vec![(Excluded(above_posts()), Unbounded)],
            Op::Lt if v.is_prerelease() => vec![(Unbounded, Excluded(v.clone()))],
            // `<8` takes none of 8's pre-releases; `<8.post1` takes 8 but not 8's pre-releases.
            Op::Lt if v.is_post() => vec![
                (Unbounded, Excluded(v.with_tail(Tail::Min))),
                (Included(v.with_tail(Tail::At(Suffix::release()))), Excluded(v.clone())),
            ],
            Op::Lt => vec![(Unbounded, Excluded(v.with_tail(Tail::Min)))],
            Op::Le => vec![(Unbounded, Included(above_locals()))],
        }
    }

    /// The release numbers a series clause names, as written (`1.15` → [1, 15], even `11.0`).
    fn prefix(&self) -> Vec<u64> {
        self.version.0.parts_as_written()
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

impl Inner {
    /// The release numbers with the trailing zeros the text wrote (`11.0` → [11, 0]).
    fn parts_as_written(&self) -> Vec<u64> {
        let base = self.text.split('+').next().unwrap_or(&self.text);
        let base = base.split_once('!').map_or(base, |(_, r)| r);
        let base = base.trim_start_matches(['v', 'V']);
        base.split('.').map_while(|p| p.parse().ok()).collect()
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
                    ("===", Op::Identical),
                    ("==", Op::Eq),
                    ("~=", Op::Compatible),
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
                if vtext.is_empty() {
                    return Err(err(vat, "expected a version".into()));
                }
                let (series, vtext) = match vtext.strip_suffix(".*") {
                    Some(v) => (true, v),
                    None => (false, vtext),
                };
                let version = parse_version(vtext, vat, s).map_err(|mut e| {
                    e.what = "requirement";
                    e
                })?;
                let op = match (op, series) {
                    (None, _) | (Some(Op::Eq), true) => Op::Prefix,
                    (Some(Op::Ne), true) => Op::NePrefix,
                    (Some(_), true) => {
                        return Err(err(vat, "`.*` goes only with `==`, `!=` or no operator".into()));
                    }
                    (Some(op), false) => op,
                };
                if op == Op::Prefix && version.0.tail != Tail::At(Suffix::release()) {
                    return Err(err(
                        vat,
                        "a series (`1.15` or `1.15.*`) has no pre-release, post-release or local label; use `==`"
                            .into(),
                    ));
                }
                if op == Op::Compatible && (version.0.parts_as_written().len() < 2 || version.has_local()) {
                    return Err(err(
                        vat,
                        "`~=` needs at least two release numbers and no local label".into(),
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
            alternatives: vec![vec![Clause { op: Op::Identical, version: v.clone() }]],
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
        match rng.below(9) {
            0 => s.push_str(&format!("rc{}", rng.below(3))),
            1 => s.push_str(&format!("+cu{}", 11 + rng.below(2))),
            2 => s.push_str(&format!(".post{}", rng.below(2))),
            3 => s.push_str(&format!(".dev{}", rng.below(2))),
            4 => s.push_str(&format!("a{}.post{}.dev{}", rng.below(2), rng.below(2), rng.below(2))),
            5 => s = format!("1!{s}"),
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
        for t in [
            "1.2.3.4.5",
            "1.2.3.4",
            "1.2.3.4.0.1",
            "268435455.1",
            "268435456.0",
            "268435457",
            "1.2rc1",
            "0",
            "1.2.dev1",
            "1.2.post3",
            "1!0.5",
            "254!1",
            "255!1",
            "256!0.1",
        ] {
            vs.push(v(t));
            vs.push(v(t).with_tail(Tail::Min));
            vs.push(v(t).with_tail(Tail::Max));
            vs.push(v(t).with_suffix(|s| s.local = Level::Top));
            vs.push(v(t).with_suffix(|s| s.post = Level::Top));
        }
        for a in &vs {
            for b in &vs {
                let full = full_cmp(&a.0, &b.0);
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
                let release = text.rsplit('!').next().unwrap();
                text = release
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect::<String>()
                    .trim_end_matches('.')
                    .to_owned();
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

    #[test]
    fn pep440_orders_dev_pre_post_and_epochs() {
        let ordered = [
            "1.0.dev1",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a1.post1.dev1",
            "1.0a1.post1",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+abc.5",
            "1.0+5",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.0.1",
            "2.0",
            "1!0.5",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        // Spellings PEP 440 normalizes compare equal, and keep their text.
        assert_eq!(v("1.0-post1"), v("1.0.post1"));
        assert_eq!(v("1.0.POST1"), v("1.0.post1"));
        assert_eq!(v("2.0beta2"), v("2.0b2"));
        assert_eq!(v("1.0c1"), v("1.0rc1"));
        assert_eq!(v("5.0.0dev"), v("5.0.0.dev0"));
        assert_eq!(v("1.0-post1").to_string(), "1.0-post1");
        assert!(
            v("1.0.dev1").is_prerelease() && v("1.0a1").is_prerelease() && !v("1.0.post1").is_prerelease()
        );
        // Real versions from the framework metadata in shared/data.
        for real in ["2026.10.19.post1", "2.15.1", "0.4.0", "3.20.3", "2.1.2+cu121", "1!2.0", "4.25.3"] {
            Version::parse(real).unwrap_or_else(|e| panic!("{real}: {e}"));
        }
    }

    #[test]
    fn pep440_specifiers_match_as_the_pep_says() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("~=0.3.1", &["0.3.1", "0.3.9", "0.3.1.post1"], &["0.3.0", "0.4.0", "0.3.1.dev1"]),
            ("~=2.2", &["2.2", "2.9.1"], &["3.0", "2.1"]),
            ("<5.0.0dev", &["4.9", "4.99.post1"], &["5.0.0.dev0", "5.0.0a1", "5.0"]),
            ("!=3.0.*", &["2.9", "3.1"], &["3.0", "3.0.5", "3.0.0rc1"]),
            (">=1.0,!=1.2.*,<2", &["1.0", "1.3"], &["1.2.1", "2.0", "2.0rc1"]),
            ("==2.*", &["2.0", "2.15.1", "2.0.post1", "2.1rc1"], &["3.0", "1.9", "3.0.dev0"]),
            (">1.0", &["1.0.1", "1.1"], &["1.0", "1.0.post1", "1.0+local"]),
            (">1.0.post1", &["1.0.post2", "1.1"], &["1.0.post1", "1.0.post1+l"]),
            ("<1.0", &["0.9", "0.9.post1"], &["1.0rc1", "1.0.dev1", "1.0"]),
            ("<1.0rc2", &["1.0rc1", "1.0.dev1"], &["1.0rc2", "1.0"]),
            ("<1.0.post1", &["0.9", "1.0"], &["1.0rc1", "1.0.post1"]),
            ("<=1.0", &["1.0", "1.0+x"], &["1.0.post1", "1.0.1"]),
            ("==1.0", &["1.0", "1.0.0", "1.0+cu121"], &["1.0.post1", "1.0rc1"]),
            ("===1.0", &["1.0"], &["1.0+x", "1.0.post1"]),
            (">=1!1.0", &["1!1.0", "1!2"], &["9.0", "2000.1"]),
            ("1.15", &["1.15.0rc1", "1.15.5", "1.15.post1"], &["1.16.dev0", "1.14.9"]),
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
        assert!(Requirement::parse("~=1").is_err());
        assert!(Requirement::parse("1.0.post1.*").is_err());
    }
}
