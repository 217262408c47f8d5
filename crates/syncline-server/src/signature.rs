//! Webhook signature checks on the raw bytes, before anything is parsed (API-CONTRACTS §1.10,
//! §3.5): HubSpot v1 (`SHA256(secret + body)`), v2 (`SHA256(secret + method + uri + body)`) and
//! v3 (base64 `HMAC_SHA256(secret, method + uri + body + timestamp)` with a ±5 min window), and
//! Stripe's `Stripe-Signature` (`t=…,v1=…[,v1=…]`, HMAC over `t.body`). Several secrets may be
//! configured at once for rotation; any of them passes. Comparisons are constant-time.
//!
//! Written here rather than taken from a crate: no maintained crate verifies HubSpot's schemes,
//! and the Stripe one sits inside `async-stripe`, which DESIGN.md rules out (and which checks
//! only the last `v1`). The primitives are `hmac`, `sha2` and `subtle`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Timestamps further than this from now fail (HubSpot v3 and Stripe), in either direction: a
/// future one is as suspect as a stale one when clocks are kept by NTP.
pub const TOLERANCE_SECS: i64 = 300;

/// A webhook signing secret. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a request's signature was refused. Messages name the header and the rule, never a secret
/// or the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("malformed header {header}: {why}")]
    Malformed { header: &'static str, why: String },
    #[error("signature version {0:?} is not accepted here")]
    Version(String),
    #[error("timestamp is {0} s away from now; at most {TOLERANCE_SECS} s is accepted")]
    OutsideTolerance(i64),
    #[error("no signature matches the body under any configured secret")]
    Mismatch,
}

/// The parts of a request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The full URL the sender called (scheme, host, path, query), as it signed it.
    pub url: &'a str,
    pub body: &'a [u8],
}

/// The headers a verifier reads, by lower-case name.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

/// HubSpot signature versions a source accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HubSpotVersion {
    V1,
    V2,
    V3,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn same(expected: &[u8; 32], given: &[u8]) -> bool {
    expected.as_slice().ct_eq(given).into()
}

fn decode_hex(header: &'static str, text: &str) -> Result<Vec<u8>, SignatureError> {
    hex::decode(text.trim()).map_err(|e| SignatureError::Malformed { header, why: format!("not hex ({e})") })
}

/// Verifies a HubSpot request: v3 when its header is present (and accepted), otherwise the
/// v1/v2 header. `now_ms` is the wall clock in epoch milliseconds.
pub fn verify_hubspot(
    request: Signed,
    headers: &impl Headers,
    secrets: &[Secret],
    accepted: &[HubSpotVersion],
    now_ms: i64,
) -> Result<HubSpotVersion, SignatureError> {
    if let Some(signature) = headers.get("x-hubspot-signature-v3").filter(|_| accepted.contains(&HubSpotVersion::V3)) {
        let timestamp = headers.get("x-hubspot-request-timestamp").ok_or(SignatureError::Missing("X-HubSpot-Request-Timestamp"))?;
        let at_ms: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Malformed {
            header: "X-HubSpot-Request-Timestamp",
            why: "not an integer of epoch milliseconds".into(),
        })?;
        if (now_ms - at_ms).abs() > TOLERANCE_SECS * 1000 {
            return Err(SignatureError::OutsideTolerance((now_ms - at_ms) / 1000));
        }
        let given = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|e| SignatureError::Malformed { header: "X-HubSpot-Signature-v3", why: format!("not base64 ({e})") })?;
        let uri = v3_uri(request.url);
        let parts: [&[u8]; 4] = [request.method.as_bytes(), uri.as_bytes(), request.body, timestamp.trim().as_bytes()];
        return match secrets.iter().any(|s| same(&hmac_sha256(s.bytes(), &parts), &given)) {
            true => Ok(HubSpotVersion::V3),
            false => Err(SignatureError::Mismatch),
        };
    }
    let signature = headers.get("x-hubspot-signature").ok_or(SignatureError::Missing("X-HubSpot-Signature"))?;
    let version = match headers.get("x-hubspot-signature-version").map(str::trim) {
        None | Some("v1") => HubSpotVersion::V1,
        Some("v2") => HubSpotVersion::V2,
        Some(other) => return Err(SignatureError::Version(other.to_owned())),
    };
    if !accepted.contains(&version) {
        return Err(SignatureError::Version(format!("{version:?}").to_lowercase()));
    }
    let given = decode_hex("X-HubSpot-Signature", signature)?;
    let matches = |secret: &Secret| {
        let expected = match version {
            HubSpotVersion::V1 => sha256(&[secret.bytes(), request.body]),
            _ => sha256(&[secret.bytes(), request.method.as_bytes(), request.url.as_bytes(), request.body]),
        };
        same(&expected, &given)
    };
    match secrets.iter().any(matches) {
        true => Ok(version),
        false => Err(SignatureError::Mismatch),
    }
}

