//! Exit codes and the error type commands return.

use std::process::ExitCode;

/// How a command ended; the codes are listed in `--help` and are the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything was written.
    Ok = 0,
    /// A database or API failed or could not be reached.
    Failed = 1,
    /// Bad arguments, configuration or credentials; nothing was done.
    Usage = 2,
    /// Finished, but some records became dead letters (`verify`: the two sides differ).
    Rejects = 3,
    /// Stopped by Ctrl-C / SIGTERM.
    Interrupted = 130,
}

impl Exit {
    /// The exit of a run that ended so.
    pub fn of(status: syncline_core::RunStatus) -> Exit {
        use syncline_core::RunStatus as S;
        match status {
            S::Succeeded | S::Running | S::Stopped => Exit::Ok,
            S::Rejects => Exit::Rejects,
            S::Failed => Exit::Failed,
            S::Interrupted => Exit::Interrupted,
        }
    }
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

    pub fn interrupted() -> Self {
        CliError { code: Exit::Interrupted, message: "interrupted".into() }
    }

    /// A connector's failure: a refused token or a mapping the target cannot take is the
    /// config's (exit 2); anything else is a failure of the service (exit 1).
    pub fn connector(error: &syncline_core::ConnectorError, context: impl std::fmt::Display) -> Self {
        let message = format!("{context}: {error}");
        match error.class {
            syncline_core::ErrorClass::Config => CliError::usage(message),
            _ => CliError::failed(message),
        }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::usage(e)
    }
}

impl From<crate::config::ConfigErrors> for CliError {
    fn from(e: crate::config::ConfigErrors) -> Self {
        CliError::usage(e)
    }
}

pub type CliResult = Result<Exit, CliError>;
