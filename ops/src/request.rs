//! What the store is asked for a locked package: its source, how to unpack it, the path the lock
//! promises.

use envctl_recipes::LockedPackage;

/// The store request for a locked package, when its values pass the store's checks.
pub fn install_request(p: &LockedPackage) -> Option<envctl_store::InstallRequest> {
    let mut request = envctl_store::InstallRequest {
        url: p.source.url.clone(),
        sha256: envctl_store::Sha256::parse(&p.source.sha256).ok()?,
        name: envctl_store::Name::parse(&p.name).ok()?,
        version: envctl_store::Version::parse(&p.version).ok()?,
        // A source distribution's tree is what is stored; the python layer builds the wheel.
        unpack: if p.source.is_sdist() { sdist_unpack_options() } else { p.source.unpack.clone() },
        bytecode: false,
        references: Vec::new(),
        // Caches are asked for the path the lock promises.
        store_path: p.store_path.as_deref().and_then(|s| envctl_store::StorePathName::parse(s).ok()),
    };
    // The profile's Python (see python.rs) gets its standard library compiled.
    request.bytecode = p.name == "python" && !request.unpack.installs_as_wheel(&request.url);
    Some(request)
}

/// Whether a locked package is built from a source distribution.
pub fn is_sdist(p: &LockedPackage) -> bool {
    p.source.is_sdist()
}

/// Unpack options for a source distribution: its archive format from the file name, its one top
/// folder (`gast-0.2.2/`) stripped.
pub fn sdist_unpack_options() -> envctl_store::Unpack {
    envctl_store::Unpack { strip_components: 1, ..Default::default() }
}

/// The store request for a source distribution named by its values (an importer's, before any
/// lock exists); the error names the value the store refuses.
pub fn sdist_request(
    url: &str,
    sha256: &str,
    name: &str,
    version: &str,
) -> Result<envctl_store::InstallRequest, String> {
    Ok(envctl_store::InstallRequest {
        url: url.to_owned(),
        sha256: envctl_store::Sha256::parse(sha256).map_err(|e| e.to_string())?,
        name: envctl_store::Name::parse(name).map_err(|e| e.to_string())?,
        version: envctl_store::Version::parse(version).map_err(|e| e.to_string())?,
        unpack: sdist_unpack_options(),
        bytecode: false,
        references: Vec::new(),
        store_path: None,
    })
}
