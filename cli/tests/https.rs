//! Downloads over HTTPS: the client speaks HTTP/2 where the server offers it, trusts the
//! certificates the system's store names (here `SSL_CERT_FILE`, as on a machine with its own CA
//! bundle), and says which URL and which certificate problem when it cannot trust a server.

mod common;

use common::{Run, Sandbox};
use envctl_testkit::{Archive, Entry, H2Server, Server, sha256_hex};

/// A sandbox whose recipes `pkg0 1` … name archives served by an HTTP/2-only server; with the
/// profile that wants them all.
fn packages_over_h2(count: usize) -> (Sandbox, H2Server, String) {
    let sb = Sandbox::new();
    let server = H2Server::start(&sb.path(""));
    let repo = sb.path("recipes");
    std::fs::create_dir_all(&repo).unwrap();
    sb.config(&format!("recipes = [\"{}\"]", repo.display()));
    let mut profile = String::from("[packages]\n");
    for p in 0..count {
        let bytes =
            Archive::new().with(Entry::file(&format!("share/pkg{p}/data"), "x".repeat(100_000 + p))).tar_gz();
        let url = server.serve(&format!("/pkg{p}.tar.gz"), bytes.clone());
        let recipe = format!(
            "name = \"pkg{p}\"\nversion = \"1\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\n",
            sha256_hex(&bytes)
        );
        std::fs::write(repo.join(format!("pkg{p}.toml")), recipe).unwrap();
        profile.push_str(&format!("pkg{p} = \"1\"\n"));
    }
    std::fs::write(sb.path("p.toml"), profile).unwrap();
    let profile = sb.path("p.toml").display().to_string();
    (sb, server, profile)
}

/// `envctl ARGS` trusting only the certificates in `bundle` (the machine's own `SSL_CERT_DIR`, if
/// it sets one, is not looked at).
fn trusting(sb: &Sandbox, bundle: &str, args: &[&str]) -> Run {
    Run::from(sb.command(args).env("SSL_CERT_FILE", bundle).env_remove("SSL_CERT_DIR").output().unwrap())
}

#[test]
fn downloads_from_an_http2_only_server_over_one_client_and_its_connections() {
    let (sb, server, profile) = packages_over_h2(6);
    let cert = server.certificate().display().to_string();
    trusting(&sb, &cert, &["apply", &profile]).ok();
    // The server offers only `h2`: a client that did not offer HTTP/2 could not have finished
    // the handshake, let alone fetched anything.
    let requests: usize = (0..6).map(|p| server.hits(&format!("/pkg{p}.tar.gz"))).sum();
    assert!((0..6).all(|p| server.hits(&format!("/pkg{p}.tar.gz")) >= 1), "every archive fetched");
    for p in 0..6 {
        let data = std::fs::read_dir(sb.store())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(&format!("-pkg{p}-1")))
            .map(|e| e.path().join(format!("share/pkg{p}/data")))
            .expect("the package's store path");
        assert_eq!(std::fs::read(data).unwrap().len(), 100_000 + p);
    }
    // Connections are kept and shared: fewer than one per request.
    assert!(server.connections() < requests, "{} connections for {requests} requests", server.connections());
}

#[test]
fn a_server_the_system_does_not_trust_is_refused_naming_the_url_and_the_reason() {
    let (sb, _server, profile) = packages_over_h2(1);
    // Another certificate entirely: the store trusts something, just not this server.
    let other = H2Server::start(&sb.path("user"));
    let r = trusting(&sb, &other.certificate().display().to_string(), &["apply", &profile]);
    let err = r.failed();
    assert!(err.contains("https://127.0.0.1:") && err.contains("/pkg0.tar.gz"), "{err}");
    assert!(err.contains("UnknownIssuer") && err.contains("not signed by an authority"), "{err}");
    // Asking again would get the same certificate: no retry.
    assert!(!r.stderr.contains("retry"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(sb.store())
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains("pkg0")).count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn with_no_certificate_on_the_machine_http_still_works_and_https_says_why_not() {
    let (sb, _server, profile) = packages_over_h2(1);
    let missing = sb.path("no-such-bundle.pem").display().to_string();
    let r = trusting(&sb, &missing, &["apply", &profile]);
    let err = r.failed();
    assert!(err.contains("no trusted certificate was found"), "{err}");
    assert!(err.contains("SSL_CERT_FILE"), "{err}");

    let plain = Server::start();
    let bytes = Archive::new().with(Entry::file("x", "x")).tar_gz();
    let url = plain.serve("/x.tar.gz", bytes.clone());
    let args = ["store", "add", &url, "--sha256", &sha256_hex(&bytes), "--name", "x", "--version", "1"];
    trusting(&sb, &missing, &args).ok();
    assert_eq!(plain.hits("/x.tar.gz"), 1);
}
