//! `ItemSink`: records become QuickBooks items, in batch calls of up to 30 operations.
//!
//! A record carries `name`, and any of `description`, `unit_amount` (minor units) with its
//! `currency`, `type` (default `Service`), `income_account` (an account id), `sku` and
//! `active`. Which item stands for a record is decided by one rule, the same every time: first
//! the item stored for the record's key (kept in the state store, so a renamed product finds its
//! item); then an item of the same name (names are unique in QuickBooks, without case) that no
//! other record has — linked to the record (`on_name_taken: link`) or left alone and a new item
//! made with the record's key after its name (`suffix`); else a new item. So no record ever
//! makes a second item. An item whose fields already match is not written. QuickBooks' own
//! answers are followed: a name taken since the items were read (6240) gets the key suffix, a
//! `SyncToken` gone stale (5010, someone edited the item) has the item read again and the change
//! applied to it; anything else refused is a dead letter with QuickBooks' words.
//!
//! A record with `_deleted_at` (its product deleted in Stripe) makes its item inactive:
//! QuickBooks keeps items. A create is kept in the link vault as an intent before it is sent
//! (`pending:<name>`), so a process killed between QuickBooks' answer and storing the new id
//! takes that item as the record's when it runs again, instead of making a second one. A write
//! of one operation alone (a webhook's change) is a single call within the 500 a minute,
//! rather than a batch call out of the 40; a large write sends a share of its operations as
//! single writes beside the batch calls, so both budgets are spent at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use syncline_core::{ConnectorError, ErrorClass, Outcome, Record, RecordError, Sink};

use super::api::QuickBooksApi;

/// QuickBooks' most operations per batch call.
pub const BATCH_OPERATIONS: usize = 30;
/// A call's answers, one per operation, with the call's duration in ms.
type Answers = Vec<(Value, u64)>;

/// Single writes in flight beside the batch calls (QuickBooks takes 10 requests at once).
const SINGLES_IN_FLIGHT: usize = 8;
/// QuickBooks' longest item name.
const NAME_MAX: usize = 100;

/// Which objects of a target service stand for which record keys, kept between runs (the
/// state store).
pub trait LinkVault: Send + Sync {
    fn load<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, ConnectorError>>;
    fn save<'a>(&'a self, target: &'a str, links: &'a [(String, String)]) -> BoxFuture<'a, Result<(), ConnectorError>>;
}

/// Where the sink tells what it decided for each record it was given — `quickbooks.item.`
/// `created`, `updated` (with each changed field's old and new value), `unchanged`, `conflict`
/// or `dead_letter` (with QuickBooks' words) — as (kind, record key, detail): the state
/// store's audit trail, which `syncline events` reads.
pub trait Ledger: Send + Sync {
    fn record<'a>(&'a self, entries: &'a [(String, String, Value)]) -> BoxFuture<'a, Result<(), ConnectorError>>;
}

/// What to do when a record's name is held by an item no record has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTaken {
    /// Make a new item named `<name> (<key>)`.
    Suffix,
    /// Take the item as the record's.
    Link,
}

#[derive(Debug, Clone)]
pub struct ItemSettings {
    /// The currency items are priced in (the company's home currency), lowercase.
    pub currency: String,
    pub on_name_taken: NameTaken,
}

/// How a create is kept in the [`LinkVault`] before it is sent: `pending:<name>`. A process
/// killed between QuickBooks' answer and storing the item's id finds, when it starts again, the
/// item of that name and takes it as the record's, rather than making a second one.
const PENDING: &str = "pending:";

/// The items as last read or written, and whose they are.
struct Known {
    items: HashMap<String, Value>,
    by_name: HashMap<String, String>,
    by_key: HashMap<String, String>,
    linked: HashSet<String>,
    /// Creates sent but not yet answered when last seen: record key → item name, lowercase.
    pending: HashMap<String, String>,
}

impl Known {
    fn keep(&mut self, item: Value) {
        let id = item["Id"].as_str().unwrap_or_default().to_owned();
        if let Some(old) = self.items.get(&id).and_then(|i| i["Name"].as_str()) {
            self.by_name.remove(&old.to_lowercase());
        }
        self.by_name.insert(item["Name"].as_str().unwrap_or_default().to_lowercase(), id.clone());
        self.items.insert(id, item);
    }

