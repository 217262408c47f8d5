//! Where a URL keeps its secrets, so one rule both refuses literal passwords in a config and
//! hides them wherever a URL is shown (logs, errors, banners, `check`).
//!
//! Not only a URL parser: it would refuse or misread the sloppy URLs people paste (a `/` or `?`
//! left unencoded in a password), and the redaction must hold for those most of all. A URL the
//! `url` crate reads without an `@` left in its path is taken as it reads it; any other is read
//! conservatively: the user info runs from `://` to the *last* `@` before the query. Every query
//! parameter whose name suggests a secret is a secret.

use std::ops::Range;

/// Query parameter names (lowercased, without `_` and `-`) that carry a secret, or that are
/// known to in some driver.
const SECRET_WORDS: [&str; 6] = ["pass", "pwd", "secret", "token", "key", "auth"];

/// The byte ranges of `url` that hold secrets: the password of its user info, and the value of
/// every query parameter whose name contains `pass`, `pwd`, `secret`, `token`, `key` or `auth`.
pub fn secret_spans(url: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let Some(scheme_end) = url.find("://") else { return spans };
    let rest_at = scheme_end + 3;
    let rest = &url[rest_at..];
    // where the user info ends (its `@`), and where the query starts
    let parsed = ::url::Url::parse(url).ok().filter(|u| !u.path().contains('@') && !u.path().contains("%40"));
    let (user_end, query_at) = match parsed {
        // as a URL parser reads it: the user info ends at the last `@` before the host
        Some(parsed) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let at = rest[..authority_end].rfind('@').filter(|_| parsed.has_host());
            (at, rest.find('?').filter(|q| *q >= authority_end))
        }
        // conservatively: up to the last `@` anywhere, the query after it
        None => {
            let last_at = rest.rfind('@');
            let query_at = match last_at {
                Some(at) => rest[at..].find('?').map(|q| at + q),
                None => rest.find('?'),
            };
            (last_at.filter(|at| query_at.is_none_or(|q| *at < q)), query_at)
        }
    };
    if let Some(colon) = user_end.and_then(|at| rest[..at].find(':')) {
        spans.push(rest_at + colon + 1..rest_at + user_end.expect("found"));
    }
    // every `name=value` after a `?`, `&` or `;` anywhere past the user info: a query read
    // wrongly still has its secrets found
    let params_from = user_end.map_or(0, |at| at + 1).min(query_at.unwrap_or(usize::MAX));
    let mut i = params_from;
    while let Some(found) = rest[i..].find(['?', '&', ';']) {
        let start = i + found + 1;
        let end = rest[start..].find(['&', ';', '#']).map_or(rest.len(), |e| start + e);
        let pair = &rest[start..end];
        if let Some((name, _)) = pair.split_once('=') {
            let name: String = name.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_lowercase();
            if !name.contains(['?', '/', '@']) && SECRET_WORDS.iter().any(|w| name.contains(w)) {
                spans.push(rest_at + start + name_len(pair) + 1..rest_at + end);
            }
        }
        i = start;
    }
    spans.retain(|s| !s.is_empty());
    // in order, overlapping ones merged
    spans.sort_by_key(|s| s.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// The length of `name=` up to the `=`.
fn name_len(pair: &str) -> usize {
    pair.find('=').unwrap_or(pair.len())
}

/// `url` with every secret span replaced by `***`.
pub fn url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut at = 0;
    for span in secret_spans(url) {
        out.push_str(&url[at..span.start]);
        out.push_str("***");
        at = span.end;
    }
    out.push_str(&url[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn user_info_and_secret_parameters_are_hidden() {
        for (given, shown) in [
            ("postgres://u:hunter2@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://postgres@127.0.0.1:5432/test?password=CANARY42", "postgres://postgres@127.0.0.1:5432/test?password=***"),
            (
                "postgres://h/db?sslmode=require&PassWord=x&application_name=s",
                "postgres://h/db?sslmode=require&PassWord=***&application_name=s",
            ),
            ("mysql://u:p/a?s@ss@h/db", "mysql://u:***@h/db"),
            ("mssql://sa@h/db?ssl_key=k1&api-key=k2#frag", "mssql://sa@h/db?ssl_key=***&api-key=***#frag"),
            ("sqlite:///data/x.db?mode=ro", "sqlite:///data/x.db?mode=ro"),
            ("postgres://u@h/db?user=a@b", "postgres://u@h/db?user=a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    /// A password: a marker no other part of the URL can contain, then anything but whitespace.
    fn password() -> impl Strategy<Value = String> {
        "[!-~]{4,24}".prop_map(|tail| format!("S3CR{tail}"))
    }

    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    }

    proptest! {
        /// RELIABILITY row 24 for URLs: no URL shows a password it was given, in its user info
        /// (raw or encoded) or in any secret-named parameter, among other parameters.
        #[test]
        fn no_url_shows_its_password(
            scheme in prop::sample::select(vec!["postgres", "postgresql", "mysql", "mariadb", "mssql"]),
            user in "[a-z]{1,8}",
            secret in password(),
            host in "[a-z]{1,10}(\\.[a-z]{2,5})?",
            port in prop::option::of(1u16..65535),
            place in 0..4usize,
            param in prop::sample::select(vec!["password", "sslpassword", "Password", "pwd", "auth_token", "sslkey"]),
            others in prop::collection::vec(("[a-z_]{1,10}", "[a-zA-Z0-9.@:/]{0,10}"), 0..3),
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let (userinfo, param_value) = match place {
                0 => (format!("{user}:{secret}@"), None),
                1 => (format!("{user}:{}@", encode(&secret)), None),
                2 => (format!("{user}@"), Some(encode(&secret))),
                _ => (format!("{user}:{secret}@"), Some(encode(&secret))),
            };
            let mut query: Vec<String> = others.iter().filter(|(k, _)| !SECRET_WORDS.iter().any(|w| k.replace('_', "").contains(w))).map(|(k, v)| format!("{k}={v}")).collect();
            if let Some(value) = &param_value {
                query.insert(query.len() / 2, format!("{param}={value}"));
            }
            let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
            let given = format!("{scheme}://{userinfo}{host}{port}/db{query}");
            let shown = url(&given);
            prop_assert!(!shown.contains(&secret) && !shown.contains(&encode(&secret)), "{given} shown as {shown}");
            // a well-formed URL keeps its host; one with a raw `#` or `/` in its password may lose
            // it too (it is read conservatively), never the other way round
            if place == 1 || place == 2 {
                prop_assert!(shown.contains(&format!("@{host}")), "the host stays: {shown}");
            }
        }
    }
}
