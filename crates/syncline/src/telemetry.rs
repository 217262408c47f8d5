//! Logs: pretty for people, JSON for machines. Run spans carry `run_id` and `pipeline`, so
//! every line logged inside a run names both. `-v` shows syncline's own progress (a line per
//! handled flow event); `-vv` syncline's debug detail, with the libraries kept at info so it
//! stays readable; `-vvv` everything. Colours only on a terminal (`NO_COLOR`, `CLICOLOR_FORCE`).

use crate::cli::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,syncline=info",
        (false, 2) => "info,sqlx=warn,syncline=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("SYNCLINE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let color = crate::output::color(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(color);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}
