//! Who may call the Flight SQL endpoint: every call carries the password
//! (`authorization: Basic base64(user:password)`, any user name) or a
//! bearer token the Handshake gave for it. Both are checked in constant
//! time (HMAC tags compared by ring), and nothing is kept per client: a
//! token is its own expiry signed with a key made at start, so a flood of
//! handshakes costs the server no memory.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::metadata::MetadataMap;
use tonic::Status;

/// How long a token from the Handshake is good for.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// An `authorization` value longer than this is refused unread.
const MAX_AUTHORIZATION: usize = 1024;

/// The password, as an HMAC tag under a key of this run, and the key
/// that signs tokens.
pub struct Auth {
    password_key: hmac::Key,
    password_tag: hmac::Tag,
    token_key: hmac::Key,
}

fn random_key() -> anyhow::Result<hmac::Key> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("cannot get random bytes for a key"))?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl Auth {
    pub fn new(password: &str) -> anyhow::Result<Self> {
        let password_key = random_key()?;
        let password_tag = hmac::sign(&password_key, password.as_bytes());
        Ok(Auth { password_key, password_tag, token_key: random_key()? })
    }

    fn password_ok(&self, given: &[u8]) -> bool {
        hmac::verify(&self.password_key, given, self.password_tag.as_ref()).is_ok()
    }

    /// A bearer token: `expiry.hex(hmac(expiry))`.
    pub fn token(&self) -> String {
        let expiry = (now_secs() + TOKEN_LIFETIME.as_secs()).to_string();
        let tag = hmac::sign(&self.token_key, expiry.as_bytes());
        format!("{expiry}.{}", hex(tag.as_ref()))
    }

    fn token_ok(&self, token: &str) -> bool {
        let Some((expiry, tag)) = token.split_once('.') else { return false };
        let Some(tag) = unhex(tag) else { return false };
        if hmac::verify(&self.token_key, expiry.as_bytes(), &tag).is_err() {
            return false;
        }
        expiry.parse::<u64>().is_ok_and(|at| at > now_secs())
    }

    /// Is the call's `authorization` header a right password or a live
    /// token? The error says which is missing, never which part was wrong.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let value = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("sockql: give the password (basic auth) or a handshake's token"))?;
        let value = value.as_bytes();
        if value.len() > MAX_AUTHORIZATION {
            return Err(Status::unauthenticated("sockql: the authorization header is too long"));
        }
        let text = std::str::from_utf8(value).unwrap_or("");
        let ok = if let Some(b64) = strip_scheme(text, "basic") {
            use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
            use base64::Engine;
            // Padded or not: Go's Flight client (ADBC) sends it unpadded.
            let config =
                general_purpose::GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
            GeneralPurpose::new(&base64::alphabet::STANDARD, config)
                .decode(b64.trim())
                .ok()
                .and_then(|pair| {
                    let colon = pair.iter().position(|&b| b == b':')?;
                    Some(self.password_ok(pair.get(colon + 1..)?))
                })
                .unwrap_or(false)
        } else if let Some(token) = strip_scheme(text, "bearer") {
            self.token_ok(token.trim())
        } else {
            false
        };
        if ok {
            Ok(())
        } else {
            Err(Status::unauthenticated("sockql: wrong password or expired token"))
        }
    }
}

/// `Scheme rest` with the scheme matched case-insensitively.
fn strip_scheme<'a>(text: &'a str, scheme: &str) -> Option<&'a str> {
    let head = text.get(..scheme.len())?;
    let rest = text.get(scheme.len()..)?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn password_and_token_are_checked_and_nothing_else_passes() {
        let auth = Auth::new("s3cret").unwrap();
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(auth.check(&with(&basic("anyone:s3cret"))).is_ok());
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("ops:s3cret");
        assert!(auth.check(&with(&format!("Basic {unpadded}"))).is_ok(), "Go sends it unpadded");
        assert!(auth.check(&with(&basic("anyone:s3cret2"))).is_err());
        assert!(auth.check(&with(&basic("s3cret"))).is_err(), "no colon: no password");
        assert!(auth.check(&MetadataMap::new()).is_err());
        let token = auth.token();
        assert!(auth.check(&with(&format!("Bearer {token}"))).is_ok());
        let forged = format!("{}.{}", now_secs() + 99_999, token.split_once('.').unwrap().1);
        assert!(auth.check(&with(&format!("Bearer {forged}"))).is_err(), "a changed expiry breaks the tag");
        let other = Auth::new("s3cret").unwrap();
        assert!(other.check(&with(&format!("Bearer {token}"))).is_err(), "another run's token");
        assert!(auth.check(&with(&format!("Bearer {}", "a".repeat(2000)))).is_err());
    }
}