    fn link(&mut self, key: &str, id: &str) {
        match id.strip_prefix(PENDING) {
            Some(name) => {
                self.pending.insert(key.to_owned(), name.to_owned());
            }
            None => {
                self.pending.remove(key);
                self.by_key.insert(key.to_owned(), id.to_owned());
                self.linked.insert(id.to_owned());
            }
        }
    }

    /// The item that is `key`'s: the one stored for it (`true`), or the unlinked one its create
    /// was to make, when a crash left only the intent (`false`: not linked yet).
    fn own(&self, key: &str) -> Option<(&Value, bool)> {
        if let Some(item) = self.by_key.get(key).and_then(|id| self.items.get(id)) {
            return Some((item, true));
        }
        let name = self.pending.get(key)?;
        let item = self.by_name.get(name).and_then(|id| self.items.get(id))?;
        (!self.linked.contains(item["Id"].as_str().unwrap_or_default())).then_some((item, false))
    }
}

pub struct ItemSink {
    api: Arc<QuickBooksApi>,
    links: Arc<dyn LinkVault>,
    ledger: Arc<dyn Ledger>,
    /// This write's ledger entries.
    entries: Vec<(String, String, Value)>,
    settings: ItemSettings,
    target: String,
    known: Option<Known>,
}

/// One record's operation, as sent.
struct Operation {
    index: usize,
    key: String,
    body: Value,
    create: bool,
    /// Whether a 6240 or 5010 was already answered once.
    retried: bool,
}

impl Operation {
    /// The same operation with a new body, sent once more.
    fn again(&self, body: Value) -> Operation {
        Operation { index: self.index, key: self.key.clone(), body, create: self.create, retried: true }
    }
}

impl ItemSink {
    pub fn new(
        api: Arc<QuickBooksApi>,
        links: Arc<dyn LinkVault>,
        ledger: Arc<dyn Ledger>,
        realm_id: &str,
        settings: ItemSettings,
    ) -> ItemSink {
        ItemSink { api, links, ledger, entries: Vec::new(), settings, target: format!("quickbooks:{realm_id}/items"), known: None }
    }

    fn note(&mut self, decision: &str, key: &str, detail: Value) {
        self.entries.push((format!("quickbooks.item.{decision}"), key.to_owned(), detail));
    }

    /// How the company's calls and tokens are doing, for `/readyz`.
    pub fn health(&self) -> Vec<syncline_resilience::Health> {
        self.api.health()
    }

    /// `quickbooks:<realm>/items`.
    pub fn identity(&self) -> String {
        self.target.clone()
    }

    async fn known(&mut self) -> Result<&mut Known, ConnectorError> {
        if self.known.is_none() {
            let links = self.links.load(&self.target).await?;
            let mut known = Known {
                items: HashMap::new(),
                by_name: HashMap::new(),
                by_key: HashMap::new(),
                linked: HashSet::new(),
                pending: HashMap::new(),
            };
            for item in self.api.all("Item").await? {
                known.keep(item);
            }
            for (key, id) in links {
                known.link(&key, &id);
            }
            self.known = Some(known);
        }
        Ok(self.known.as_mut().expect("read above"))
    }

