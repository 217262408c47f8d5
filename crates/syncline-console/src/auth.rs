//! Who is asking, and whether they may act.
//!
//! The console has one secret, the admin token (`console.token`). A person signs in by typing
//! it once; the console then sets a session cookie `nonce.mac` where `mac` is an HMAC of the
//! nonce under the token, so sessions need no server-side table, survive a restart, work on
//! every instance, and all end when the token changes. Each form carries a CSRF token, another
//! HMAC of the session's nonce, which a page on another site cannot read or forge; the cookie is
//! also `SameSite=Strict` and `HttpOnly`. Scripts may instead send `Authorization: Bearer
//! <token>`, which a browser never adds on its own, so such requests need no CSRF token.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "syncline_console";

/// What a request proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    /// Signed in through the page; actions also need the form's CSRF token.
    Session {
        nonce: String,
    },
    /// The token in an `Authorization` header.
    Bearer,
}

/// The admin token and where reads are open.
#[derive(Clone)]
pub struct Access {
    token: Option<String>,
    /// Read-only pages need no sign-in (the console listens on loopback only).
    pub open_reads: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("token", &self.token.as_ref().map(|_| "***")).field("open_reads", &self.open_reads).finish()
    }
}

impl Access {
    pub fn new(token: Option<String>, open_reads: bool) -> Access {
        Access { token: token.filter(|t| !t.is_empty()), open_reads }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `offered` is the admin token (false when there is none).
    pub fn is_token(&self, offered: &str) -> bool {
        self.token.as_deref().is_some_and(|t| bool::from(t.as_bytes().ct_eq(offered.as_bytes())))
    }

    /// A new session cookie's value.
    pub fn new_session(&self) -> Option<String> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Some(format!("{nonce}.{}", self.mac("session", &nonce)?))
    }

    /// The CSRF token that forms of this session carry.
    pub fn csrf(&self, who: &Who) -> Option<String> {
        match who {
            Who::Session { nonce } => self.mac("csrf", nonce),
            _ => None,
        }
    }

    /// Whether `offered` is this session's CSRF token.
    pub fn csrf_matches(&self, who: &Who, offered: Option<&str>) -> bool {
        match (self.csrf(who), offered) {
            (Some(expected), Some(offered)) => bool::from(expected.as_bytes().ct_eq(offered.as_bytes())),
            _ => false,
        }
    }

    /// Who sent these headers: a bearer token, a valid session cookie, or nobody known.
    pub fn who(&self, headers: &HeaderMap) -> Who {
        let bearer = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| self.is_token(t.trim())) {
            return Who::Bearer;
        }
        let Some(value) = cookie(headers, COOKIE) else { return Who::Anonymous };
        let Some((nonce, mac)) = value.split_once('.') else { return Who::Anonymous };
        match self.mac("session", nonce) {
            Some(expected) if bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) => Who::Session { nonce: nonce.to_owned() },
            _ => Who::Anonymous,
        }
    }

    fn mac(&self, purpose: &str, nonce: &str) -> Option<String> {
        let token = self.token.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(b":");
        mac.update(nonce.as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }
}

/// One cookie's value. Written here because the console reads a single cookie it set itself;
/// a cookie crate would add a dependency for three lines.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, cookie.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_recognised_and_a_forged_one_is_not() {
        let access = Access::new(Some("s3cret".into()), true);
        let value = access.new_session().unwrap();
        let who = access.who(&headers(&format!("other=1; {COOKIE}={value}")));
        assert!(matches!(who, Who::Session { .. }));
        let csrf = access.csrf(&who).unwrap();
        assert!(access.csrf_matches(&who, Some(&csrf)));
        assert!(!access.csrf_matches(&who, Some("0")));
        assert!(!access.csrf_matches(&who, None));
        let (nonce, _) = value.split_once('.').unwrap();
        assert_eq!(access.who(&headers(&format!("{COOKIE}={nonce}.00"))), Who::Anonymous);
        // another token makes every session void
        assert_eq!(Access::new(Some("other".into()), true).who(&headers(&format!("{COOKIE}={value}"))), Who::Anonymous);
    }

    #[test]
    fn without_a_token_nobody_signs_in() {
        let access = Access::new(None, true);
        assert!(access.new_session().is_none());
        assert!(!access.is_token(""));
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(access.who(&h), Who::Anonymous);
    }
}
