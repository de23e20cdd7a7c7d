//! sha256 digests, as recipes, locks and the store name an artifact.

use crate::Invalid;

/// A sha256 digest, shown as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses 64 hex digits (either case).
    pub fn parse(s: &str) -> Result<Sha256, Invalid> {
        let mut out = [0u8; 32];
        match hex::decode_to_slice(s, &mut out) {
            Ok(()) => Ok(Sha256(out)),
            Err(_) => {
                Err(Invalid { what: "sha256", value: s.to_owned(), rule: "expected 64 hexadecimal digits" })
            }
        }
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256;

    #[test]
    fn sixty_four_hex_digits_and_nothing_else() {
        let upper = "AB".repeat(32);
        assert_eq!(Sha256::parse(&upper).unwrap().to_string(), "ab".repeat(32));
        assert!(Sha256::parse(&"a".repeat(63)).is_err());
        assert!(Sha256::parse(&"g".repeat(64)).is_err());
    }
}
