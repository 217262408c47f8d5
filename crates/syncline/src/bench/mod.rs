//! `syncline bench`: figures people read, not timed tests (the machines are shared). Each
//! module measures one thing end to end with the real parts:
//! - `members`: the members pipeline over generated rows, into SQLite or a HubSpot sandbox;
//! - `intake`: durable webhook intake;
//! - `flow`: the lead → ManyChat flow through intake, inbox and workers;
//! - `timing`: that refusing a forged signature takes the same time however much of it matches.

mod flow;
mod intake;
mod members;
mod timing;

use crate::cli::BenchArgs;
use crate::exit::{CliError, CliResult};

pub async fn run(args: BenchArgs) -> CliResult {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(CliError::failed)?;
            temp.path().to_owned()
        }
    };
    std::fs::create_dir_all(&dir).map_err(CliError::failed)?;
    if args.timing {
        timing::run()
    } else if args.intake {
        intake::run(&dir).await
    } else if args.flow {
        flow::run(&dir).await
    } else {
        members::run(&args, &dir).await
    }
}

/// The value at or above which a share `p` of `sorted` lies (nearest rank; `p` 1.0 is the max).
fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}
