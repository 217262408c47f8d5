//! `StripeSource`: an account's products, each with its default price, as records.
//!
//! Stripe lists products newest first and cannot filter them by `updated`, so the two reads
//! differ. A **full read** lists every product (`starting_after` the last one of the page
//! before); its cursor, once it reaches the end, is the time it began. An **incremental read**
//! pages through the product and price events since the cursor (`/v1/events`, kept 30 days),
//! collects the products they name with the time of each one's latest event, and reads those
//! products again by id, oldest change first — so the cursor moves with the changes read, and a
//! read stopped halfway starts again where it stopped. A product whose latest event deleted it
//! (or that is gone when read) is a record of its id and `_deleted_at` only, in a page of such
//! records (a sink writes the fields a page's records have). A cursor older than the events
//! Stripe keeps cannot say what changed: the read lists everything instead, and says so in the
//! sync history. Times are Stripe's: a full read's cursor is its newest event's time, so no
//! clock of ours is compared with Stripe's, and events of that second are read again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use syncline_core::{ConnectorError, Cursor, ErrorClass, FieldType, Page, Record, Source, Value};

use super::api::{DefaultPrice, LIST_LIMIT, Product, StripeApi};
use super::config::EVENT_RETENTION;

/// List calls per page of a full read: a page of 500 products is one write and one commit.
const CALLS_PER_PAGE: usize = 5;

/// How far before our clock a full read's cursor is set when the account has no events yet
/// (then our clock is all there is, and clocks disagree).
const OVERLAP_SECS: i64 = 60;

/// A product named by events: when it last changed, and whether that change deleted it.
#[derive(Debug, Clone, Copy)]
struct Change {
    at: i64,
    deleted: bool,
}

enum Read {
    /// Nothing read yet: the cursor decides.
    Start,
    /// A full read: newest first, after `after`; `started` becomes the incremental cursor.
    Listing {
        started: i64,
        after: Option<String>,
    },
    /// An incremental read: the products to read again, oldest change first.
    Changes {
        pending: VecDeque<(String, Change)>,
    },
    Done,
}

pub struct StripeSource {
    api: Arc<StripeApi>,
    since: Option<DateTime<Utc>>,
    read: Read,
    audit: Option<String>,
}

impl StripeSource {
    /// A source of the account's products; `since` starts a read at a time (`run --since`).
    pub fn new(api: Arc<StripeApi>, since: Option<DateTime<Utc>>) -> StripeSource {
        StripeSource { api, since, read: Read::Start, audit: None }
    }

    /// How the account's calls are doing, for `/readyz`.
    pub fn health(&self) -> Vec<syncline_resilience::Health> {
        self.api.health()
    }

