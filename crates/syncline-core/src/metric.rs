//! Every Prometheus metric syncline exports, named once (DESIGN.md). Recording goes through the
//! `metrics` facade: a no-op until a binary installs a recorder (`syncline serve` installs the
//! Prometheus one behind `/metrics`), so libraries and tests pay nothing for it.
//!
//! The API metrics keep the names of the seed users' Python clients
//! (`hubspot_api_requests_total{operation,status}`, `hubspot_api_request_duration_seconds`,
//! `manychat_api_…`) so their dashboards keep working.

/// API requests by `operation` and `status` (the HTTP status, or `unreachable`), per service.
pub const HUBSPOT_REQUESTS: &str = "hubspot_api_requests_total";
pub const HUBSPOT_DURATION: &str = "hubspot_api_request_duration_seconds";
pub const MANYCHAT_REQUESTS: &str = "manychat_api_requests_total";
pub const MANYCHAT_DURATION: &str = "manychat_api_request_duration_seconds";
pub const STRIPE_REQUESTS: &str = "stripe_api_requests_total";
pub const STRIPE_DURATION: &str = "stripe_api_request_duration_seconds";
pub const QUICKBOOKS_REQUESTS: &str = "quickbooks_api_requests_total";
pub const QUICKBOOKS_DURATION: &str = "quickbooks_api_request_duration_seconds";
/// Webhook deliveries by `source` and `outcome` (`stored`, `duplicate`, `unauthorized`, …).
pub const WEBHOOKS: &str = "syncline_webhooks_total";
/// Deliveries refused for their signature, by `source`.
pub const SIGNATURE_FAILURES: &str = "syncline_webhook_signature_failures_total";
/// Inbox events by `source` and `status`, and the age of the oldest pending one, at scrape time.
pub const INBOX_EVENTS: &str = "syncline_inbox_events";
pub const INBOX_OLDEST_PENDING_AGE: &str = "syncline_inbox_oldest_pending_age_seconds";
/// Flow runs by `flow` and `outcome` (`sent`, `already_sent`, `filtered`, `retried`, `dead`…).
pub const FLOW_RUNS: &str = "syncline_flow_runs_total";
/// How long a flow took on one event, by `flow` (a `pipeline` step's sync of one record).
pub const FLOW_DURATION: &str = "syncline_flow_duration_seconds";
/// Circuit breaker state by `policy`: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "syncline_breaker_state";
/// Calls held back by a rate budget, by `policy`, and how long they waited.
pub const RATE_LIMIT_WAITS: &str = "syncline_rate_limit_waits_total";
pub const RATE_LIMIT_WAIT: &str = "syncline_rate_limit_wait_seconds";
/// 429 answers received, by `policy`.
pub const RATE_LIMITED: &str = "syncline_rate_limited_total";

/// A service whose API calls are measured: its name in messages and its two metrics. Each
/// connector's `api.rs` has one; `SERVICES` lists them for `describe_and_initialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub requests: &'static str,
    pub duration: &'static str,
}

impl Service {
    pub const HUBSPOT: Service = Service { name: "HubSpot", requests: HUBSPOT_REQUESTS, duration: HUBSPOT_DURATION };
    pub const MANYCHAT: Service = Service { name: "ManyChat", requests: MANYCHAT_REQUESTS, duration: MANYCHAT_DURATION };
    pub const STRIPE: Service = Service { name: "Stripe", requests: STRIPE_REQUESTS, duration: STRIPE_DURATION };
    pub const QUICKBOOKS: Service = Service { name: "QuickBooks", requests: QUICKBOOKS_REQUESTS, duration: QUICKBOOKS_DURATION };
}

/// Every service syncline calls.
pub const SERVICES: [Service; 4] = [Service::HUBSPOT, Service::MANYCHAT, Service::STRIPE, Service::QUICKBOOKS];