    /// The item fields a record asks for, or why it cannot be an item.
    fn wanted(&self, record: &Record) -> Result<Map<String, Value>, RecordError> {
        let text = |name: &str| record.get(name).and_then(|v| v.as_text()).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let name = text("name").ok_or_else(|| RecordError::data("name", "quickbooks_item", "an item needs a name"))?;
        let mut fields = Map::new();
        fields.insert("Name".into(), json!(name));
        fields.insert("Type".into(), json!(text("type").unwrap_or_else(|| "Service".into())));
        if let Some(description) = text("description") {
            fields.insert("Description".into(), json!(description));
        }
        if let Some(sku) = text("sku") {
            fields.insert("Sku".into(), json!(sku));
        }
        if let Some(account) = text("income_account") {
            fields.insert("IncomeAccountRef".into(), json!({"value": account}));
        }
        if let Some(active) = record.get("active").and_then(|v| v.as_text()) {
            fields.insert("Active".into(), json!(active == "true"));
        }
        if let Some(amount) = text("unit_amount") {
            let currency = text("currency").unwrap_or_else(|| self.settings.currency.clone()).to_lowercase();
            if currency != self.settings.currency {
                let message = format!(
                    "the price is in {}, but the company's items are priced in {}: QuickBooks items take the home currency only",
                    currency.to_uppercase(),
                    self.settings.currency.to_uppercase()
                );
                return Err(RecordError::data("currency", "quickbooks_currency", message));
            }
            let minor: i64 = amount
                .parse()
                .map_err(|_| RecordError::data("unit_amount", "quickbooks_item", format!("{amount:?} is not an amount in minor units")))?;
            let exponent = if ZERO_DECIMAL.contains(&currency.as_str()) { 0 } else { 2 };
            fields.insert("UnitPrice".into(), json!(minor as f64 / 10f64.powi(exponent)));
        }
        Ok(fields)
    }
}

/// Whether the record says its source object is gone (`_deleted_at` set).
fn is_deleted(record: &Record) -> bool {
    record.get("_deleted_at").is_some_and(|v| !matches!(v, syncline_core::Value::Null))
}

/// Currencies without minor units (Stripe's list).
const ZERO_DECIMAL: [&str; 16] =
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];

