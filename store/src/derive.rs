//! Derived store paths: made from other store paths by the store's [`Layer`] rather than
//! fetched, keyed by what they are made from, so they are made once and shared like any
//! package. Each is registered under its key (a source key starting `derived:`) with a
//! reference to each input (GC keeps them), and `verify --repair` makes it again from the key.

use std::path::{Path, PathBuf};

use crate::db::SourceRecord;
use crate::error::{Error, Result};
use crate::layer::{Derivation, Job};
use crate::request::Installed;
use crate::store::Store;
use crate::tempdir::TempDir;
use envctl_core::StorePathName;

impl Store {
    /// Makes each derivation, or finds it made; one result per derivation, in order. The layer
    /// gets all of them at once (bytecode for several wheels is compiled side by side).
    pub fn derive_all(&self, derivations: &[Derivation]) -> Vec<Result<Installed>> {
        self.derive_all_with(derivations, &|_, _| None)
    }

    /// [`Store::derive_all`], where `substitute(i, found)` may give the path for `derivations[i]`
    /// from elsewhere (a binary cache), in place of the one the store has (`found`) or of
    /// building it.
    pub(crate) fn derive_all_with(
        &self,
        derivations: &[Derivation],
        substitute: &dyn Fn(usize, Option<&Installed>) -> Option<Installed>,
    ) -> Vec<Result<Installed>> {
        let mut results: Vec<Option<Result<Installed>>> = derivations.iter().map(|_| None).collect();
        let mut pending = Vec::new();
        for (i, d) in derivations.iter().enumerate() {
            match self.find_derived(d) {
                Ok(found) => match (substitute(i, found.as_ref()), found) {
                    (Some(other), _) | (None, Some(other)) => results[i] = Some(Ok(other)),
                    (None, None) => pending.push(i),
                },
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !pending.is_empty() {
            let todo: Vec<&Derivation> = pending.iter().map(|&i| &derivations[i]).collect();
            match self.build_derived(&todo) {
                Ok(built) => {
                    for (i, (work, tree_dir)) in pending.iter().zip(built) {
                        results[*i] = Some(self.commit_derived(&derivations[*i], &work, &tree_dir));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for i in pending {
                        results[i] = Some(Err(Error::Derivation {
                            key: derivations[i].key.clone(),
                            message: message.clone(),
                        }));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every derivation has a result")).collect()
    }

    fn find_derived(&self, d: &Derivation) -> Result<Option<Installed>> {
        let Some(record) = self.db().path_for_source(&d.key)? else { return Ok(None) };
        let path = self.dir.join(&record.name);
        Ok(path.is_dir().then(|| Installed::present(path, record)))
    }

    /// Has the layer make the trees of `todo`, each in a fresh temporary directory, and gives
    /// each with its tree's path, normalized as every store tree is.
    pub(crate) fn build_derived(&self, todo: &[&Derivation]) -> Result<Vec<(TempDir, PathBuf)>> {
        let layer = self.layer("making derived paths")?;
        let db = self.db();
        for d in todo {
            for input in &d.inputs {
                if db.get(input.as_str())?.is_none() {
                    return Err(Error::NotInStore(input.to_string()));
                }
            }
        }
        drop(db);
        let mut out = Vec::new();
        for _ in todo {
            let work = TempDir::new(&self.dir.join(".tmp"))?;
            let tree = work.fresh("tree")?;
            out.push((work, tree));
        }
        let jobs: Vec<Job<'_>> = todo
            .iter()
            .zip(&out)
            .map(|(derivation, (work, tree))| Job { derivation, work: &work.path, tree })
            .collect();
        layer.prepare(self, &jobs)?;
        {
            // A root caller's sandbox runs as `nobody`: it may write the work directories only.
            let _lent = crate::sandbox::Lent::new(out.iter().map(|(work, _)| work.path.clone()).collect())?;
            layer.build(self, &jobs)?;
        }
        for (_, tree) in &out {
            crate::unpack::normalize_tree(tree)?;
        }
        Ok(out)
    }

    fn commit_derived(&self, d: &Derivation, work: &TempDir, tree_dir: &Path) -> Result<Installed> {
        let tree = crate::tree::scan(tree_dir)?;
        let tree_hash = tree.tree_hash();
        let path_name = StorePathName::derive(&d.name, &d.version, &tree_hash.0);
        let source = SourceRecord { sha256: String::new(), url: "derived".into() };
        let references: Vec<String> = d.inputs.iter().map(|p| p.to_string()).collect();
        let (dest, record) = self.commit(
            work,
            tree_dir,
            &path_name,
            &tree_hash,
            tree.stats(),
            (d.name.as_str().to_owned(), d.version.as_str().to_owned()),
            Some((&d.key, &source)),
            &references,
        )?;
        Ok(Installed::present(dest, record))
    }

    /// Has the layer finish an interpreter's tree unpacked at `tree` (not yet in the store; its
    /// parent is the work directory), then gives the tree the store's modes and returns its model.
    pub(crate) fn finish_interpreter(&self, tree: &Path) -> Result<crate::tree::Node> {
        let layer = self.layer("an interpreter's bytecode")?;
        {
            let work = tree.parent().unwrap_or(tree).to_path_buf();
            let _lent = crate::sandbox::Lent::new(vec![work])?;
            layer.finish_interpreter(self, tree)?;
        }
        crate::unpack::normalize_tree(tree)?;
        Ok(crate::tree::scan(tree)?)
    }
}
