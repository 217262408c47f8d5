//! The config file as written: serde structs that mirror the YAML, with a doc comment per field
//! (they become the JSON Schema `syncline schema` prints). Validation into settings is in
//! `settings.rs`. Unknown keys are not refused by serde here (that would stop at the first):
//! `parse_raw` collects them all, and the schema still forbids them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// A value with its place in the file.
pub type At<T> = Spanned<T>;

/// A syncline config file.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(title = "syncline config")]
pub struct RawConfig {
    /// Where syncline keeps cursors, sync history and dead letters: `sqlite://PATH` (relative to
    /// this file; default `<this file's name>.state.db` beside it) or `postgres://…` (password
    /// from `${VAR}`; tables in the schema `state_schema`).
    #[schemars(with = "Option<String>")]
    pub state: Option<At<String>>,
    /// PostgreSQL stores only: the schema of syncline's tables (default `syncline`; or
    /// `?schema=…` in the URL). Created when missing.
    #[schemars(with = "Option<String>")]
    pub state_schema: Option<At<String>>,
    /// The pipelines, by name; `syncline run all` runs them in this order.
    #[serde(default)]
    pub pipelines: indexmap::IndexMap<String, RawPipeline>,
    /// Webhook endpoints `syncline serve` receives, by name: each is `POST /webhooks/<name>`.
    #[serde(default)]
    pub webhooks: indexmap::IndexMap<String, RawWebhook>,
    /// How `syncline serve` listens and runs flows.
    pub serve: Option<RawServe>,
    /// The operator console (served by `syncline serve` on its own address, and by
    /// `syncline console`).
    pub console: Option<RawConsole>,
    /// The APIs flows call.
    pub connections: Option<RawConnections>,
    /// Flows `syncline serve` runs on inbox events, by name.
    #[serde(default)]
    pub flows: indexmap::IndexMap<String, RawFlow>,
}

/// API accounts flows use (pipelines name their own in their sink).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawConnections {
    pub hubspot: Option<RawConnection>,
    pub manychat: Option<RawConnection>,
    pub quickbooks: Option<RawQuickBooks>,
}

/// A QuickBooks Online company and the OAuth app connected to it (`syncline auth quickbooks`
/// connects them and stores the tokens, encrypted under `SYNCLINE_TOKEN_KEY`).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawQuickBooks {
    /// The company's id (`realmId`).
    #[schemars(with = "String")]
    pub realm_id: At<String>,
    /// The app's client id (Intuit developer portal → Keys & credentials).
    #[schemars(with = "String")]
    pub client_id: At<String>,
    /// The app's client secret, as `${VAR}` (a secret written in the config is refused).
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<At<String>>,
    /// A file holding the client secret.
    #[schemars(with = "Option<String>")]
    pub client_secret_file: Option<At<String>>,
    /// Where the consent page sends the browser back (one of the app's redirect URIs).
    #[schemars(with = "String")]
    pub redirect_uri: At<String>,
    /// The API's URL (default `https://quickbooks.api.intuit.com`; Intuit's development
    /// companies: `https://sandbox-quickbooks.api.intuit.com`; syncline's sandbox:
    /// `http://127.0.0.1:8787`).
    #[schemars(with = "Option<String>")]
    pub base_url: Option<At<String>>,
    /// The OAuth token endpoint (default Intuit's).
    #[schemars(with = "Option<String>")]
    pub token_url: Option<At<String>>,
    /// The consent page (default Intuit's).
    #[schemars(with = "Option<String>")]
    pub authorize_url: Option<At<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawConnection {
    /// The API token as `${VAR}` (HubSpot: a private app token; ManyChat: `<page_id>:<key>`).
    #[schemars(with = "String")]
    pub token: At<String>,
    /// The API's URL (default the service's own; the sandbox's `http://127.0.0.1:8787`).
    #[schemars(with = "Option<String>")]
    pub base_url: Option<At<String>>,
    /// HubSpot only: the portal's tier, which sets the budget (default `free`).
    pub tier: Option<RawTier>,
}

