//! Signing keys and signatures for store paths that travel between machines (binary caches,
//! exported closures).
//!
//! Keys are ed25519 (`ring`), written as Nix writes them: a secret key file holds one line
//! `NAME:BASE64(seed ‖ public key)`, a public key `NAME:BASE64(public key)`, and a signature is
//! `NAME:BASE64(signature)`. A signature covers a path's [`fingerprint`]: its name, tree hash,
//! size, references and the sources it answers, so none of them can be swapped without the
//! signature failing.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::error::{Error, Result};

/// A secret signing key.
pub struct SecretKey {
    name: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

/// A public key that signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key's name.
    pub name: String,
    key: [u8; 32],
}

fn bad_key(what: &str, why: impl Into<String>) -> Error {
    Error::Key(format!("{what}: {}", why.into()))
}

/// A key's name: what `NAME:` says, so it must not contain `:` and must be printable.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(':') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad_key(
            "invalid key name",
            format!("`{name}` must be non-empty, without `:` or spaces"),
        ));
    }
    Ok(())
}

/// `NAME:BASE64` with a valid name and exactly `N` bytes; `what` starts each error.
fn split_key<'t, const N: usize>(text: &'t str, what: &str) -> Result<(&'t str, [u8; N])> {
    let (name, data) = text.trim().split_once(':').ok_or_else(|| bad_key(what, "expected NAME:BASE64"))?;
    check_name(name)?;
    let bytes = STANDARD.decode(data).map_err(|e| bad_key(what, e.to_string()))?;
    let bytes =
        bytes.try_into().map_err(|b: Vec<u8>| bad_key(what, format!("{} bytes, expected {N}", b.len())))?;
    Ok((name, bytes))
}

impl SecretKey {
    /// A new random key.
    pub fn generate(name: &str) -> Result<SecretKey> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| bad_key("cannot generate a key", "the system's random source failed"))?;
        SecretKey::from_seed(name, seed)
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Result<SecretKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| bad_key("invalid secret key", "not an ed25519 seed"))?;
        Ok(SecretKey { name: name.to_owned(), seed, pair })
    }

    /// Parses `NAME:BASE64(seed ‖ public)`.
    pub fn parse(text: &str) -> Result<SecretKey> {
        let (name, bytes) = split_key::<64>(text, "invalid secret key")?;
        let key = SecretKey::from_seed(name, bytes[..32].try_into().expect("32 bytes"))?;
        if key.pair.public_key().as_ref() != &bytes[32..] {
            return Err(bad_key("invalid secret key", "its public half does not match its seed"));
        }
        Ok(key)
    }

    /// Reads a secret key file.
    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = fs_err::read_to_string(path)?;
        SecretKey::parse(&text).map_err(|e| bad_key(&format!("`{}`", path.display()), e.to_string()))
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut bytes = self.seed.to_vec();
        bytes.extend_from_slice(self.pair.public_key().as_ref());
        format!("{}:{}", self.name, STANDARD.encode(bytes))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        let key = self.pair.public_key().as_ref().try_into().expect("ed25519 public keys are 32 bytes");
        PublicKey { name: self.name.clone(), key }
    }

    /// `NAME:BASE64(signature)` of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        format!("{}:{}", self.name, STANDARD.encode(self.pair.sign(message).as_ref()))
    }
}

impl PublicKey {
    /// Parses `NAME:BASE64(public key)`.
    pub fn parse(text: &str) -> Result<PublicKey> {
        let (name, key) = split_key::<32>(text, "invalid public key")?;
        Ok(PublicKey { name: name.to_owned(), key })
    }

    /// The `.public` file's text, and what `trusted-keys` lists.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, STANDARD.encode(self.key))
    }

    /// Whether `signature` (`NAME:BASE64`) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Some((name, data)) = signature.split_once(':') else { return false };
        let Ok(sig) = STANDARD.decode(data) else { return false };
        name == self.name && UnparsedPublicKey::new(&ED25519, self.key).verify(message, &sig).is_ok()
    }
}

