//! The solver's version sets: pubgrub's ranges over [`Version`], displayed the way people write
//! requirements.

use std::fmt;
use std::ops::Bound as StdBound;

use envctl_recipes::{Bound, Requirement, Version};
use pubgrub::{Ranges, VersionSet};

/// A set of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set(pub Ranges<Version>);

fn std_bound(b: &Bound) -> StdBound<Version> {
    match b {
        Bound::Included(v) => StdBound::Included(v.clone()),
        Bound::Excluded(v) => StdBound::Excluded(v.clone()),
        Bound::Unbounded => StdBound::Unbounded,
    }
}

impl From<&Requirement> for Set {
    fn from(req: &Requirement) -> Set {
        // Built without identity operations (union with empty, intersection with full): the
        // solver converts thousands of these.
        let mut any: Option<Ranges<Version>> = None;
        for all in req.alternatives() {
            let mut both: Option<Ranges<Version>> = None;
            for clause in all {
                let mut one: Option<Ranges<Version>> = None;
                for (lo, hi) in clause.intervals() {
                    let r = Ranges::from_range_bounds((std_bound(&lo), std_bound(&hi)));
                    one = Some(match one {
                        None => r,
                        Some(o) => o.union(&r),
                    });
                }
                let one = one.unwrap_or_else(Ranges::empty);
                both = Some(match both {
                    None => one,
                    Some(b) => b.intersection(&one),
                });
            }
            let both = both.unwrap_or_else(Ranges::full);
            any = Some(match any {
                None => both,
                Some(a) => a.union(&both),
            });
        }
        Set(any.unwrap_or_else(Ranges::empty))
    }
}

impl VersionSet for Set {
    type V = Version;

    fn empty() -> Set {
        Set(Ranges::empty())
    }

    fn singleton(v: Version) -> Set {
        Set(Ranges::singleton(v))
    }

    fn complement(&self) -> Set {
        Set(self.0.complement())
    }

    fn intersection(&self, other: &Set) -> Set {
        Set(self.0.intersection(&other.0))
    }

    fn contains(&self, v: &Version) -> bool {
        self.0.contains(v)
    }

    fn full() -> Set {
        Set(Ranges::full())
    }

    fn union(&self, other: &Set) -> Set {
        Set(self.0.union(&other.0))
    }

    fn is_disjoint(&self, other: &Set) -> bool {
        self.0.is_disjoint(&other.0)
    }

    fn subset_of(&self, other: &Set) -> bool {
        self.0.subset_of(&other.0)
    }
}

/// Whether `[a, b)` is one series, as a requirement like `1.15` makes it: both bounds below any
/// release, written with the same number of components, equal but for the last, which `b` has one
/// higher (`1.15` to `1.16`).
fn series(a: &Version, b: &Version) -> bool {
    if !(a.is_bound() && b.is_bound()) {
        return false;
    }
    let parts =
        |v: &Version| v.to_string().split('.').map(|p| p.parse::<u64>().ok()).collect::<Option<Vec<u64>>>();
    match (parts(a), parts(b)) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.split_last()
                    .zip(y.split_last())
                    .is_some_and(|((xl, xs), (yl, ys))| xs == ys && *yl == xl + 1)
        }
        _ => false,
    }
}

impl fmt::Display for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StdBound::*;
        let mut first = true;
        for (lo, hi) in self.0.iter() {
            if !first {
                f.write_str(" or ")?;
            }
            first = false;
            match (lo, hi) {
                (Unbounded, Unbounded) => f.write_str("*")?,
                (Included(a), Included(b)) if a == b => write!(f, "{a}")?,
                (Included(a), Included(b)) if a.components() == b.components() => write!(f, "=={a}")?,
                (Unbounded, Included(v)) => write!(f, "<={v}")?,
                (Unbounded, Excluded(v)) => write!(f, "<{v}")?,
                (Included(v), Unbounded) => write!(f, ">={v}")?,
                (Excluded(v), Unbounded) => write!(f, ">{v}")?,
                (Included(a), Included(b)) => write!(f, ">={a}, <={b}")?,
                (Included(a), Excluded(b)) if series(a, b) => write!(f, "{a}.*")?,
                (Included(a), Excluded(b)) => write!(f, ">={a}, <{b}")?,
                (Excluded(a), Included(b)) => write!(f, ">{a}, <={b}")?,
                (Excluded(a), Excluded(b)) => write!(f, ">{a}, <{b}")?,
            }
        }
        if first {
            f.write_str("no version")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_read_the_way_requirements_are_written() {
        let show = |r: &str| Set::from(&Requirement::parse(r).unwrap()).to_string();
        assert_eq!(show("1.15"), "1.15.*");
        assert_eq!(show("11.0"), "11.0.*");
        assert_eq!(show("12"), "12.*");
        assert_eq!(show(">=7.6,<8"), ">=7.6, <8");
        assert_eq!(show(">=1.15,<1.16"), ">=1.15, <1.16");
        assert_eq!(show("==8.9.7"), "==8.9.7");
        assert_eq!(show("*"), "*");
        assert_eq!(show("<10 | >=12"), "<10 or >=12");
    }
}
