//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The config file used when none is given.
pub const DEFAULT_CONFIG: &str = "syncline.yaml";

/// Exit codes, the same for every command.
const EXIT_CODES: &str = "Exit codes (every command):
  0    done
  3    done, but some records became dead letters (`syncline dlq list`)
  1    failed: a database or API failed or could not be reached; what was acknowledged is kept
  2    nothing was done: bad arguments, config or credentials (a refused token is a config problem)
  130  interrupted by Ctrl-C or SIGTERM; what was acknowledged is kept";

/// Keeps CRM, messaging, billing, accounting and SQL databases in sync.
#[derive(Debug, Parser)]
#[command(name = "syncline", version, about, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    /// The config file.
    #[arg(long, short = 'c', global = true, env = "SYNCLINE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// More logs (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Debug logs: the same as -vv (as the Django commands it replaces spelled it).
    #[arg(long, global = true)]
    pub debug: bool,
    /// Only errors; no progress bar.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Start a new, empty state store where one has gone missing, is empty or unreadable, or is
    /// not the one this config used (its cursors, fingerprints, dead letters and history are
    /// then gone).
    #[arg(long, global = true)]
    pub init: bool,
    /// Refuse to create a state store: one must exist already (for deployments).
    #[arg(long, global = true, conflicts_with = "init")]
    pub expect_state: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline (or `all`, in config order).
    Run(RunArgs),
    /// Validate the config, then probe every connection it names.
    Check,
    /// Sync history, newest first (pipeline runs, replays, and flows' work per `serve`).
    Runs(RunsArgs),
    /// Scheduled pipelines (`schedule:`, run by `serve`): the next slot, the last one and how its
    /// run went.
    Schedules,
    /// Dead letters: records that could not be written, and why.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// What a pipeline has stored: cursors per source and target, change-detection fingerprints.
    #[command(subcommand)]
    State(StateCommand),
    /// Print the JSON Schema of the config file (for editors).
    Schema,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Generate example data.
    #[command(subcommand)]
    Example(ExampleCommand),
    /// Measure throughput and memory of the members pipeline on generated rows.
    Bench(BenchArgs),
    /// Serve the local API emulators (HubSpot, ManyChat, Stripe, QuickBooks) for tests, demos
    /// and dry runs.
    Sandbox(SandboxArgs),
    /// The audit trail: what sinks decided for each record (QuickBooks items created, updated
    /// with which fields, unchanged, refused), newest first, with counts and durations.
    Events(EventsArgs),
    /// Compare every record of a pipeline's source with what its target holds now, and show
    /// the drift (items changed by hand in QuickBooks, rows edited in a table); `--apply`
    /// writes what differs. A full read that ignores change detection: schedule it to repair.
    Reconcile(ReconcileArgs),
    /// Connect an OAuth app to its account (`quickbooks`: prints the consent page's address,
    /// then stores the tokens the approval gives, encrypted under `SYNCLINE_TOKEN_KEY`).
    Auth(AuthArgs),
    /// Receive the configured webhooks into the durable inbox (`POST /webhooks/<name>`), with
    /// `/healthz` and `/readyz`, until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// The operator console alone (`serve` also starts it): runs, dead letters (replay, ignore),
    /// the inbox and live progress in a browser, at `console.bind` (default 127.0.0.1:8081).
    Console(ConsoleArgs),
    /// The webhook inbox: events by source and status, one by one, or one with its payload.
    Inbox(InboxArgs),
    /// Compare a HubSpot → warehouse pipeline's table with HubSpot: live objects counted on both
    /// sides, and a random sample of rows compared field by field (exit 3 when they differ).
    Verify(VerifyArgs),
    /// After downtime: put the events a flow's trigger missed in the inbox (HubSpot objects
    /// created since a time, under the webhooks' own dedupe keys); `serve` then runs them once.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The pipeline (a HubSpot source into a SQL table).
    pub pipeline: String,
    /// Rows compared field by field, picked at random.
    #[arg(long, default_value_t = 100)]
    pub sample: usize,
    /// Differences listed at the most.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The flow whose trigger missed events.
    pub flow: String,
    /// Objects created from this time on (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: String,
    /// Up to this time (default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Count what would be enqueued; store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (default: the config's `serve.bind`, else 127.0.0.1:8080).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Address and port to listen on (default: the config's `console.bind`, else 127.0.0.1:8081).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this decision (`created`, `updated`, `unchanged`, `conflict`, `dead_letter`) or
    /// whole kind (`quickbooks.item.updated`).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Only the entries of this record (a Stripe product's id).
    #[arg(long)]
    pub product: Option<String>,
    /// Only entries from this time on (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The pipeline.
    pub pipeline: String,
    /// Write what differs (default: only show it).
    #[arg(long)]
    pub apply: bool,
    /// Every difference, as JSON lines, into this file (when only showing).
    #[arg(long, conflicts_with = "apply")]
    pub plan_out: Option<PathBuf>,
}