    /// `stripe:<account>:products`, the account asked of Stripe.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        Ok(format!("stripe:{}:products", self.api.account_id().await?))
    }

    /// The fields every record has, with their types (`metadata_<key>` fields follow the
    /// products' metadata); `id` is the key.
    pub fn fields() -> Vec<(String, FieldType)> {
        use FieldType::*;
        [
            ("id", Text),
            ("name", Text),
            ("description", Text),
            ("active", Bool),
            ("type", Text),
            ("unit_label", Text),
            ("url", Text),
            ("livemode", Bool),
            ("created", TimestampTz),
            ("updated", TimestampTz),
            ("default_price", Text),
            ("currency", Text),
            ("unit_amount", Int),
            ("unit_amount_decimal", Decimal),
            ("price_type", Text),
            ("recurring_interval", Text),
            ("recurring_interval_count", Int),
            ("metadata", Text),
            ("_deleted_at", TimestampTz),
        ]
        .into_iter()
        .map(|(name, kind)| (name.to_owned(), kind))
        .collect()
    }

    /// Whether a read from `since` covers everything after `cursor`.
    pub fn starts_at_or_before(&self, since: DateTime<Utc>, cursor: &Cursor) -> bool {
        cursor.0["since"].as_i64().is_some_and(|at| since.timestamp() <= at)
    }

    /// Whether `cursor` is one this source makes.
    pub fn check_cursor(&self, cursor: &Cursor) -> Result<(), ConnectorError> {
        match (cursor.0["since"].as_i64(), cursor.0["started"].as_i64(), cursor.0["after"].as_str()) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => Ok(()),
            _ => Err(ConnectorError::new(
                ErrorClass::Config,
                format!(
                    "{} is not a Stripe products cursor: {{\"since\": <unix seconds>}} or {{\"started\": <unix seconds>, \"after\": \"prod_…\"}}",
                    cursor.0
                ),
            )),
        }
    }

    /// Where the first page starts: the cursor (or `since`) decides between a full and an
    /// incremental read.
    async fn start(&mut self, after: Option<&Cursor>) -> Result<(), ConnectorError> {
        if let Some(cursor) = after {
            self.check_cursor(cursor)?;
        }
        let now = Utc::now().timestamp();
        let since = after.and_then(|c| c.0["since"].as_i64()).or(self.since.map(|t| t.timestamp()));
        self.read = match (after, since) {
            (Some(cursor), None) => Read::Listing {
                started: cursor.0["started"].as_i64().unwrap_or(now - OVERLAP_SECS),
                after: cursor.0["after"].as_str().map(str::to_owned),
            },
            (_, Some(since)) if since > now - EVENT_RETENTION.as_secs() as i64 + 3_600 => {
                Read::Changes { pending: self.changes_since(since).await? }
            }
            (_, Some(since)) => {
                let when = Utc.timestamp_opt(since, 0).single().map_or(since.to_string(), |t| t.to_rfc3339());
                self.audit = Some(format!("the cursor ({when}) is older than the 30 days of events Stripe keeps: every product was read"));
                Read::Listing { started: self.full_read_start(now).await?, after: None }
            }
            (None, None) => Read::Listing { started: self.full_read_start(now).await?, after: None },
        };
        Ok(())
    }

    /// The cursor a full read leaves: the newest change's time on Stripe's clock.
    async fn full_read_start(&self, now: i64) -> Result<i64, ConnectorError> {
        Ok(self.api.newest_change().await?.unwrap_or(now - OVERLAP_SECS))
    }

    /// Every product named by a product or price event since `since`, with its latest change,
    /// oldest first.
    async fn changes_since(&mut self, since: i64) -> Result<VecDeque<(String, Change)>, ConnectorError> {
        let (mut latest, mut after, mut events) = (BTreeMap::<String, Change>::new(), None::<String>, 0usize);
        loop {
            let page = self.api.change_events(since, after.as_deref()).await?;
            events += page.data.len();
            for event in &page.data {
                // newest first: the first event seen of a product is its latest
                if let Some(product) = event.product_id() {
                    latest.entry(product.to_owned()).or_insert(Change { at: event.created, deleted: event.kind == "product.deleted" });
                }
            }
            after = page.data.last().map(|e| e.id.clone());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        self.audit = Some(format!("{events} product and price events since {since} named {} products", latest.len()));
        let mut changed: Vec<(String, Change)> = latest.into_iter().collect();
        changed.sort_by_key(|(id, change)| (change.at, id.clone()));
        Ok(changed.into())
    }

    /// The next page of a full read.
    async fn list(&mut self, started: i64, mut after: Option<String>) -> Result<Option<Page>, ConnectorError> {
        let (mut records, mut more) = (Vec::new(), true);
        for _ in 0..CALLS_PER_PAGE {
            let page = self.api.products(after.as_deref()).await?;
            records.extend(page.data.iter().map(record));
            more = page.has_more;
            after = records.last().map(|r| r.key.clone());
            if !more || after.is_none() {
                break;
            }
        }
        let records = same_fields(records);
        let cursor = match (more, records.last()) {
            (true, Some(last)) => {
                self.read = Read::Listing { started, after: Some(last.key.clone()) };
                Cursor(json!({"started": started, "after": last.key}))
            }
            _ => {
                self.read = Read::Done;
                Cursor(json!({"since": started}))
            }
        };
        Ok(Some(Page { records, cursor: Some(cursor), rejected: Vec::new() }))
    }

    /// The next page of an incremental read: up to 100 changed products read again.
    async fn reread(&mut self) -> Result<Option<Page>, ConnectorError> {
        let Read::Changes { pending } = &mut self.read else { return Ok(None) };
        // a page of live products or of deleted ones, not both: each page's records have one set of fields
        let deleted = pending.front().is_some_and(|(_, c)| c.deleted);
        let alike = pending.iter().take(LIST_LIMIT).take_while(|(_, c)| c.deleted == deleted).count();
        let batch: Vec<(String, Change)> = pending.drain(..alike).collect();
        let Some(last) = batch.last().map(|(_, change)| *change) else {
            self.read = Read::Done;
            return Ok(None);
        };
        let live: Vec<&str> = batch.iter().filter(|(_, c)| !c.deleted).map(|(id, _)| id.as_str()).collect();
        let found: BTreeMap<String, Product> = if live.is_empty() {
            BTreeMap::new()
        } else {
            self.api.products_by_id(&live).await?.data.into_iter().map(|p| (p.id.clone(), p)).collect()
        };
        let (mut records, mut gone): (Vec<Record>, Vec<(String, Change)>) = (Vec::new(), Vec::new());
        for (id, change) in &batch {
            match found.get(id) {
                Some(product) => records.push(record(product)),
                // deleted by its latest event, or since: gone from Stripe
                None => gone.push((id.clone(), Change { at: change.at, deleted: true })),
            }
        }
        if deleted {
            let records = gone
                .into_iter()
                .map(|(id, c)| Record::new(id.clone()).with("id", id.as_str()).with("_deleted_at", timestamp(c.at)))
                .collect();
            return Ok(Some(Page { records, cursor: Some(Cursor(json!({"since": last.at}))), rejected: Vec::new() }));
        }
        // deleted since its event was read: it follows in a page of deleted ones, and this
        // page's cursor stays at or before it
        let cursor_at = gone.iter().map(|(_, c)| c.at).min().unwrap_or(last.at);
        if let Read::Changes { pending } = &mut self.read {
            gone.into_iter().rev().for_each(|entry| pending.push_front(entry));
        }
        if records.is_empty() {
            return Box::pin(self.reread()).await;
        }
        Ok(Some(Page { records: same_fields(records), cursor: Some(Cursor(json!({"since": cursor_at}))), rejected: Vec::new() }))
    }
}

