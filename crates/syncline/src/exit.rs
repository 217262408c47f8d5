//! Exit codes and the error type commands return.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything was written.
    Ok = 0,
    /// The command failed.
    Failed = 1,
    /// Bad usage or configuration; nothing was done.
    Usage = 2,
    /// Finished, but some records became dead letters.
    Rejects = 3,
    /// Stopped by Ctrl-C / SIGTERM.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A command's failure: a one-line message and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: Exit,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl std::fmt::Display) -> Self {
        CliError { code: Exit::Usage, message: message.to_string() }
    }

    pub fn failed(message: impl std::fmt::Display) -> Self {
        CliError { code: Exit::Failed, message: message.to_string() }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::usage(e)
    }
}

pub type CliResult = Result<Exit, CliError>;
