//! Shared test support for envctl: a loopback HTTP server that counts requests and can misbehave
//! on purpose, an HTTPS server that speaks only HTTP/2, an archive factory (including hostile archives no honest tool would write), and
//! small helpers. Nothing here reaches beyond 127.0.0.1.

pub mod archive;
pub mod faults;
pub mod jupyter;
pub mod nvml;
pub mod prepare;
pub mod python;
pub mod s3;
pub mod server;
pub mod tempdir;
pub mod tls;
pub mod tools;

pub use archive::{Archive, Entry};
pub use server::{Reply, Server};
pub use tempdir::{TempDir, tempdir};
pub use tls::H2Server;

/// sha256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