/// A flow: what starts it, and its steps.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawFlow {
    pub trigger: RawTrigger,
    /// Run in order on each event; see the README for every step.
    #[schemars(with = "Vec<syncline_server::flow::Step>")]
    pub steps: Vec<At<syncline_server::flow::Step>>,
    /// Attempts before an event that keeps failing (5xx, timeouts) becomes a dead letter
    /// (default 5). Data errors (no phone or email, ManyChat 3011) are dead letters at once.
    #[schemars(with = "Option<u64>", range(min = 1, max = 100))]
    pub max_attempts: Option<At<u64>>,
    /// Run each object's events in `occurredAt` order and skip (and audit) an event older than
    /// one already run for the same object, so the latest change wins (default false; turn on
    /// for `propertyChange` flows).
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawTrigger {
    /// The webhook source (a name under `webhooks:`).
    #[schemars(with = "String")]
    pub source: At<String>,
    /// Event types that start the flow (HubSpot `subscriptionType`, e.g. `contact.creation`;
    /// Stripe `type`). Default: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// A minijinja expression over `event` that must be true, e.g.
    /// `event.changeSource != "IMPORT"`.
    #[schemars(with = "Option<String>")]
    pub filter: Option<At<String>>,
}

/// A webhook endpoint: who posts to it and the secrets its deliveries are signed with.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawWebhook {
    /// `hubspot` (signatures v1/v2/v3, arrays of events) or `stripe` (`Stripe-Signature`).
    pub provider: RawProvider,
    /// Signing secrets as `${VAR}` (HubSpot: the app's client secret; Stripe: `whsec_…`). Any of
    /// them verifies a delivery, so list the old and the new one while rotating.
    #[schemars(with = "Vec<String>")]
    pub secrets: Vec<At<String>>,
    /// HubSpot signature versions accepted (default `[v1, v2, v3]`; v3 is checked when sent).
    pub versions: Option<Vec<syncline_server::HubSpotVersion>>,
    /// The URL the sender calls, when a proxy in front changes scheme or host (HubSpot v2/v3
    /// sign it), e.g. `https://hooks.example.com/webhooks/hubspot`.
    #[schemars(with = "Option<String>")]
    pub public_url: Option<At<String>>,
    /// Largest body taken, in bytes (default 1 MiB); larger ones get 413 before being read.
    #[schemars(with = "Option<u64>", range(min = 1024, max = 67108864))]
    pub body_limit: Option<At<u64>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawProvider {
    Hubspot,
    Stripe,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawConsole {
    /// Address and port of the console, kept apart from the webhooks' (default
    /// `127.0.0.1:8081`). On a loopback address its pages are open to read; elsewhere every page
    /// needs the token.
    #[schemars(with = "Option<String>")]
    pub bind: Option<At<String>>,
    /// The admin token that signs in and allows replaying or ignoring dead letters, as
    /// `${VAR}`. Without it the console only shows.
    #[schemars(with = "Option<String>")]
    pub token: Option<At<String>>,
    /// Set `false` for `serve` not to start the console (default true).
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawServe {
    /// Address and port to listen on (default `127.0.0.1:8080`).
    #[schemars(with = "Option<String>")]
    pub bind: Option<At<String>>,
    /// Inbox events run at once (default 16); the APIs' budgets pace the calls either way.
    #[schemars(with = "Option<u64>", range(min = 1, max = 256))]
    pub workers: Option<At<u64>>,
    /// How long a claimed event stays this instance's before another may take it over
    /// (default `60s`): after a crash, its events run again once their lease runs out.
    #[schemars(with = "Option<String>")]
    pub lease: Option<At<String>>,
    /// On SIGTERM or Ctrl-C, how long flows already running get to finish (default `1s`, so
    /// serve stops within 2 s); what is left goes back to the inbox at once. A flow ending in
    /// `send_flow` sends its mark in a second call, so a cut between the two can start the
    /// ManyChat flow again: give such flows a longer drain (e.g. `30s`).
    #[schemars(with = "Option<String>")]
    pub drain: Option<At<String>>,
    /// How long a client may take to send the request line and headers — also how long a
    /// kept-alive connection may idle (default `10s`). Past it the connection is closed.
    #[schemars(with = "Option<String>")]
    pub header_timeout: Option<At<String>>,
    /// How long a client may pause between parts of a body (default `10s`); past it, 408.
    #[schemars(with = "Option<String>")]
    pub body_chunk_timeout: Option<At<String>>,
    /// How long a client may take to send a whole body (default `30s`); past it, 408.
    #[schemars(with = "Option<String>")]
    pub body_timeout: Option<At<String>>,
    /// Connections open at once, in all (default 1024); more are answered 503.
    #[schemars(with = "Option<u64>", range(min = 1, max = 100000))]
    pub max_connections: Option<At<u64>>,
    /// Connections open at once from one client address (default 64; HubSpot keeps at most 10
    /// deliveries in flight per app); more are answered 503.
    #[schemars(with = "Option<u64>", range(min = 1, max = 100000))]
    pub max_connections_per_client: Option<At<u64>>,
}

/// One pipeline: a source read page by page, transforms, and a sink written in batches.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPipeline {
    pub source: RawSource,
    /// Applied in order to every record; a failing rule turns the record into a dead letter.
    #[serde(default)]
    #[schemars(with = "Vec<RawTransform>")]
    pub transforms: Vec<At<RawTransform>>,
    pub sink: RawSink,
    /// Records per sink call (default 500 for SQL sinks, at most 10,000; for HubSpot, inputs per
    /// batch call, at most and by default 100).
    #[schemars(with = "Option<u64>", range(min = 1, max = 10000))]
    pub batch_size: Option<At<u64>>,
    /// Skip records whose mapped fields equal what was last written to the same target
    /// (default: on for HubSpot, where every call spends the rate budget; off for SQL sinks,
    /// whose upserts are idempotent). `run --resend` writes them anyway.
    pub change_detection: Option<bool>,
    /// How long failures are retried before the run fails.
    pub retry: Option<RawRetry>,
    /// After each incremental run, compare the source's row count with what the target holds
    /// (its rows, or the records change detection knows) plus open dead letters, and warn when
    /// the source has rows no run has read — inserted late with an old watermark (default false).
    #[serde(default)]
    pub verify_counts: bool,
    /// When `syncline serve` runs the pipeline by itself (an incremental run, on one instance
    /// of those sharing the store).
    pub schedule: Option<RawSchedule>,
}

/// A pipeline's schedule: cron fields read in a time zone.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawSchedule {
    /// Five fields (minute, hour, day of month, month, day of week), e.g. `*/15 * * * *` or
    /// `0 2 * * *`; six with seconds first; or `@hourly`, `@daily`, `@weekly`, `@monthly`.
    #[schemars(with = "String")]
    pub cron: At<String>,
    /// The IANA time zone the fields are read in, e.g. `America/Costa_Rica` (default `UTC`).
    #[schemars(with = "Option<String>")]
    pub timezone: Option<At<String>>,
    /// What runs: `run` (incremental, the default) or `reconcile` (the whole source compared with
    /// the target, and what differs written: `reconcile --apply`).
    pub job: Option<RawScheduledJob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawScheduledJob {
    Run,
    Reconcile,
}

/// The ceilings on retries: past them the run fails (exit 1) and says which one it hit.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRetry {
    /// A database or API that refuses connections (or whose breaker stays open): retried this
    /// long, then the run fails (default `5s`). Raise it to wait out a restart.
    #[schemars(with = "Option<String>")]
    pub unreachable: Option<At<String>>,
    /// Failures worth retrying (a dropped connection, 5xx, timeouts, 429s): retried this long per
    /// call (default `5m`).
    #[schemars(with = "Option<String>")]
    pub transient: Option<At<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(deny_unknown_fields)]
