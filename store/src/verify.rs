//! Verify: recompute every valid path's tree hash and compare it with the database.

use crate::error::Result;
use crate::store::Store;
use crate::tree::{self, Node};

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Corruption {
    /// The store path's file name.
    pub name: String,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Paths checked.
    pub checked: usize,
    /// Paths whose tree no longer matches the database.
    pub corrupted: Vec<Corruption>,
}

impl Store {
    /// Recomputes every valid path's tree hash and compares it with the database.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for record in self.list()? {
            report.checked += 1;
            let path = self.dir.join(&record.name);
            let problem = match tree::scan(&path) {
                Ok(node @ Node::Dir(_)) => {
                    let actual = node.tree_hash().to_string();
                    (actual != record.tree_hash)
                        .then(|| format!("tree hash is {actual}, the database says {}", record.tree_hash))
                }
                Ok(_) => Some("is not a directory".to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path.exists() => {
                    Some("is missing".to_owned())
                }
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            if let Some(problem) = problem {
                report.corrupted.push(Corruption { name: record.name, problem });
            }
        }
        Ok(report)
    }
}
