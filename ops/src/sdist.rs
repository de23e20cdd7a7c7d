//! Python source distributions: fetched and unpacked into the store like any source (its top
//! folder stripped), looked into before anything builds, and built into a wheel by the profile's
//! Python (see envctl-python's `derive.rs`, `Derivation::Build`).
//!
//! `envctl import pip` and `envctl lock` look into each sdist they meet, as uv does when it reads
//! an sdist's metadata at lock time: one that needs a compiler is refused then, naming the file
//! that shows it, rather than failing halfway through an `apply`.

use envctl_python::BuildSystem;
use envctl_python::import::SdistRef;
use envctl_recipes::LockedPackage;
use envctl_store::{InstallRequest, Installer, NoReporter, Store};

use crate::settings::Settings;

use crate::error::{Failure, Result};

/// Puts the source distribution `request` names into the store (found or fetched) and checks it;
/// its store path and build system. The error is the reason alone, for its caller's context.
pub fn fetch_and_check(
    installer: &Installer,
    request: &InstallRequest,
) -> std::result::Result<(String, BuildSystem), String> {
    let installed = installer
        .install(request, &NoReporter)
        .map_err(|e| format!("cannot fetch `{}`: {e}", request.url))?;
    let build = BuildSystem::of_tree(&installed.path)?;
    Ok((installed.record.name.clone(), build))
}

/// Looks into a locked package's source distribution at lock time: a tree that cannot be built
/// fails the lock. One that cannot be fetched now (an offline login node) is only reported (in
/// `warnings`), and is looked into when it is applied, before anything builds.
pub fn check_at_lock(installer: &Installer, p: &LockedPackage, warnings: &mut Vec<String>) -> Result<()> {
    let fail = |why: String| {
        Failure::new(format!("cannot build {} {} from source", p.name, p.version), why)
            .hint(format!("its source distribution is `{}` (sha256 {})", p.source.url, p.source.sha256))
            .hint(
                "envctl builds pure-Python source distributions only; ask for a version published as a wheel",
            )
    };
    let request =
        crate::request::install_request(p).ok_or_else(|| fail("its locked source does not parse".into()))?;
    match installer.install(&request, &NoReporter) {
        Ok(installed) => BuildSystem::of_tree(&installed.path).map(|_| ()).map_err(fail),
        Err(e) => {
            warnings.push(format!(
                "{} {} is published only as source and cannot be fetched now ({e}); it is looked into when applied",
                p.name, p.version
            ));
            Ok(())
        }
    }
}

/// Looks into the source distributions an import meets (`envctl import pip`): each is put into
/// the store (found there, pulled from a cache or fetched) and read; the store is opened at the
/// first one, not before.
pub struct Inspector<'s> {
    settings: &'s Settings,
    store: Option<Store>,
}

impl<'s> Inspector<'s> {
    /// An inspector over the store and caches `settings` name.
    pub fn new(settings: &'s Settings) -> Inspector<'s> {
        Inspector { settings, store: None }
    }

    /// How `sdist` builds, or why it cannot be fetched or built here.
    pub fn look_into(&mut self, sdist: &SdistRef) -> std::result::Result<BuildSystem, String> {
        let store = match &mut self.store {
            Some(store) => store,
            None => self.store.insert(
                Store::open(&self.settings.store_dir(), self.settings.store_options())
                    .map_err(|e| e.to_string())?,
            ),
        };
        let request = crate::request::sdist_request(&sdist.url, &sdist.sha256, &sdist.name, &sdist.version)?;
        let caches = self.settings.caches(&self.settings.store_options().fetch);
        fetch_and_check(&Installer::new(store, &caches), &request).map(|(_, build)| build)
    }
}
