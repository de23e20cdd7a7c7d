//! The build sandbox, tried with a shell that does what a hostile build backend did: reach the
//! network, list a home, write outside its output and into the store, leave a process behind,
//! and run past its time.

use std::process::{Command, Stdio};
use std::time::Duration;

use envctl_store::Sandbox;

/// Processes whose command line holds `marker`, zombies left out.
fn running(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_sandboxed_program_reaches_no_network_writes_only_its_output_and_leaves_nothing_running() {
    Sandbox::probe().expect("this machine makes sandboxes (unprivileged user namespaces)");
    let dir = envctl_testkit::tempdir();
    let store = dir.path().join("store");
    let out = dir.path().join("store/.tmp/work");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(store.join("package-file"), "stored").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker = format!("{}", 4000 + std::process::id() % 1000);
    let script = format!(
        r#"
        set -u
        id -u > "$OUT/uid"
        cat "$STORE/package-file" > "$OUT/read" 2>&1
        (echo x > "$STORE/package-file") 2> "$OUT/store-write" && echo WROTE-STORE > "$OUT/store-write"
        (echo x > "$OUTSIDE/file") 2> "$OUT/outside-write" && echo WROTE-OUTSIDE > "$OUT/outside-write"
        ls -A /root /home > "$OUT/homes" 2>&1
        (echo hi > /dev/tcp/127.0.0.1/{port}) 2> "$OUT/network" && echo REACHED > "$OUT/network"
        setsid sleep {marker} < /dev/null > /dev/null 2>&1 &
        echo done > "$OUT/done"
        "#
    );
    let sandbox = Sandbox {
        writable: vec![out.clone()],
        shown: vec![store.clone()],
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let mut command = Command::new("/bin/bash");
    command
        .args(["-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OUT", &out)
        .env("STORE", &store)
        .env("OUTSIDE", &outside)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A root caller's sandbox runs as nobody: its output directory is nobody's to write.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for d in [dir.path(), &store, &store.join(".tmp"), &out] {
            std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
        }
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let result = sandbox.output(&mut command).unwrap();
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| format!("<{e}>"));
    assert!(result.status.success(), "{result:?}");
    assert_eq!(read("done").trim(), "done");
    // Not the caller: nobody for root, the user's own id mapped to 1000 for anyone else.
    // SAFETY: geteuid has no preconditions.
    let want = if unsafe { libc::geteuid() } == 0 { "65534" } else { "1000" };
    assert_eq!(read("uid").trim(), want, "it runs as nobody in particular");
    assert_eq!(read("read").trim(), "stored", "the store is readable");
    assert!(read("store-write").contains("Read-only file system"), "{}", read("store-write"));
    assert_eq!(std::fs::read_to_string(store.join("package-file")).unwrap(), "stored");
    assert!(!outside.join("file").exists(), "it wrote outside its output: {}", read("outside-write"));
    // Hidden (it does not exist in there) or read-only, never written.
    let outside_write = read("outside-write");
    assert!(
        outside_write.contains("No such file or directory")
            || outside_write.contains("Read-only file system"),
        "{outside_write}"
    );
    assert!(
        read("homes").lines().all(|l| l.is_empty() || l.ends_with(':')),
        "homes are empty: {}",
        read("homes")
    );
    assert!(!read("network").contains("REACHED"), "it reached 127.0.0.1:{port}: {}", read("network"));
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a connection came in from the sandbox");
    // The process it left behind died with it.
    std::thread::sleep(Duration::from_millis(200));
    assert!(running(&format!("sleep {marker}")).is_empty(), "`sleep {marker}` outlived the sandbox");
}

#[test]
fn a_sandboxed_program_past_its_time_is_killed_with_everything_it_started() {
    Sandbox::probe().expect("this machine makes sandboxes (unprivileged user namespaces)");
    let dir = envctl_testkit::tempdir();
    let marker = format!("{}", 5000 + std::process::id() % 1000);
    let sandbox = Sandbox {
        writable: vec![dir.path().to_path_buf()],
        timeout: Some(Duration::from_millis(800)),
        ..Default::default()
    };
    let mut command = Command::new("/bin/bash");
    command
        .args(["-c", &format!("sleep {marker} & sleep {marker}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let result = sandbox.output(&mut command).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!result.status.success());
    std::thread::sleep(Duration::from_millis(200));
    assert!(running(&format!("sleep {marker}")).is_empty(), "a process outlived the timeout");
}