/// The URI as v3 signs it: only these escapes are decoded (`%3A : %2F / %3F ? %40 @ %21 ! %24 $
/// %27 ' %28 ( %29 ) %2A * %2C , %3B ;`); every other one, such as `%20`, stays as sent.
pub fn v3_uri(url: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        match code.and_then(|c| DECODED.iter().find(|(hex, _)| hex.eq_ignore_ascii_case(c))) {
            Some((_, ch)) => {
                out.push(*ch);
                rest = &rest[at + 3..];
            }
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Verifies Stripe's `Stripe-Signature` header: any `v1` under any secret passes (rotation sends
/// several, in any order); other schemes such as `v0` are ignored, so they cannot downgrade.
pub fn verify_stripe(body: &[u8], headers: &impl Headers, secrets: &[Secret], now_secs: i64) -> Result<(), SignatureError> {
    const HEADER: &str = "Stripe-Signature";
    let header = headers.get("stripe-signature").ok_or(SignatureError::Missing(HEADER))?;
    let malformed = |why: &str| SignatureError::Malformed { header: HEADER, why: why.into() };
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else { continue };
        match key {
            "t" => timestamp = Some(value.parse::<i64>().map_err(|_| malformed("t is not an integer"))?),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no timestamp t="))?;
    if signatures.is_empty() {
        return Err(malformed("no signature with scheme v1"));
    }
    let given: Vec<Vec<u8>> = signatures.iter().filter_map(|s| hex::decode(s).ok()).collect();
    let t = timestamp.to_string();
    let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
    let matched = secrets.iter().any(|secret| {
        let expected = hmac_sha256(secret.bytes(), &parts);
        given.iter().any(|g| same(&expected, g))
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    // checked after the signature, as Stripe does, so the window cannot be probed unsigned
    let skew = now_secs - timestamp;
    if skew.abs() > TOLERANCE_SECS {
        return Err(SignatureError::OutsideTolerance(skew));
    }
    Ok(())
}

/// Signs like the senders do; for the sandbox's deliveries, tests and benchmarks.
pub mod sign {
    use super::*;

    pub fn hubspot_v1(secret: &str, body: &[u8]) -> String {
        hex::encode(sha256(&[secret.as_bytes(), body]))
    }

    pub fn hubspot_v2(secret: &str, method: &str, url: &str, body: &[u8]) -> String {
        hex::encode(sha256(&[secret.as_bytes(), method.as_bytes(), url.as_bytes(), body]))
    }

    pub fn hubspot_v3(secret: &str, method: &str, url: &str, body: &[u8], timestamp_ms: i64) -> String {
        let uri = v3_uri(url);
        let t = timestamp_ms.to_string();
        let mac = hmac_sha256(secret.as_bytes(), &[method.as_bytes(), uri.as_bytes(), body, t.as_bytes()]);
        base64::engine::general_purpose::STANDARD.encode(mac)
    }

    /// The `v1` value of a `Stripe-Signature` header for `t`.
    pub fn stripe_v1(secret: &str, body: &[u8], t: i64) -> String {
        hex::encode(hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]))
    }
}
