//! One module per command, and what they share: the session (config path, hints, the
//! interrupt), opening the state store, and the commands that need nothing else.

mod auth;
mod backfill;
mod check;
mod console;
mod dlq;
mod events;
mod example;
mod inbox;
mod lease;
mod run;
mod runs;
mod sandbox;
mod schedule;
mod serve;
mod state;
mod verify;

use crate::cli::{Cli, Command, DlqCommand, StateCommand};
use crate::config::{self, StateSettings};
use crate::exit::{CliError, CliResult, Exit};
use crate::output;
use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::time::Duration;
use syncline_store::Store;
use tokio_util::sync::CancellationToken;

/// How long a command may take to wind down after Ctrl-C or SIGTERM before it is cut off.
const WIND_DOWN: Duration = Duration::from_millis(1500);

/// What every command gets besides its own arguments.
pub struct Session {
    pub config_path: PathBuf,
    pub quiet: bool,
    /// `--init`: a new store may replace one that is missing, empty, unreadable or another.
    pub init: bool,
    /// `--expect-state`: never create a store.
    pub expect_state: bool,
    /// Cancelled by the first Ctrl-C or SIGTERM.
    pub stop: CancellationToken,
}

impl Session {
    /// The start of a command line that repeats this one's config, for hints a person can copy:
    /// `syncline --config examples/members.yaml`.
    pub fn hint(&self, command: &str) -> String {
        if self.config_path == Path::new(crate::cli::DEFAULT_CONFIG) {
            format!("syncline {command}")
        } else {
            format!("syncline --config {} {command}", shell_word(&self.config_path.display().to_string()))
        }
    }
}

