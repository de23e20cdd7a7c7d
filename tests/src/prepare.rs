//! Tools the tests fetch once per machine and share between test binaries (a moto server, the
//! Jupyter client, Debian packages): prepared by whichever test asks first, under a lock in the
//! temporary directory, and checked again under it, since another binary may have prepared them
//! meanwhile.

use std::process::Command;

/// Runs `prepare` unless `ready()` says the tool is there, holding the lock
/// `<TMPDIR>/envctl-testkit-NAME.lock` while it asks again and prepares.
pub fn once(name: &str, ready: impl Fn() -> bool, prepare: impl FnOnce()) {
    if ready() {
        return;
    }
    let path = std::env::temp_dir().join(format!("envctl-testkit-{name}.lock"));
    let lock = std::fs::File::create(&path).expect("create the test kit's lock");
    lock.lock().expect("take the test kit's lock");
    if !ready() {
        prepare();
    }
}

/// Runs `cmd` for `who` (`the S3 tests`), which need `what` from it; a failure panics with both
/// and the command's error output: a test that cannot get its tool fails, it never skips.
pub fn run(cmd: &mut Command, who: &str, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{who} need {what}: {e}"));
    assert!(
        out.status.success(),
        "{who} need {what}, which failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
