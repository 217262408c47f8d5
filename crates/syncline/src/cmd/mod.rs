//! One module per command.

mod backfill;
mod bench;
mod check;
mod dlq;
mod example;
mod flow_bench;
mod intake_bench;
mod run;
mod runs;
mod sandbox;
mod serve;
mod state;
mod timing_bench;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::exit::{CliError, CliResult, Exit};
use clap::CommandFactory;
use syncline_store::Store;

pub async fn dispatch(cli: Cli) -> CliResult {
    match cli.command {
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&config::json_schema()).expect("json"));
            Ok(Exit::Ok)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "syncline", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Example(example) => example::run(example),
        Command::Bench(args) => bench::run(args).await,
        Command::Sandbox(args) => sandbox::run(args).await,
        Command::Check => check::run(&cli.config).await,
        command => {
            let config = config::load(&cli.config)?;
            let store = open_store(&config).await?;
            match command {
                Command::Run(args) => run::run(&config, &store, args, cli.quiet).await,
                Command::Runs(args) => runs::run(&store, args).await,
                Command::Dlq(dlq) => dlq::run(&config, &store, dlq, cli.quiet).await,
                Command::State(state) => state::run(&config, &store, state).await,
                Command::Serve(args) => serve::run(&config, &store, args).await,
                Command::Inbox => serve::inbox(&store).await,
                Command::Backfill(args) => backfill::run(&config, &store, args, cli.quiet).await,
                _ => unreachable!("handled above"),
            }
        }
    }
}

pub async fn open_store(config: &Config) -> Result<Store, CliError> {
    Store::connect(&config.state_url).await.map_err(|e| CliError::usage(format!("state store: {e}")))
}