impl StripeSource {
    /// These products as they are now (≤ 100 ids), in the order asked: one gone from Stripe is a
    /// record of its id and `_deleted_at` (now). What a flow reads for the products its events
    /// name, so it writes the latest state whatever order the events came in.
    pub async fn read_ids(&self, ids: &[&str]) -> Result<Vec<Record>, ConnectorError> {
        let found: BTreeMap<String, Product> = self.api.products_by_id(ids).await?.data.into_iter().map(|p| (p.id.clone(), p)).collect();
        let now = Utc::now().timestamp();
        Ok(ids
            .iter()
            .map(|id| match found.get(*id) {
                Some(product) => record(product),
                None => Record::new(*id).with("id", *id).with("_deleted_at", timestamp(now)),
            })
            .collect())
    }
}

/// Every record of a page with the same fields: the metadata keys any of them has, null
/// where a product lacks one.
fn same_fields(mut records: Vec<Record>) -> Vec<Record> {
    let keys: std::collections::BTreeSet<std::sync::Arc<str>> =
        records.iter().flat_map(|r| r.fields.iter().map(|(name, _)| name.clone())).filter(|n| n.starts_with("metadata_")).collect();
    for record in &mut records {
        for key in &keys {
            if record.get(key).is_none() {
                record.set_shared(key, Value::Null);
            }
        }
    }
    records
}

fn timestamp(seconds: i64) -> Value {
    Utc.timestamp_opt(seconds, 0).single().map_or(Value::Null, Value::TimestampTz)
}

