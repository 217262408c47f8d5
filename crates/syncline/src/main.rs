//! The `syncline` binary: command-line parsing, config loading, wiring of connectors, store and
//! runner, progress and logs. Library crates never read the environment; this one does.

mod bench;
mod budgets;
mod cli;
mod cmd;
mod config;
mod exit;
mod flow_pipeline;
mod output;
mod pipeline;
mod progress;
mod telemetry;
mod vault;

use clap::Parser;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Pipelines allocate many small strings per record; mimalloc handles that pattern several
/// times faster than glibc's allocator (measured with `syncline bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let telemetry = telemetry::init(cli.log_format, if cli.debug { cli.verbose.max(2) } else { cli.verbose }, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = CancellationToken::new();
    runtime.spawn(interrupts(stop.clone(), cli.quiet));
    let result = runtime.block_on(cmd::dispatch(cli, stop));
    // a blocking task may still hold the runtime (a transform stage cut off mid-page)
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    telemetry.shutdown();
    match result {
        Ok(code) => code.into(),
        Err(error) => {
            if error.code != exit::Exit::Interrupted {
                eprintln!("error: {}", error.message);
            }
            error.code.into()
        }
    }
}

/// The first Ctrl-C or SIGTERM asks the command to stop: it commits what was acknowledged and
/// records the run as interrupted. A second one exits at once.
async fn interrupts(stop: CancellationToken, quiet: bool) {
    let mut signals = Signals::new();
    signals.next().await;
    if !quiet {
        eprintln!("\nstopping: committing what was acknowledged (Ctrl-C again to quit at once)");
    }
    stop.cancel();
    signals.next().await;
    std::process::exit(exit::Exit::Interrupted as i32);
}

/// Ctrl-C and SIGTERM as one stream.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminate => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