impl ReconcileArgs {
    /// The run it is: full, change detection ignored, dry unless applying.
    pub fn run(self) -> RunArgs {
        RunArgs {
            pipeline: self.pipeline,
            full: true,
            since: None,
            dry_run: !self.apply,
            jobs: 1,
            skip_associations: false,
            from_object: None,
            to_object: None,
            plan_out: self.plan_out,
            batch_size: None,
            limit: None,
            resend: true,
            sandbox: false,
            // a scheduled reconcile waits for the pipeline's run rather than being skipped
            wait: true,
        }
    }
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The service (only `quickbooks` needs OAuth).
    #[arg(value_enum)]
    pub service: AuthService,
    /// The address the browser was sent back to after approving (default: asked for).
    #[arg(long)]
    pub redirect: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthService {
    Quickbooks,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// TCP port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Portals and properties to start with (YAML or JSON); default: the members demo portal.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// Scripted faults, YAML or JSON, e.g. `{rate_limited: 0.3, server_errors: 0.1, latency_ms: 20}`
    /// (also settable at run time: `PUT /__sandbox/faults`).
    #[arg(long)]
    pub faults: Option<String>,
    /// The demo portal's tier (free: 100 calls per 10 s, professional: 190, api-limit-increase: 250).
    #[arg(long, value_parser = parse_tier, conflicts_with = "seed")]
    pub tier: Option<syncline_connectors::hubspot::Tier>,
    /// Which demo portal: `members` (the member properties) or `warehouse` (those, plus a
    /// custom object "divisions"; with `--contacts N` also deals, appointments, divisions and
    /// their associations).
    #[arg(long, value_enum, default_value_t = Demo::Members, conflicts_with = "seed")]
    pub demo: Demo,
    /// Give the demo portal this many generated contacts (10 properties each), modified over
    /// the past day.
    #[arg(long, default_value_t = 0, conflicts_with = "seed")]
    pub contacts: u64,
    /// No rate limits at all on the demo portal, Stripe account and QuickBooks company (not
    /// what the services allow: for benchmarks).
    #[arg(long, conflicts_with_all = ["seed", "tier"])]
    pub no_limits: bool,
    /// Give the demo Stripe account (`sk_test_sandbox`) this many generated products, each with
    /// a default price.
    #[arg(long, default_value_t = 0, conflicts_with = "seed")]
    pub products: u64,
    /// Post the demo Stripe account's product and price events to this URL (e.g.
    /// `http://127.0.0.1:8080/webhooks/stripe`), signed with the secret `whsec_sandbox`.
    #[arg(long, value_name = "URL", conflicts_with = "seed")]
    pub stripe_webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Demo {
    Members,
    Warehouse,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline's name, or `all`.
    pub pipeline: String,
    /// Read everything, ignoring the committed cursor.
    #[arg(long, conflicts_with = "since")]
    pub full: bool,
    /// Read rows changed since this time (RFC 3339 or YYYY-MM-DD). At or before the cursor, the
    /// run continues from there and moves the cursor; after it (or with no cursor), it reads that
    /// window only and leaves the cursor alone (mode `window`), so no row is ever skipped.
    #[arg(long)]
    pub since: Option<String>,
    /// Read, transform and diff, but write nothing and commit no cursor.
    #[arg(long)]
    pub dry_run: bool,
    /// Pipelines run at once with `all` (the objects' first, then the associations'); those
    /// reading one HubSpot portal share its budget.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub jobs: u64,
    /// Leave out the pipelines that read HubSpot associations (with `all`).
    #[arg(long, conflicts_with_all = ["from_object", "to_object"])]
    pub skip_associations: bool,
    /// Only the association pipelines from this object type (`contacts`, `0-1`…).
    #[arg(long)]
    pub from_object: Option<String>,
    /// Only the association pipelines to this object type.
    #[arg(long)]
    pub to_object: Option<String>,
    /// With --dry-run: write one JSON line per record (key, action, changes, reason).
    #[arg(long, requires = "dry_run")]
    pub plan_out: Option<PathBuf>,
    /// Records per sink call (overrides the config).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: Option<u64>,
    /// Stop after reading this many records (the cursor moves over what was read).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Write every record, also those whose fingerprint says the target has them already.
    #[arg(long, conflicts_with = "dry_run")]
    pub resend: bool,
    /// Serve the built-in HubSpot sandbox (the demo member portal) at the HubSpot sink's
    /// loopback `base_url` for this run, then print what it received. For trying syncline with
    /// nothing else running; `syncline sandbox` serves it on its own.
    #[arg(long)]
    pub sandbox: bool,
    /// A pipeline runs in one process at a time: when another holds it, wait for that run to
    /// end instead of exiting at once.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this pipeline's (or flow's) runs.
    #[arg(long)]
    pub pipeline: Option<String>,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DlqStatus {
    Open,
    Resolved,
    Replayed,
    Ignored,
    All,
}

impl DlqStatus {
    /// The stored status, or None for all.
    pub fn stored(self) -> Option<&'static str> {
        match self {
            DlqStatus::Open => Some("open"),
            DlqStatus::Resolved => Some("resolved"),
            DlqStatus::Replayed => Some("replayed"),
            DlqStatus::Ignored => Some("ignored"),
            DlqStatus::All => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (open ones unless --status says otherwise).
    List {
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long, value_enum, default_value_t = DlqStatus::Open)]
        status: DlqStatus,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Open dead letters counted by pipeline, rule and field: what to fix first.
    Summary {
        #[arg(long)]
        pipeline: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its payload.
    Show { id: i64 },
    /// Run open dead letters through the current transforms and sink again.
    Replay {
        #[arg(long)]
        pipeline: Option<String>,
        /// Only these ids (default: every open one, of --pipeline if given).
        ids: Vec<i64>,
        /// Serve the built-in HubSpot sandbox at the HubSpot sink's loopback `base_url` for
        /// this replay, as `run --sandbox` does (a new, empty one: the run's stopped with it).
        #[arg(long)]
        sandbox: bool,
    },
    /// Mark dead letters as ignored (they stay as history).
    Ignore {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Cursors (per source and target) and fingerprint counts, of one pipeline or all.
    Show {
        pipeline: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Set a pipeline's cursor for its current source and target, e.g.
    /// `{"watermark": {"kind": "timestamp", "value": "2024-05-01T00:00:00"}, "key": {"kind": "int", "value": 0}}`
    /// (rows up to it are then never read; asks first).
    Set(StateSetArgs),
    /// Forget a pipeline's cursors and fingerprints (every source and target): its next run
    /// reads and writes everything. Dead letters and history stay. Asks first.
    Clear {
        pipeline: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct StateSetArgs {
    pub pipeline: String,
    /// The cursor as JSON, in the shape `state show --json` prints.
    pub cursor: String,
    /// Do not ask.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(subcommand)]
    pub command: Option<InboxCommand>,
}

/// Inbox event statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InboxStatus {
    Pending,
    Running,
    Done,
    Dead,
    All,
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// Events newest first, with their attempts and last error.
    List {
        /// Only this webhook source's.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_enum, default_value_t = InboxStatus::All)]
        status: InboxStatus,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One event with its payload.
    Show { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ExampleCommand {
    /// Write a SQLite member table shaped like the seed users' (with a share of invalid rows).
    Members {
        /// The SQLite file to create or extend.
        #[arg(long, default_value = "examples/members.db")]
        db: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Share of rows with exactly one defect.
        #[arg(long, default_value_t = 0.05)]
        invalid: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("store_bench").args(["shared_budget", "console"]).multiple(false))]
pub struct BenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Where to put the generated databases (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write to an in-process HubSpot sandbox of this tier instead of SQLite, in real time
    /// (free: 100 calls per 10 s, professional: 190, api-limit-increase: 250).
    #[arg(long, value_parser = parse_tier)]
    pub hubspot: Option<syncline_connectors::hubspot::Tier>,
    /// Measure durable webhook intake instead: events/s for deliveries of 100 events, and the
    /// time to 2xx at a steady 1,000 deliveries per second.
    #[arg(long, conflicts_with = "hubspot")]
    pub intake: bool,
    /// Measure the lead → ManyChat flow instead: sends/s through a backlog of 1,000 events,
    /// and webhook-to-message latency at 20 webhooks per second.
    #[arg(long, conflicts_with_all = ["hubspot", "intake"])]
    pub flow: bool,
    /// Check instead that refusing a forged webhook signature takes the same time however much
    /// of it matches (Welch's t-test per scheme; fails when p ≤ 0.01).
    #[arg(long, conflicts_with_all = ["hubspot", "intake", "flow"])]
    pub timing: bool,
    /// Measure HubSpot → warehouse ingestion instead: `--rows` contacts with 10 properties from
    /// a sandbox without rate limits (its own process) into a warehouse table, by a full run;
    /// records/s and resident memory. With `--hubspot TIER`, the sandbox has that tier's limits
    /// and the run its budget: how full each 10-s window was, and the 429s.
    #[arg(long, conflicts_with_all = ["intake", "flow", "timing"])]
    pub warehouse: bool,
    /// The warehouse database for `--warehouse` (default: SQLite in `--dir`), e.g.
    /// `postgres://127.0.0.1/test`; for `--sql`, the PostgreSQL database copied into (default
    /// postgres://postgres@127.0.0.1:5432/test).
    #[arg(long)]
    pub warehouse_url: Option<String>,
    /// Measure a SQL → PostgreSQL copy instead: `--rows` generated rows of eight columns in
    /// `--source-url`, by one full run, against a bare `COPY` of the same rows in the same sitting.
    #[arg(long, conflicts_with_all = ["hubspot", "intake", "flow", "timing", "warehouse", "stripe", "quickbooks", "shared_budget", "console"])]
    pub sql: bool,
    /// The source database for `--sql`: MariaDB/MySQL or PostgreSQL (default
    /// mysql://root@127.0.0.1:3306/test). Tables named `bench_sql_*` are made and dropped.
    #[arg(long, requires = "sql")]
    pub source_url: Option<String>,
    /// Measure reading Stripe instead: `--rows` products, each with its default price, listed
    /// from a Stripe sandbox without rate limits (its own process) into a SQLite table, by a
    /// full run; records/s and resident memory.
    #[arg(long, conflicts_with_all = ["hubspot", "intake", "flow", "timing", "warehouse"])]
    pub stripe: bool,
    /// Measure the Stripe → QuickBooks backfill instead: `--rows` products become items of a
    /// QuickBooks sandbox company at QuickBooks' own limits, through the example pipeline;
    /// batch calls per minute against the 40 allowed, and the 429s.
    #[arg(long, conflicts_with_all = ["hubspot", "intake", "flow", "timing", "warehouse", "stripe"])]
    pub quickbooks: bool,
    /// Measure instead what sharing a rate budget through PostgreSQL costs: permits/s and the
    /// time one takes, then ManyChat's 25 sends/s spent by three instances (calls/s, the most in
    /// any rolling second, the p99 of the wait it adds). Needs `--store`.
    #[arg(long, conflicts_with_all = ["hubspot", "intake", "flow", "timing", "warehouse", "stripe", "quickbooks"])]
    pub shared_budget: bool,
    /// Measure instead the operator console's pages on a store of `--runs` runs and
    /// `--dead-letters` dead letters (SQLite, or PostgreSQL with `--store-url`): each page's
    /// answer time over loopback, p50/p99/max of 20.
    #[arg(long, conflicts_with_all = ["hubspot", "intake", "flow", "timing", "warehouse", "stripe", "quickbooks", "shared_budget"])]
    pub console: bool,
    /// Runs in the store for `--console`.
    #[arg(long, default_value_t = 100_000, requires = "console")]
    pub runs: u64,
    /// Dead letters in the store for `--console`.
    #[arg(long, default_value_t = 1_000_000, requires = "console")]
    pub dead_letters: u64,
    /// The PostgreSQL server for `--shared-budget` (default postgres://postgres@127.0.0.1:5432/test)
    /// or `--console` (default: a SQLite file); a schema of its own is made and dropped.
    #[arg(long, requires = "store_bench")]
    pub store_url: Option<String>,
    /// How long `--shared-budget` spends the page's budget (default 10).
    #[arg(long, requires = "shared_budget")]
    pub seconds: Option<u64>,
}

fn parse_tier(text: &str) -> Result<syncline_connectors::hubspot::Tier, String> {
    use syncline_connectors::hubspot::Tier;
    match text {
        "free" | "starter" => Ok(Tier::Free),
        "professional" | "enterprise" => Ok(Tier::Professional),
        "api-limit-increase" | "api_limit_increase" => Ok(Tier::LimitIncrease),
        other => Err(format!("{other:?} is not a tier; use free, professional or api-limit-increase")),
    }
}