/// The fields of `wanted` that `item` does not already have.
fn changes(item: &Value, wanted: &Map<String, Value>) -> Map<String, Value> {
    wanted
        .iter()
        .filter(|(field, value)| match (field.as_str(), &item[field.as_str()]) {
            ("IncomeAccountRef", current) => current["value"] != value["value"],
            ("UnitPrice", current) => current.as_f64().unwrap_or_default() != value.as_f64().unwrap_or_default(),
            (_, current) => current != *value,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `<name> (<key>)`, cut to QuickBooks' 100 characters from the name's end.
fn suffixed(name: &str, key: &str) -> String {
    let tail = format!(" ({key})");
    let keep = NAME_MAX.saturating_sub(tail.chars().count());
    format!("{}{tail}", name.chars().take(keep).collect::<String>())
}

impl ItemSink {
    /// The item that stands for `key`: the one stored for it, or (`link`) the unlinked one of
    /// its name.
    fn item_of<'k>(&self, known: &'k Known, key: &str, name: &str) -> Option<&'k Value> {
        let own = known.own(key).map(|(item, _)| item);
        let holder = known.by_name.get(&name.to_lowercase()).and_then(|id| known.items.get(id));
        own.or(holder
            .filter(|i| !known.linked.contains(i["Id"].as_str().unwrap_or_default()) && self.settings.on_name_taken == NameTaken::Link))
    }

    /// A deleted record's operation: its item made inactive (None: it has no item, or an
    /// inactive one). QuickBooks keeps items; it never deletes them.
    fn deactivation(&self, index: usize, key: &str) -> Option<Operation> {
        let (item, _) = self.known.as_ref().expect("read before planning").own(key)?;
        (item["Active"] != false).then(|| Operation {
            index,
            key: key.to_owned(),
            body: json!({"Id": item["Id"], "SyncToken": item["SyncToken"], "sparse": true, "Active": false}),
            create: false,
            retried: false,
        })
    }

    /// The operation for one record (None: the item already matches).
    fn plan(&self, known: &Known, index: usize, key: &str, mut wanted: Map<String, Value>) -> Option<Operation> {
        let (own, confirmed) = known.own(key).map_or((None, false), |(item, confirmed)| (Some(item), confirmed));
        // an item made with the key after its name (its own was taken) keeps that name
        let suffixed_name = suffixed(wanted["Name"].as_str().unwrap_or_default(), key);
        if own.is_some_and(|item| item["Name"] == suffixed_name.as_str()) {
            wanted.insert("Name".into(), json!(suffixed_name));
        }
        let name = wanted["Name"].as_str().unwrap_or_default().to_lowercase();
        let holder = known.by_name.get(&name).and_then(|id| known.items.get(id)).filter(|i| Some(*i) != own);
        match (self.item_of(known, key, &name), holder) {
            (Some(item), _) => {
                let changed = changes(item, &wanted);
                let adopting = !confirmed;
                (!changed.is_empty() || adopting).then(|| {
                    let mut body = changed;
                    body.insert("Id".into(), item["Id"].clone());
                    body.insert("SyncToken".into(), item["SyncToken"].clone());
                    body.insert("sparse".into(), json!(true));
                    Operation { index, key: key.to_owned(), body: Value::Object(body), create: false, retried: false }
                })
            }
            (None, Some(_)) => {
                let mut body = wanted;
                let name = suffixed(body["Name"].as_str().unwrap_or_default(), key);
                body.insert("Name".into(), json!(name));
                Some(Operation { index, key: key.to_owned(), body: Value::Object(body), create: true, retried: true })
            }
            (None, None) => Some(Operation { index, key: key.to_owned(), body: Value::Object(wanted), create: true, retried: false }),
        }
    }

    /// Sends the operations and answers each with its outcome and the links it made; returns
    /// the ones QuickBooks asks to send again (a name taken, a stale token). Creates are kept
    /// as intents first (see [`PENDING`]).
    async fn send(
        &mut self,
        operations: Vec<Operation>,
        outcomes: &mut [Option<Outcome>],
        links: &mut Vec<(String, String)>,
    ) -> Result<Vec<Operation>, ConnectorError> {
        let intents: Vec<(String, String)> = operations
            .iter()
            .filter(|op| op.create)
            .map(|op| (op.key.clone(), format!("{PENDING}{}", op.body["Name"].as_str().unwrap_or_default().to_lowercase())))
            .collect();
        if !intents.is_empty() {
            self.links.save(&self.target, &intents).await?;
        }
        let answers = self.call(&operations).await?;
        let mut again = Vec::new();
        for (op, (answer, ms)) in operations.iter().zip(answers) {
            if let Some(retry) = self.answered(op, answer, ms, outcomes, links).await? {
                again.push(retry);
            }
        }
        Ok(again)
    }

    /// Every operation's answer, in order, with its call's duration. One operation alone (a
    /// webhook's change) is a single write. More are split so both of QuickBooks' budgets run
    /// full at once: most in batch calls of 30 (40 a minute), a share as single writes within
    /// the rest of the 500 requests a minute ([`QuickBooksApi::singles_for`]).
    async fn call(&self, operations: &[Operation]) -> Result<Answers, ConnectorError> {
        use futures_util::{StreamExt, TryStreamExt};
        let (single, batched) = operations.split_at(self.api.singles_for(operations.len()));
        // owned bodies and client handles: the calls' futures borrow nothing
        let single_writes: Vec<_> = single
            .iter()
            .map(|op| {
                let (api, body) = (self.api.clone(), op.body.clone());
                async move {
                    let started = std::time::Instant::now();
                    let answer = api.write_item(&body).await?;
                    Ok::<_, ConnectorError>(vec![(answer, started.elapsed().as_millis() as u64)])
                }
            })
            .collect();
        let batch_calls = batched.chunks(BATCH_OPERATIONS).map(|chunk| {
            let requests: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(b, op)| json!({"bId": b.to_string(), "operation": if op.create { "create" } else { "update" }, "Item": op.body}))
                .collect();
            let api = self.api.clone();
            async move {
                let operations = requests.len();
                let started = std::time::Instant::now();
                let answers = api.batch(requests).await?;
                let ms = started.elapsed().as_millis() as u64;
                let answer = |b: usize| answers.iter().find(|a| a["bId"] == b.to_string().as_str()).cloned().unwrap_or(Value::Null);
                Ok::<_, ConnectorError>((0..operations).map(|b| (answer(b), ms)).collect())
            }
        });
        let batch_calls: Vec<_> = batch_calls.collect();
        let single_writes = futures_util::stream::iter(single_writes).buffered(SINGLES_IN_FLIGHT);
        let batch_calls = futures_util::stream::iter(batch_calls).buffered(1);
        let (single, batched): (Vec<Answers>, Vec<Answers>) =
            futures_util::try_join!(single_writes.try_collect(), batch_calls.try_collect())?;
        Ok(single.into_iter().chain(batched).flatten().collect())
    }

    async fn answered(
        &mut self,
        op: &Operation,
        answer: Value,
        ms: u64,
        outcomes: &mut [Option<Outcome>],
        links: &mut Vec<(String, String)>,
    ) -> Result<Option<Operation>, ConnectorError> {
        let known = self.known.as_mut().expect("read before writing");
        if answer["Item"].is_object() {
            let id = answer["Item"]["Id"].as_str().unwrap_or_default().to_owned();
            let before = known.items.get(&id).cloned().unwrap_or(Value::Null);
            let fields = op.body.as_object().into_iter().flatten().filter(|(k, _)| !["Id", "SyncToken", "sparse"].contains(&k.as_str()));
            let changed: Map<String, Value> =
                fields.map(|(k, v)| (k.clone(), if op.create { v.clone() } else { json!([before[k.as_str()], v]) })).collect();
            known.keep(answer["Item"].clone());
            if known.by_key.get(&op.key) != Some(&id) {
                known.link(&op.key, &id);
                links.push((op.key.clone(), id.clone()));
            }
            outcomes[op.index] = Some(if op.create { Outcome::Created } else { Outcome::Updated });
            let decision = if op.create { "created" } else { "updated" };
            self.note(decision, &op.key, json!({"item": id, "fields": changed, "ms": ms}));
            return Ok(None);
        }
        let error = &answer["Fault"]["Error"][0];
        let code = error["code"].as_str().unwrap_or_default();
        let words = format!(
            "QuickBooks {code}: {}: {}",
            error["Message"].as_str().unwrap_or("no answer for this operation"),
            error["Detail"].as_str().unwrap_or_default()
        );
        match (code, op.retried) {
            ("6240", false) if op.create => {
                let mut body = op.body.clone();
                body["Name"] = json!(suffixed(body["Name"].as_str().unwrap_or_default(), &op.key));
                Ok(Some(op.again(body)))
            }
            ("5010", false) => {
                // edited in QuickBooks since it was read: read it again and apply the change to it
                let id = op.body["Id"].as_str().unwrap_or_default().to_owned();
                let page = self.api.query("Item", Some(&format!("Id = '{id}' AND Active IN (true, false)")), 1).await?;
                let known = self.known.as_mut().expect("read before writing");
                if let Some(item) = page.objects.into_iter().next() {
                    known.keep(item.clone());
                    let mut body = op.body.clone();
                    body["SyncToken"] = item["SyncToken"].clone();
                    return Ok(Some(op.again(body)));
                }
                self.note("dead_letter", &op.key, json!({"code": code, "message": words, "ms": ms}));
                outcomes[op.index] = Some(Outcome::Rejected(RecordError::data("-", "quickbooks_item", words)));
                Ok(None)
            }
            _ => {
                if op.create {
                    // the intent is void: no item was made
                    links.push((op.key.clone(), String::new()));
                }
                let class = if code == "6240" || code == "5010" { ErrorClass::Conflict } else { ErrorClass::Data };
                let field = error["element"].as_str().filter(|e| !e.is_empty()).unwrap_or("-").to_owned();
                let decision = if class == ErrorClass::Conflict { "conflict" } else { "dead_letter" };
                self.note(decision, &op.key, json!({"code": code, "field": field, "message": words, "ms": ms}));
                outcomes[op.index] = Some(Outcome::Rejected(RecordError { class, field, rule: "quickbooks_item".into(), message: words }));
                Ok(None)
            }
        }
    }
}