/// The first of `keys` that verifies one of `signatures` of `message`.
pub fn trusted_by<'k>(keys: &'k [PublicKey], message: &[u8], signatures: &[String]) -> Option<&'k PublicKey> {
    keys.iter().find(|k| signatures.iter().any(|s| k.verifies(message, s)))
}

/// What a signature of a store path covers, one field per line: the format, the name, the tree
/// hash, the size, the sorted references and the sorted source keys.
pub fn fingerprint(
    name: &str,
    tree_hash: &str,
    size: u64,
    references: &[String],
    sources: &[String],
) -> Vec<u8> {
    let mut references = references.to_vec();
    references.sort();
    let mut sources = sources.to_vec();
    sources.sort();
    format!(
        "envctl-path-1\n{name}\n{tree_hash}\n{size}\n{}\n{}\n",
        references.join(" "),
        sources.join("\u{1f}")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_signatures_bind_the_name_and_the_message() {
        let key = SecretKey::generate("lab-1").unwrap();
        let again = SecretKey::parse(&key.to_text()).unwrap();
        assert_eq!(again.public(), key.public());
        let public = PublicKey::parse(&key.public().to_text()).unwrap();
        let message = fingerprint("abc-x-1", "00ff", 3, &["b".into(), "a".into()], &["k".into()]);
        let sig = key.sign(&message);
        assert!(public.verifies(&message, &sig));
        assert!(!public.verifies(b"another message", &sig));
        // The same key under another name is another key.
        let renamed = PublicKey::parse(&public.to_text().replacen("lab-1", "lab-2", 1)).unwrap();
        assert!(!renamed.verifies(&message, &sig));
        let other = SecretKey::generate("lab-1").unwrap();
        assert!(!other.public().verifies(&message, &sig));
        assert_eq!(trusted_by(&[other.public(), public.clone()], &message, &[sig]), Some(&public));
        // References are a set: their order does not change what is signed.
        assert_eq!(message, fingerprint("abc-x-1", "00ff", 3, &["a".into(), "b".into()], &["k".into()]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(SecretKey::parse("nocolon").is_err());
        assert!(PublicKey::parse("n:AAAA").is_err());
        assert!(SecretKey::generate("a:b").is_err());
        let key = SecretKey::generate("k").unwrap();
        let mut text = key.to_text();
        text.pop();
        text.push(if text.ends_with('A') { 'B' } else { 'A' });
        assert!(
            SecretKey::parse(&text).is_err() || SecretKey::parse(&text).unwrap().public() != key.public()
        );
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// What a signature covers and how it is written: changing either orphans every signed object
    /// in every cache. A new format is a new prefix (`envctl-path-2`), read beside the old one.
    #[test]
    fn golden_the_signed_fingerprint_and_a_signature_are_pinned() {
        let message = fingerprint(
            "0lwxja6pyhxf37p20yvflw49mpd62gwn-hello-1.0",
            &"ab".repeat(32),
            1234,
            &["zz-b-1".into(), "aa-a-1".into()],
            &["k2".into(), "k1".into()],
        );
        assert_eq!(
            String::from_utf8(message.clone()).unwrap(),
            format!(
                "envctl-path-1\n0lwxja6pyhxf37p20yvflw49mpd62gwn-hello-1.0\n{}\n1234\naa-a-1 zz-b-1\nk1\u{1f}k2\n",
                "ab".repeat(32)
            )
        );
        let key = SecretKey::from_seed("golden", [7u8; 32]).unwrap();
        assert_eq!(
            key.to_text(),
            "golden:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwfqSmxj4pxSCr71UHsTLsX5lUd2rr6+e5JCHuppFEbSLA=="
        );
        assert_eq!(key.public().to_text(), "golden:6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=");
        assert_eq!(
            key.sign(&message),
            "golden:QvsWJ7E3kq127cyiqgjpsv8feenGnCJUPgyOVWF8+0CthuC7SHt5mdsCRxDCs2W4xyYzuVYp+qlI1/NNvmgpAQ=="
        );
    }
}