// one value per pipeline, parsed once: the size difference costs nothing
#[allow(clippy::large_enum_variant)]
pub enum RawSource {
    /// A SQL table or query, read in `(watermark, key)` order.
    Sql(RawSqlSource),
    /// HubSpot CRM objects of one type: listed in full runs, searched by modification time in
    /// incremental ones.
    Hubspot(RawHubSpot),
    /// Stripe products with their default prices: listed in full runs, caught up from the
    /// account's events in incremental ones.
    Stripe(RawStripe),
}

/// A Stripe account: where, the key, and what is read.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawStripe {
    /// The API's URL (default `https://api.stripe.com`; the sandbox's `http://127.0.0.1:8787`).
    #[schemars(with = "Option<String>")]
    pub base_url: Option<At<String>>,
    /// A secret key (`sk_…`) or a restricted key (`rk_…`) that may read products and events,
    /// as `${VAR}` (a key written in the config is refused).
    #[schemars(with = "Option<String>")]
    pub key: Option<At<String>>,
    /// A file holding the key (for secrets mounted as files).
    #[schemars(with = "Option<String>")]
    pub key_file: Option<At<String>>,
    /// What is read: `products` (the default and, for now, the only one), each with its
    /// default price.
    #[schemars(with = "Option<String>")]
    pub object: Option<At<String>>,
    /// Requests per second this app may spend (default: Stripe's rate for the key's mode, 25
    /// in test mode and 100 live); lower it to leave room for other apps on the account, or
    /// raise a test-mode key's to an account's own limit.
    #[schemars(with = "Option<u64>", range(min = 1, max = 100))]
    pub requests_per_second: Option<At<u64>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawSqlSource {
    /// `sqlite://PATH`, `postgres://USER:${PASSWORD}@HOST/DB`, `mysql://…`, or `${VAR}`.
    #[schemars(with = "Option<String>")]
    pub url: Option<At<String>>,
    /// A file holding the URL (for secrets mounted as files).
    #[schemars(with = "Option<String>")]
    pub url_file: Option<At<String>>,
    /// The table to read (or give `query`).
    #[schemars(with = "Option<String>")]
    pub table: Option<At<String>>,
    /// A SELECT to read, wrapped as a derived table (or give `table`).
    #[schemars(with = "Option<String>")]
    pub query: Option<At<String>>,
    /// The column identifying a row.
    #[schemars(with = "String")]
    pub key: At<String>,
    /// The column that grows whenever a row changes (e.g. `lastmodifieddate`).
    #[schemars(with = "String")]
    pub watermark: At<String>,
    /// Rows per page (default 1000).
    #[schemars(with = "Option<u64>", range(min = 1, max = 100000))]
    pub page_size: Option<At<u64>>,
    /// How far before the cursor incremental runs start again, e.g. `5m` (default `0s`).
    #[schemars(with = "Option<String>")]
    pub overlap: Option<At<String>>,
    /// Rows whose watermark is NULL: `refuse` (default) stops a run before it starts, naming how
    /// many; `first` reads them first (by key) in full runs, then the rest.
    pub null_watermarks: Option<RawNullWatermarks>,
    /// Columns whose text may not be UTF-8 (SQLite stores any bytes), by name: `lossy` replaces
    /// what is not with U+FFFD, `bytes` reads every value as base64. Elsewhere such text makes
    /// its record a dead letter naming the field and the byte.
    #[serde(default)]
    pub text: BTreeMap<String, RawTextMode>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawTextMode {
    Lossy,
    Bytes,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawNullWatermarks {
    Refuse,
    First,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(deny_unknown_fields)]
// one value per pipeline, parsed once: the size difference costs nothing
#[allow(clippy::large_enum_variant)]
pub enum RawSink {
    /// A SQL table, upserted by key.
    Sql(RawSqlSink),
    /// HubSpot CRM objects, batch-upserted by a unique property.
    Hubspot(RawHubSpot),
    /// QuickBooks Online items of the company in `connections.quickbooks`, in batches of 30.
    Quickbooks(RawQuickBooksItems),
}

/// Records as QuickBooks items: each record's `name`, and any of `description`, `unit_amount`
/// (minor units) with `currency`, `type`, `income_account`, `sku`, `active`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawQuickBooksItems {
    /// What is written: `items` (the default and, for now, the only one).
    #[schemars(with = "Option<String>")]
    pub object: Option<At<String>>,
    /// The currency the company prices items in (its home currency; default `usd`). A record
    /// priced in another is a dead letter.
    #[schemars(with = "Option<String>")]
    pub currency: Option<At<String>>,
    /// When a record's name is held by an item no record has: `suffix` (default) makes a new
    /// item named `<name> (<record key>)`; `link` takes that item as the record's.
    pub on_name_taken: Option<RawNameTaken>,
    /// Batch calls per minute (QuickBooks allows 40 per company and app; default 40).
    #[schemars(with = "Option<u64>", range(min = 1, max = 40))]
    pub batches_per_minute: Option<At<u64>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawNameTaken {
    Suffix,
    Link,
}

/// A HubSpot source or sink: the account (URL, token, tier, budget), then what is read or written.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawHubSpot {
    /// The API's URL (default `https://api.hubapi.com`; the sandbox's `http://127.0.0.1:8787`).
    #[schemars(with = "Option<String>")]
    pub base_url: Option<At<String>>,
    /// A private app's access token, as `${VAR}` (a token written in the config is refused).
    #[schemars(with = "Option<String>")]
    pub token: Option<At<String>>,
    /// A file holding the token (for secrets mounted as files).
    #[schemars(with = "Option<String>")]
    pub token_file: Option<At<String>>,
    /// The portal's tier, which sets the budget: `free`/`starter` (100 calls per 10 s),
    /// `professional`/`enterprise` (190), `api_limit_increase` (250). Default `free`.
    pub tier: Option<RawTier>,
    /// Spend at most this many calls per 10 s (default: the tier's whole budget); leave room
    /// for other apps on the same portal.
    #[schemars(with = "Option<u64>", range(min = 1, max = 250))]
    pub calls_per_10s: Option<At<u64>>,
    /// Calls in flight at once (default 4); the budget paces them either way.
    #[schemars(with = "Option<u64>", range(min = 1, max = 32))]
    pub in_flight: Option<At<u64>>,
    /// `contacts` (default), `companies`, `deals`, `0-421` (appointments) or a custom `2-…` type.
    #[schemars(with = "Option<String>")]
    pub object: Option<At<String>>,
    /// A sink's unique property records are matched on (`email`, or e.g. `numero_asociado`);
    /// the mapped field of the same name is the record's identity.
    #[schemars(with = "Option<String>")]
    pub id_property: Option<At<String>>,
    /// A source's properties read of each object, besides `hs_object_id` and its creation and
    /// modification times (always read). Default: every property the object type has when a
    /// run starts, so one added in HubSpot is read (and becomes a column) from the next run on.
    pub properties: Option<Vec<String>>,
    /// Properties a source reading every property leaves out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Whether a source's records carry the object as HubSpot sent it, as JSON text in a
    /// `_raw` field (default true).
    #[schemars(with = "Option<bool>")]
    pub raw: Option<At<bool>>,
    /// Whether a source marks what left HubSpot once it read to the end: archived objects get
    /// `_deleted_at`, objects merged into another `_merged_into` (default true).
    #[schemars(with = "Option<bool>")]
    pub deletes: Option<At<bool>>,
    /// A source's wait for writes to show in search: objects modified this recently are left
    /// for the next run (default `30s`).
    #[schemars(with = "Option<String>")]
    pub settle: Option<At<String>>,
    /// A source reads the associations of `object`'s objects with this object type (`deals`,
    /// `0-421`, a custom object's name…) instead of the objects: one row per link and type,
    /// keyed `association_id`; a link removed in HubSpot is removed from the table.
    #[schemars(with = "Option<String>")]
    pub associations: Option<At<String>>,
    /// A source reads this object type's pipelines (`deals`, `tickets`) instead of objects: one
    /// row per stage, keyed `id` (`<pipeline>:<stage>`), read whole every run; a stage or
    /// pipeline removed in HubSpot leaves the table. (`object: owners` reads the portal's
    /// owners the same way, keyed `id`.)
    #[schemars(with = "Option<String>")]
    pub pipelines: Option<At<String>>,
    /// A source reads every value these properties of `object` had (HubSpot's
    /// `propertiesWithHistory`) instead of the objects: one row per value — `object_id`,
    /// `property`, `value`, `changed_at`, `source_type`… — keyed `id`, for the objects changed
    /// since the last run.
    pub history: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawTier {
    Free,
    Starter,
    Professional,
    Enterprise,
    ApiLimitIncrease,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawSqlSink {
    #[schemars(with = "Option<String>")]
    pub url: Option<At<String>>,
    #[schemars(with = "Option<String>")]
    pub url_file: Option<At<String>>,
    #[schemars(with = "String")]
    pub table: At<String>,
    /// The mapped field (and column) the upsert matches on.
    #[schemars(with = "String")]
    pub key: At<String>,
    /// Create the table from the first batch when it does not exist (default false).
    #[serde(default)]
    pub create_table: bool,
}

/// One transform step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(deny_unknown_fields)]
pub enum RawTransform {
    /// Keep only these fields, in this order.
    Select(Vec<String>),
    /// Rename fields: `{from: to}`.
    Rename(BTreeMap<String, String>),
    /// Set fields to fixed values.
    Constant(BTreeMap<String, serde_json::Value>),
    /// Convert fields: `{field: string|int|float|decimal|bool|date|datetime}`.
    Coerce(BTreeMap<String, RawType>),
    /// Replace coded values by labels.
    MapValues {
        field: String,
        values: BTreeMap<String, String>,
        /// What to do with a value not in `values` (default `reject`).
        #[serde(default)]
        otherwise: RawOtherwise,
    },
    /// These fields must be present and not blank.
    Require(Vec<String>),
    /// Valid email addresses (lowercased).
    Email(Vec<String>),
    /// Person names: trimmed, not empty.
    Name(Vec<String>),
    /// A number within bounds.
    Range { field: String, min: Option<f64>, max: Option<f64> },
    /// One of a list of values.
    Enum {
        field: String,
        values: Vec<String>,
        #[serde(default)]
        ignore_case: bool,
    },
    /// Costa Rica cédula (national, DIMEX, legal entity), normalized to digits.
    Cedula {
        fields: Vec<String>,
        /// Allowed kinds (default all): national, dimex, legal.
        kinds: Option<Vec<RawCedulaKind>>,
    },
    /// Costa Rica phone numbers, normalized to +506XXXXXXXX; placeholders become empty.
    Phone {
        fields: Vec<String>,
        #[serde(default)]
        placeholders: Vec<String>,
    },
    /// Beneficiary percentages: each 0–100, summing to 100 when any is present.
    Beneficiaries { fields: Vec<String> },
    /// Validate the mapped record against a JSON Schema file (path relative to this file).
    JsonSchema(String),
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawType {
    String,
    Int,
    Float,
    Decimal,
    Bool,
    Date,
    Datetime,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawOtherwise {
    #[default]
    Reject,
    Keep,
    Null,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawCedulaKind {
    National,
    Dimex,
    Legal,
}
