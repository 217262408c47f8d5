//! Connectors. Each lives in its own folder with the same file set (config, wire/dialect code,
//! source, sink); a fixed set of connectors is a closed enum dispatched by `match`, not a plugin
//! registry.

pub mod sql;