/// An item as the record that made it (for dry runs and `reconcile`): its fields under the
/// record's names, the price in minor units, the key's suffix taken off the name.
fn record_of(item: &Value, key: &str, currency: &str) -> Record {
    let text = |value: &Value| value.as_str().map_or(syncline_core::Value::Null, |t| syncline_core::Value::Text(t.into()));
    let name = item["Name"].as_str().unwrap_or_default();
    let name = name.strip_suffix(&format!(" ({key})")).unwrap_or(name);
    let exponent = if ZERO_DECIMAL.contains(&currency) { 0 } else { 2 };
    let amount = item["UnitPrice"]
        .as_f64()
        .map_or(syncline_core::Value::Null, |p| syncline_core::Value::Int((p * 10f64.powi(exponent)).round() as i64));
    Record::new(key)
        .with("id", key)
        .with("name", name)
        .with("description", text(&item["Description"]))
        .with("unit_amount", amount)
        .with("currency", currency)
        .with("type", text(&item["Type"]))
        .with("income_account", text(&item["IncomeAccountRef"]["value"]))
        .with("sku", text(&item["Sku"]))
        .with("active", syncline_core::Value::Bool(item["Active"] != false))
}

impl Sink for ItemSink {
    async fn current(&mut self, batch: &[Record]) -> Result<Option<Vec<Record>>, ConnectorError> {
        self.known().await?;
        let known = self.known.as_ref().expect("read above");
        let current = batch
            .iter()
            .filter_map(|record| {
                let name = record.get("name").and_then(|v| v.as_text()).map(|t| t.trim().to_owned()).unwrap_or_default();
                self.item_of(known, &record.key, &name).map(|item| record_of(item, &record.key, &self.settings.currency))
            })
            .collect();
        Ok(Some(current))
    }

