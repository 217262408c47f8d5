//! `syncline state`: cursors and resets.

use crate::cli::StateCommand;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use syncline_store::Store;

pub async fn run(config: &Config, store: &Store, command: StateCommand) -> CliResult {
    match command {
        StateCommand::Cursors => {
            let cursors = store.cursors().await.map_err(CliError::failed)?;
            let mut table = crate::progress::table(&["pipeline", "cursor", "run", "updated"]);
            for c in cursors {
                table.add_row([c.pipeline, c.cursor.to_string(), c.run_id.unwrap_or_default(), c.updated_at]);
            }
            println!("{table}");
        }
        StateCommand::Reset { pipeline } => {
            if config.pipeline(&pipeline).is_none() {
                return Err(CliError::usage(format!("unknown pipeline {pipeline:?} in {}", config.file)));
            }
            let (cursors, hashes) = store.reset(&pipeline).await.map_err(CliError::failed)?;
            println!("{pipeline}: removed {cursors} cursor(s) and {hashes} fingerprint(s); the next run reads and writes everything");
        }
    }
    Ok(Exit::Ok)
}