fn text(value: &Option<String>) -> Value {
    value.as_deref().map_or(Value::Null, |v| Value::Text(v.into()))
}

/// A product as a record: its fields, its default price's, and each metadata key as
/// `metadata_<key>`.
fn record(product: &Product) -> Record {
    let mut record = Record::new(product.id.clone())
        .with("id", product.id.as_str())
        .with("name", product.name.as_str())
        .with("description", text(&product.description))
        .with("active", Value::Bool(product.active))
        .with("type", text(&product.kind))
        .with("unit_label", text(&product.unit_label))
        .with("url", text(&product.url))
        .with("livemode", Value::Bool(product.livemode))
        .with("created", timestamp(product.created))
        .with("updated", timestamp(product.updated));
    let price = match &product.default_price {
        Some(DefaultPrice::Price(price)) => Some(price),
        _ => None,
    };
    let price_id = match &product.default_price {
        Some(DefaultPrice::Price(price)) => Some(price.id.clone()),
        Some(DefaultPrice::Id(id)) => Some(id.clone()),
        None => None,
    };
    record = record
        .with("default_price", text(&price_id))
        .with("currency", price.map_or(Value::Null, |p| Value::Text(p.currency.as_str().into())))
        .with("unit_amount", price.and_then(|p| p.unit_amount).map_or(Value::Null, Value::Int))
        .with("unit_amount_decimal", price.and_then(|p| p.unit_amount_decimal.clone()).map_or(Value::Null, |d| Value::Decimal(d.into())))
        .with("price_type", price.map_or(Value::Null, |p| Value::Text(p.kind.as_str().into())))
        .with(
            "recurring_interval",
            price.and_then(|p| p.recurring.as_ref()).map_or(Value::Null, |r| Value::Text(r.interval.as_str().into())),
        )
        .with("recurring_interval_count", price.and_then(|p| p.recurring.as_ref()?.interval_count).map_or(Value::Null, Value::Int))
        .with("metadata", serde_json::to_string(&product.metadata).unwrap_or_default());
    for (key, value) in &product.metadata {
        record.set(&format!("metadata_{key}"), Value::Text(value.as_str().into()));
    }
    record
}

impl Source for StripeSource {
    async fn next_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        if matches!(self.read, Read::Start) {
            self.start(after).await?;
        }
        match &self.read {
            Read::Start | Read::Done => Ok(None),
            Read::Listing { started, after } => {
                let (started, after) = (*started, after.clone());
                self.list(started, after).await
            }
            Read::Changes { .. } => self.reread().await,
        }
    }

    fn cursor_after(&self, record: &Record) -> Option<Cursor> {
        match &self.read {
            Read::Listing { started, .. } => Some(Cursor(json!({"started": started, "after": record.key}))),
            _ => None,
        }
    }

    fn audit(&self) -> Option<String> {
        self.audit.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_becomes_a_record_with_its_price_and_metadata() {
        let product: Product = serde_json::from_value(json!({
            "id": "prod_1", "name": "Gold", "description": null, "active": true, "created": 1_700_000_000, "updated": 1_700_000_100,
            "metadata": {"sku": "G-1"}, "type": "service",
            "default_price": {"id": "price_1", "currency": "usd", "unit_amount": 2000, "unit_amount_decimal": "2000", "type": "recurring",
                              "recurring": {"interval": "month", "interval_count": 1}}
        }))
        .unwrap();
        let record = record(&product);
        assert_eq!(record.key, "prod_1");
        assert_eq!(record.get("unit_amount"), Some(&Value::Int(2000)));
        assert_eq!(record.get("recurring_interval"), Some(&Value::Text("month".into())));
        assert_eq!(record.get("metadata_sku"), Some(&Value::Text("G-1".into())));
        assert_eq!(record.get("description"), Some(&Value::Null));
        assert!(matches!(record.get("created"), Some(Value::TimestampTz(t)) if t.timestamp() == 1_700_000_000));
    }
}