/// A path as one shell word.
fn shell_word(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Runs the command. Every command stops within `WIND_DOWN` of an interrupt: those with work
/// to record (run, replay, backfill) wind down on their own and say what they committed; any
/// other is cut off. `serve` bounds its own shutdown (`serve.drain`), so it can hand unfinished
/// events back to the inbox and close its history rows.
pub async fn dispatch(cli: Cli, stop: CancellationToken) -> CliResult {
    let session =
        Session { config_path: cli.config.clone(), quiet: cli.quiet, init: cli.init, expect_state: cli.expect_state, stop: stop.clone() };
    let bounds_itself = matches!(cli.command, Command::Serve(_));
    let work = command(cli.command, &session);
    if bounds_itself {
        return work.await;
    }
    tokio::select! {
        result = work => result,
        () = async { stop.cancelled().await; tokio::time::sleep(WIND_DOWN).await } => Err(CliError::interrupted()),
    }
}

async fn command(command: Command, session: &Session) -> CliResult {
    match command {
        Command::Schema => {
            output::line(serde_json::to_string_pretty(&config::json_schema()).expect("json"));
            Ok(Exit::Ok)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "syncline", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Example(example) => example::run(example),
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Sandbox(args) => sandbox::run(args, session).await,
        Command::Check => check::run(session).await,
        // these read only the state store: no secrets or connections needed
        Command::Runs(args) => runs::run(&store_only(session).await?, args).await,
        Command::Inbox(args) => inbox::run(&store_only(session).await?, args).await,
        Command::Events(args) => events::run(&store_only(session).await?, args).await,
        Command::Dlq(DlqCommand::Replay { pipeline, ids, sandbox }) => {
            let (config, store) = whole(session).await?;
            dlq::replay(&config, &store, dlq::Replay { pipeline, ids, sandbox }, session).await
        }
        Command::Dlq(dlq) => dlq::run(&store_only(session).await?, dlq, session).await,
        Command::State(StateCommand::Set(args)) => {
            let (config, store) = whole(session).await?;
            state::set(&config, &store, args, session).await
        }
        Command::State(state) => {
            let config = config::load_store(&session.config_path)?;
            let store = open_store(&config.state, &config.base_dir, session).await?;
            state::run(&config, &store, state, session).await
        }
        Command::Run(args) => {
            let (config, store) = whole(session).await?;
            run::run(&config, &store, args, session).await
        }
        Command::Schedules => {
            let (config, store) = whole(session).await?;
            schedule::list(&config, &store).await
        }
        Command::Serve(args) => {
            let (config, store) = whole(session).await?;
            serve::run(std::sync::Arc::new(config), &store, args, session).await
        }
        Command::Console(args) => {
            let (config, store) = whole(session).await?;
            console::run(std::sync::Arc::new(config), &store, args, session).await
        }
        Command::Verify(args) => verify::run(&config::load(&session.config_path)?, args).await,
        Command::Reconcile(args) => {
            let (config, store) = whole(session).await?;
            run::run(&config, &store, args.run(), session).await
        }
        Command::Auth(args) => {
            let (config, store) = whole(session).await?;
            auth::run(&config, &store, args).await
        }
        Command::Backfill(args) => {
            let (config, store) = whole(session).await?;
            backfill::run(&config, &store, args, session).await
        }
    }
}

/// The whole config, validated with its secrets, and its store.
async fn whole(session: &Session) -> Result<(config::Config, Store), CliError> {
    let config = config::load(&session.config_path)?;
    let store = open_store(&config.state, &config.base_dir, session).await?;
    Ok((config, store))
}

/// The store of a command that needs nothing else of the config.
async fn store_only(session: &Session) -> Result<Store, CliError> {
    let config = config::load_store(&session.config_path)?;
    open_store(&config.state, &config.base_dir, session).await
}

/// Opens (creating or migrating) the state store, refusing to put a new, empty one where state
/// was: a SQLite store keeps its id in a marker beside it (`<file>.id`), so a file that went
/// missing, was emptied or was swapped is noticed and named, and only `--init` starts again.
/// A new file is announced once; the store of an older syncline's default (`syncline.db`,
/// shared by every config in a folder) is never silently replaced by a new one either.
pub async fn open_store(state: &StateSettings, base_dir: &Path, session: &Session) -> Result<Store, CliError> {
    let file = state.url.strip_prefix("sqlite://").map(|p| PathBuf::from(p.split('?').next().unwrap_or(p)));
    let marker = file.as_ref().map(|f| PathBuf::from(format!("{}.id", f.display())));
    let remembered = marker.as_ref().and_then(|m| std::fs::read_to_string(m).ok()).map(|id| id.trim().to_owned());
    let empty = file.as_ref().is_some_and(|f| std::fs::metadata(f).map_or(true, |m| m.len() == 0));
    if let (true, Some(file)) = (empty, &file) {
        let (shown, what) = (file.display(), if file.exists() { "empty" } else { "missing" });
        if let (Some(id), false) = (&remembered, session.init) {
            return Err(CliError::usage(format!(
                "the state store {shown} is {what}, but this config has run with it before (store {id}, noted in {}). \
                 Restore it from a backup, or pass --init to start a new, empty store (cursors, fingerprints, dead letters and history start from nothing)",
                marker.as_ref().expect("sqlite").display()
            )));
        }
        if session.expect_state {
            return Err(CliError::usage(format!("--expect-state: there is no state store at {shown}")));
        }
        if !state.explicit && base_dir.join("syncline.db").exists() {
            return Err(CliError::usage(format!(
                "{} holds state from an earlier syncline, whose default store was syncline.db in the config's folder; \
                 it is no longer used by default. Keep using it with `state: sqlite://syncline.db` in the config, \
                 or move it to {shown} if no other config in the folder uses it",
                base_dir.join("syncline.db").display(),
            )));
        }
    }
    let store = match (Store::connect(&state.url).await, &file) {
        // --init over a file SQLite cannot read: it is kept aside, never deleted
        (Err(syncline_store::StoreError::Unreadable { .. }), Some(file)) if session.init => {
            let aside = PathBuf::from(format!("{}.unreadable-{}", file.display(), chrono::Utc::now().format("%Y%m%dT%H%M%S")));
            std::fs::rename(file, &aside).map_err(|e| CliError::failed(format!("cannot move {} aside: {e}", file.display())))?;
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            eprintln!("state: moved the unreadable {} to {}; starting a new store", file.display(), aside.display());
            Store::connect(&state.url).await
        }
        (result, _) => result,
    }
    .map_err(|e| {
        // a database that does not answer is a failure (exit 1); a URL, role, schema or file it
        // refuses is the config's (exit 2)
        let unreachable = matches!(&e, syncline_store::StoreError::Connect { source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut, .. });
        if unreachable { CliError::failed(format!("state store: {e}")) } else { CliError::usage(format!("state store: {e}")) }
    })?;
    if let (Some(file), Some(marker)) = (&file, &marker) {
        let id = store.id().await.map_err(|e| CliError::failed(format!("state store: {e}")))?;
        match &remembered {
            Some(known) if *known != id && !session.init => {
                return Err(CliError::usage(format!(
                    "the state store {} is not the one this config used (it is store {id}; {} names store {known}). \
                     Put the right file back, or pass --init to go on with this one",
                    file.display(),
                    marker.display()
                )));
            }
            Some(known) if *known == id => {}
            _ => {
                std::fs::write(marker, format!("{id}\n"))
                    .map_err(|e| CliError::failed(format!("cannot write {}: {e}", marker.display())))?;
            }
        }
        if empty && !session.quiet {
            eprintln!("state: created {} (store {id})", file.display());
        }
    }
    Ok(store)
}
