//! Signed viewer tokens: a broadcaster's registration hands a viewer a token for one
//! cluster; the cluster's broadcasters accept a WebSocket only with a valid, unexpired
//! token, and an ingest run with viewer tokens takes taps only with one, as its viewer's.
//!
//! A token is `EXPIRES.CLUSTER.CLIENT.SIGNATURE`: expiry in UTC milliseconds, the cluster,
//! the client id in hex, and an HMAC-SHA256 over the first three parts, in hex.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was given.
    #[error("missing token: register first (POST /register) and connect to the ws_url it returns")]
    Missing,
    /// The token is not of the token form.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("invalid token signature")]
    Forged,
    /// The token is for another cluster.
    #[error("token is for cluster {0}, not this one")]
    WrongCluster(u32),
    /// The token has expired.
    #[error("token expired: register again (POST /register) for a new one")]
    Expired,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The viewer's client id (its user).
    pub client: String,
    /// The cluster the token is for.
    pub cluster: u32,
    /// When it expires, UTC milliseconds.
    pub expires_ms: i64,
}

/// Signs and checks tokens with a shared secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never appears in logs.
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer with `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        TokenSigner {
            secret: secret.into(),
        }
    }

    fn signature(&self, payload: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(payload.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A fingerprint of the secret that does not reveal it: broadcasters announce it, so
    /// that viewers go only to broadcasters whose tokens are theirs.
    pub fn fingerprint(&self) -> String {
        self.signature("emostream token key fingerprint")[..16].to_owned()
    }

    /// A token for `client_id` on `cluster`, valid until `expires_ms`.
    pub fn sign(&self, client_id: &str, cluster: u32, expires_ms: i64) -> String {
        let payload = format!("{expires_ms}.{cluster}.{}", hex(client_id.as_bytes()));
        let signature = self.signature(&payload);
        format!("{payload}.{signature}")
    }

    /// Checks `token` for `cluster` at `now_ms`; returns the client id.
    pub fn verify(
        &self,
        token: Option<&str>,
        cluster: u32,
        now_ms: i64,
    ) -> Result<String, TokenError> {
        let claims = self.claims(token, now_ms)?;
        if claims.cluster != cluster {
            return Err(TokenError::WrongCluster(claims.cluster));
        }
        Ok(claims.client)
    }

    /// Checks `token`'s signature and expiry at `now_ms`, for any cluster; returns what it
    /// says.
    pub fn claims(&self, token: Option<&str>, now_ms: i64) -> Result<Claims, TokenError> {
        let claims = self.signed(token)?;
        if claims.expires_ms < now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// What `token` says when this key signed it, expired or not (registration renews an
    /// expired token's viewer within a grace).
    pub fn signed(&self, token: Option<&str>) -> Result<Claims, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let (payload, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = payload.splitn(3, '.');
        let (Some(expires), Some(token_cluster), Some(client)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let token_cluster: u32 = token_cluster.parse().map_err(|_| TokenError::Malformed)?;
        let expected = self.signature(payload);
        // Constant-time comparison of the signatures.
        let same = expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(TokenError::Forged);
        }
        let bytes = unhex(client).ok_or(TokenError::Malformed)?;
        let client = String::from_utf8(bytes).map_err(|_| TokenError::Malformed)?;
        Ok(Claims {
            client,
            cluster: token_cluster,
            expires_ms: expires,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let signer = TokenSigner::new("secret");
        let token = signer.sign("viewer.42", 2, 1_000);
        assert_eq!(
            signer.verify(Some(&token), 2, 999),
            Ok("viewer.42".to_owned())
        );
        assert_eq!(
            signer.verify(Some(&token), 1, 999),
            Err(TokenError::WrongCluster(2))
        );
        assert_eq!(
            signer.verify(Some(&token), 2, 1_001),
            Err(TokenError::Expired)
        );
        assert_eq!(signer.verify(None, 2, 0), Err(TokenError::Missing));
        assert_eq!(
            signer.verify(Some("nonsense"), 2, 0),
            Err(TokenError::Malformed)
        );
        let forged = token.replacen("1000.2", "9999.2", 1);
        assert_eq!(signer.verify(Some(&forged), 2, 0), Err(TokenError::Forged));
        assert_eq!(
            TokenSigner::new("other").verify(Some(&token), 2, 0),
            Err(TokenError::Forged)
        );
        assert_eq!(
            signer.claims(Some(&token), 999),
            Ok(Claims {
                client: "viewer.42".to_owned(),
                cluster: 2,
                expires_ms: 1_000
            })
        );
        assert_eq!(format!("{signer:?}"), "TokenSigner(..)");
    }
}