/// Records one API request: its operation, status (HTTP code or `unreachable`) and duration.
pub fn api_request(service: Service, operation: &str, status: &str, seconds: f64) {
    metrics::counter!(service.requests, "operation" => operation.to_owned(), "status" => status.to_owned()).increment(1);
    metrics::histogram!(service.duration, "operation" => operation.to_owned()).record(seconds);
}

/// Adds `n` to a counter with one label pair besides `outcome` (webhooks by source, flow runs
/// by flow).
pub fn outcome(name: &'static str, label: &'static str, value: &str, outcome: &'static str, n: u64) {
    metrics::counter!(name, label => value.to_owned(), "outcome" => outcome).increment(n);
}

/// A call of `policy` waited `seconds` for its rate budget.
pub fn rate_limit_wait(policy: &str, seconds: f64) {
    metrics::counter!(RATE_LIMIT_WAITS, "policy" => policy.to_owned()).increment(1);
    metrics::histogram!(RATE_LIMIT_WAIT, "policy" => policy.to_owned()).record(seconds);
}

/// A call of `policy` was answered 429.
pub fn rate_limited(policy: &str) {
    metrics::counter!(RATE_LIMITED, "policy" => policy.to_owned()).increment(1);
}

/// `policy`'s breaker is now in the state `gauge` stands for (0 closed, 1 half-open, 2 open).
pub fn breaker_state(policy: &str, gauge: f64) {
    metrics::gauge!(BREAKER_STATE, "policy" => policy.to_owned()).set(gauge);
}

/// Webhook outcomes and flow outcomes, as the counters label them.
pub const WEBHOOK_OUTCOMES: [&str; 7] = ["stored", "duplicate", "unauthorized", "malformed", "too_large", "too_slow", "unavailable"];
pub const FLOW_OUTCOMES: [&str; 10] =
    ["sent", "already_sent", "done", "created", "updated", "unchanged", "filtered", "skipped_stale", "retried", "dead"];

/// Gives every metric its `# HELP` text, and starts the series of the configured webhook
/// sources and flows at zero, so a dashboard sees them before the first event.
pub fn describe_and_initialize(sources: &[&str], flows: &[&str]) {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for service in SERVICES {
        let name = service.name;
        describe_counter!(
            service.requests,
            format!("{name} API requests (every attempt) by operation and status (HTTP code or unreachable)")
        );
        describe_histogram!(service.duration, metrics::Unit::Seconds, format!("{name} API request duration by operation"));
    }
    describe_counter!(WEBHOOKS, "Webhook deliveries by source and outcome");
    describe_counter!(SIGNATURE_FAILURES, "Webhook deliveries refused for their signature, by source");
    describe_gauge!(INBOX_EVENTS, "Inbox events by source and status, read from the state store at scrape time");
    describe_gauge!(INBOX_OLDEST_PENDING_AGE, metrics::Unit::Seconds, "Age of the oldest pending inbox event, by source");
    describe_counter!(FLOW_RUNS, "Flow runs by flow and outcome");
    describe_histogram!(FLOW_DURATION, metrics::Unit::Seconds, "How long a flow took on one event, by flow");
    describe_gauge!(BREAKER_STATE, "Circuit breaker state by policy: 0 closed, 1 half-open, 2 open");
    describe_counter!(RATE_LIMIT_WAITS, "Calls held back by a rate budget, by policy");
    describe_histogram!(RATE_LIMIT_WAIT, metrics::Unit::Seconds, "How long calls waited for their rate budget, by policy");
    describe_counter!(RATE_LIMITED, "429 answers received, by policy");
    for source in sources {
        for outcome in WEBHOOK_OUTCOMES {
            metrics::counter!(WEBHOOKS, "source" => source.to_string(), "outcome" => outcome).increment(0);
        }
        metrics::counter!(SIGNATURE_FAILURES, "source" => source.to_string()).increment(0);
    }
    for flow in flows {
        for outcome in FLOW_OUTCOMES {
            metrics::counter!(FLOW_RUNS, "flow" => flow.to_string(), "outcome" => outcome).increment(0);
        }
    }
}
