//! Webhook intake: the signature schemes against the official vectors and RELIABILITY rows
//! 13–17 (forgeries, timestamp edges, rotation, oversized and malformed bodies), property tests
//! for the verifiers and payload parsers, and the HTTP endpoint over a real SQLite inbox.

mod flows;
mod http;
mod signatures;
