//! Secrets (tokens, signing keys): never printed, compared in constant time.

use std::fmt;

/// A secret string. Its `Debug` and `Display` print `<redacted>`, so a configuration can be
/// logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for where it is used (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the secret, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_itself_and_never_prints() {
        let s = Secret::new("s3cret");
        assert!(s.matches("s3cret"));
        for other in ["", "s3cre", "s3cret!", "S3cret", "x3cret"] {
            assert!(!s.matches(other), "{other}");
        }
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }
}
