//! Error classes: retry and routing decisions look only at the class, never at message text.

use std::time::Duration;

/// What kind of failure this is, and so what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth retrying, after `retry_after` when the other side said so.
    Transient { retry_after: Option<Duration> },
    /// The service could not be reached at all (connection refused, unknown host, connect
    /// timeout, a breaker that stays open): nothing was sent. Retried briefly, then the whole
    /// run fails; records never become dead letters for it.
    Unavailable,
    /// The rate budget is spent.
    RateLimited,
    /// The configuration is wrong; nothing will work until a person fixes it.
    Config,
    /// This record is invalid; log it, keep it as a dead letter, continue.
    Data,
    /// A business conflict (duplicate identity…) that needs a person's review.
    Conflict,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorClass {
    /// The stable lowercase name stored with dead letters.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorClass::Transient { .. } => "transient",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Config => "config",
            ErrorClass::Data => "data",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Internal => "internal",
        }
    }

    /// Worth trying again later: the failure says nothing about the request itself.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorClass::Transient { .. } | ErrorClass::Unavailable | ErrorClass::RateLimited)
    }

    pub fn from_name(name: &str) -> ErrorClass {
        match name {
            "transient" => ErrorClass::Transient { retry_after: None },
            "unavailable" => ErrorClass::Unavailable,
            "rate_limited" => ErrorClass::RateLimited,
            "config" => ErrorClass::Config,
            "data" => ErrorClass::Data,
            "conflict" => ErrorClass::Conflict,
            _ => ErrorClass::Internal,
        }
    }
}

/// Why one record was rejected or failed: which field, which rule, which value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {rule}: {message}")]
pub struct RecordError {
    pub class: ErrorClass,
    /// The field the rule looked at (`-` for whole-record rules).
    pub field: String,
    /// The rule's name as written in the config (`cedula`, `phone`, `enum`…).
    pub rule: String,
    /// What is wrong, including the offending value (already truncated and redacted).
    pub message: String,
}

/// Longest value quoted in an error; longer ones are cut with an ellipsis.
const MAX_QUOTED: usize = 60;

impl RecordError {
    pub fn data(field: &str, rule: &str, message: impl Into<String>) -> Self {
        RecordError { class: ErrorClass::Data, field: field.to_owned(), rule: rule.to_owned(), message: message.into() }
    }

    /// Quotes a value for an error message, cut to a readable length.
    pub fn quote(value: &str) -> String {
        if value.chars().count() <= MAX_QUOTED {
            format!("{value:?}")
        } else {
            let cut: String = value.chars().take(MAX_QUOTED).collect();
            format!("{cut:?}… ({} chars)", value.chars().count())
        }
    }
}

/// A failure of a whole source or sink call (not of one record).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub class: ErrorClass,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ConnectorError { class, message: message.into(), source: None }
    }

    pub fn with_source(class: ErrorClass, message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ConnectorError { class, message: message.into(), source: Some(Box::new(source)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(500);
        let quoted = RecordError::quote(&long);
        assert!(quoted.len() < 100, "{quoted}");
        assert!(quoted.ends_with("(500 chars)"));
        assert_eq!(RecordError::quote("ab"), "\"ab\"");
    }
}