    async fn write(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, ConnectorError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let wanted: Vec<Result<Map<String, Value>, RecordError>> = batch.iter().map(|r| self.wanted(r)).collect();
        self.known().await?;
        let mut operations = Vec::new();
        for (index, (record, wanted)) in batch.iter().zip(wanted).enumerate() {
            if is_deleted(record) {
                match self.deactivation(index, &record.key) {
                    Some(operation) => operations.push(operation),
                    None => {
                        self.note("unchanged", &record.key, json!({"deleted": true}));
                        outcomes[index] = Some(Outcome::Unchanged);
                    }
                }
                continue;
            }
            match wanted {
                Err(error) => {
                    self.note("dead_letter", &record.key, json!({"field": error.field, "message": error.message}));
                    outcomes[index] = Some(Outcome::Rejected(error));
                }
                Ok(wanted) => match self.plan(self.known.as_ref().expect("read above"), index, &record.key, wanted) {
                    Some(operation) => operations.push(operation),
                    None => {
                        self.note("unchanged", &record.key, json!({}));
                        outcomes[index] = Some(Outcome::Unchanged);
                    }
                },
            }
        }
        let mut links = Vec::new();
        let again = self.send(operations, &mut outcomes, &mut links).await?;
        let last = self.send(again, &mut outcomes, &mut links).await?;
        for op in last {
            if op.create {
                links.push((op.key.clone(), String::new()));
            }
            let message = format!("QuickBooks refused {} twice (a name taken or an item edited meanwhile)", op.body["Name"]);
            self.note("conflict", &op.key, json!({"message": message}));
            outcomes[op.index] = Some(Outcome::Rejected(RecordError {
                class: ErrorClass::Conflict,
                field: "Name".into(),
                rule: "quickbooks_item".into(),
                message,
            }));
        }
        if !links.is_empty() {
            self.links.save(&self.target, &links).await?;
        }
        let entries = std::mem::take(&mut self.entries);
        if !entries.is_empty() {
            self.ledger.record(&entries).await?;
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Unchanged)).collect())
    }

    fn retries_itself(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fields_that_differ_are_written() {
        let item = json!({"Name": "Gold", "UnitPrice": 20, "IncomeAccountRef": {"value": "79", "name": "Sales"}, "Active": true});
        let wanted = |fields: Value| fields.as_object().unwrap().clone();
        assert!(changes(&item, &wanted(json!({"Name": "Gold", "UnitPrice": 20.0, "IncomeAccountRef": {"value": "79"}}))).is_empty());
        let changed = changes(&item, &wanted(json!({"Name": "GOLD", "UnitPrice": 25.5, "Active": false})));
        assert_eq!(changed.keys().collect::<Vec<_>>(), vec!["Active", "Name", "UnitPrice"], "a name's case is a change too");
    }

    #[test]
    fn a_suffixed_name_keeps_the_key_within_100_characters() {
        assert_eq!(suffixed("Gold", "prod_1"), "Gold (prod_1)");
        let long = suffixed(&"x".repeat(120), "prod_QXg1hqf4jFNsqG");
        assert_eq!(long.chars().count(), NAME_MAX);
        assert!(long.ends_with(" (prod_QXg1hqf4jFNsqG)"));
    }
}
