//! What HubSpot keeps about each object beside its properties, as a source of rows: its
//! **links** (associations v4) with another object type — one row per link and association
//! type: `from_id`, `to_id`, `type_id`, `category`, `label`, keyed `<from>-<to>-<type>` — or the
//! **history** of some of its properties (`propertiesWithHistory`) — one row per value a
//! property had: `object_id`, `property`, `value`, `changed_at`, `source_type`, `source_id`,
//! `updated_by_user_id`, keyed `<object>:<property>:<n>` (n counting from the oldest).
//!
//! Whose details are read follows the objects themselves, read as the objects source reads
//! them (ids and times only, so one page is cheap): a full read lists every object, an
//! incremental one searches those modified since the cursor. A link added or removed modifies
//! both its objects in HubSpot (it recounts their `num_associated_*`), and a new value modifies
//! its object, so the objects changed are those whose details changed. The cursor, crash
//! recovery and the completeness check are the objects source's.
//!
//! Every row of one object carries the time its details were read (`_read_at_ms`), and the
//! source tells the sink (`replaces`) that an object read again replaces its older rows: a link
//! removed in HubSpot leaves the warehouse. An object left with nothing, or merged away, is one
//! row with an empty member field that only clears its rows; an archived object's links go, its
//! history stays.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use syncline_core::{ConnectorError, Cursor, FieldType, Page, Record, Replaces, Source, Value};

use super::api::{AssociationsInput, HistoryValue, HubSpotApi};
use super::config::{ASSOCIATION_KEY, DELETED_FIELD, MAX_INPUTS_PER_CALL, MERGED_FIELD, Properties, ROW_KEY, SourceStream, object_name};
use super::source::{HubSpotSource, resolve, unknown_type};

/// Objects whose links one batch read asks for (HubSpot's limit).
const IDS_PER_LINKS_READ: usize = 1_000;

/// How link rows replace stored ones: per object of the `from` side, newest read wins.
pub const REPLACES: Replaces = Replaces { group: "from_id", version: VERSION, member: "to_id" };

/// How history rows replace stored ones: per object, newest read wins.
pub const HISTORY_REPLACES: Replaces = Replaces { group: "object_id", version: VERSION, member: "property" };

const VERSION: &str = "_read_at_ms";

/// Which details of each object are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// Its links with objects of this type.
    Links { to: String },
    /// Every value these properties had.
    History { properties: Vec<String> },
}

/// One link as read: the linked object and the type's id, category and label.
struct Link {
    to: String,
    type_id: i64,
    category: String,
    label: Option<String>,
}

pub struct DetailSource {
    api: Arc<HubSpotApi>,
    object: String,
    detail: Detail,
    /// The objects, ids and times only: what says whose details to read.
    objects: HubSpotSource,
    /// Whether the detail asked for was checked against the portal.
    checked: bool,
    /// The last `_read_at_ms` given, so each read is newer than the one before.
    last_read_ms: i64,
}

impl DetailSource {
    /// The details `stream` asks of its objects (`associations:` or `history:`); `since` as for
    /// the objects.
    pub fn new(api: Arc<HubSpotApi>, stream: &SourceStream, since: Option<DateTime<Utc>>) -> DetailSource {
        let detail = match &stream.associations {
            Some(to) => Detail::Links { to: object_name(to) },
            None => Detail::History { properties: stream.history.clone() },
        };
        let mut objects = SourceStream::new(&stream.object, &[]);
        objects.deletes = true;
        objects.settle = stream.settle;
        let object = objects.object.clone();
        DetailSource { objects: HubSpotSource::new(api.clone(), objects, since), api, object, detail, checked: false, last_read_ms: 0 }
    }

    /// The fields of its rows, with their types.
    pub fn fields(&self) -> Vec<(String, FieldType)> {
        use FieldType::*;
        let fields: &[(&str, FieldType)] = match self.detail {
            Detail::Links { .. } => &[
                (ASSOCIATION_KEY, Text),
                ("from_id", Int),
                ("to_id", Int),
                ("type_id", Int),
                ("category", Text),
                ("label", Text),
                (VERSION, Int),
            ],
            Detail::History { .. } => &[
                (ROW_KEY, Text),
                ("object_id", Int),
                ("property", Text),
                ("value", Text),
                ("changed_at", TimestampTz),
                ("source_type", Text),
                ("source_id", Text),
                ("updated_by_user_id", Int),
                (VERSION, Int),
            ],
        };
        fields.iter().map(|(name, kind)| ((*name).to_owned(), *kind)).collect()
    }

    /// How its rows replace an object's older ones.
    pub fn replaces(&self) -> Replaces {
        match self.detail {
            Detail::Links { .. } => REPLACES,
            Detail::History { .. } => HISTORY_REPLACES,
        }
    }

    /// What it reads, for keying state: the portal, the object type and the detail.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        let portal = self.api.account_id().await?;
        Ok(match &self.detail {
            Detail::Links { to } => format!("hubspot:portal/{portal}/{}/associations/{to}", self.object),
            Detail::History { properties } => format!("hubspot:portal/{portal}/{}/history/{}", self.object, properties.join(",")),
        })
    }

    /// The pair of object types of a links source, `from` first.
    pub fn pair(&self) -> Option<(&str, &str)> {
        match &self.detail {
            Detail::Links { to } => Some((&self.object, to)),
            Detail::History { .. } => None,
        }
    }

    /// The objects read (the cursor and counts are theirs).
    pub fn objects(&self) -> &HubSpotSource {
        &self.objects
    }

    /// How many objects a read from `after` will read the details of (one search), for progress.
    pub async fn estimate(&mut self, after: Option<&Cursor>) -> Result<u64, ConnectorError> {
        self.objects.estimate(after).await
    }

    /// The links of `ids` (every page of each), by object id.
    async fn links(&self, to: &str, ids: &[String]) -> Result<BTreeMap<String, Vec<Link>>, ConnectorError> {
        let mut links: BTreeMap<String, Vec<Link>> = BTreeMap::new();
        let mut pending: Vec<(String, Option<String>)> = ids.iter().map(|id| (id.clone(), None)).collect();
        while !pending.is_empty() {
            let mut more = Vec::new();
            for chunk in pending.chunks(IDS_PER_LINKS_READ) {
                let inputs: Vec<AssociationsInput> =
                    chunk.iter().map(|(id, after)| AssociationsInput { id, after: after.as_deref() }).collect();
                let batch = self.api.associations(&self.object, to, &inputs).await?;
                for of in batch.results {
                    if let Some(after) = of.next_after() {
                        more.push((of.from.id.clone(), Some(after.to_owned())));
                    }
                    let into = links.entry(of.from.id).or_default();
                    for associated in of.to {
                        into.extend(associated.association_types.into_iter().map(|kind| Link {
                            to: associated.to_object_id.clone(),
                            type_id: kind.type_id,
                            category: kind.category,
                            label: kind.label.filter(|l| !l.is_empty()),
                        }));
                    }
                }
            }
            pending = more;
        }
        Ok(links)
    }

    /// The histories of `ids`' properties, by object id.
    async fn histories(
        &self,
        properties: &[String],
        ids: &[String],
    ) -> Result<BTreeMap<String, Vec<(String, HistoryValue)>>, ConnectorError> {
        let mut histories: BTreeMap<String, Vec<(String, HistoryValue)>> = BTreeMap::new();
        for chunk in ids.chunks(MAX_INPUTS_PER_CALL) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            for object in self.api.batch_read_history(&self.object, &chunk, properties).await?.results {
                let into = histories.entry(object.id).or_default();
                for (property, values) in object.properties_with_history {
                    // oldest first, so a value keeps its number as newer ones arrive
                    into.extend(values.into_iter().rev().map(|value| (property.clone(), value)));
                }
            }
        }
        Ok(histories)
    }

    /// Checks, once, that what the detail names exists: the other object type, or the properties.
    async fn check(&mut self) -> Result<(), ConnectorError> {
        if self.checked {
            return Ok(());
        }
        match &self.detail {
            Detail::Links { to } => drop(self.api.properties(to).await.map_err(|e| unknown_type(to, e))?),
            Detail::History { properties } => {
                let defined = self.api.properties(&self.object).await.map_err(|e| unknown_type(&self.object, e))?;
                let mut stream = SourceStream::new(&self.object, &[]);
                stream.properties = Properties::Listed(properties.clone());
                resolve(&stream, &defined)?;
            }
        }
        self.checked = true;
        Ok(())
    }

    /// A time later than any this source gave before, in epoch milliseconds.
    fn read_at(&mut self) -> i64 {
        self.last_read_ms = Utc::now().timestamp_millis().max(self.last_read_ms + 1);
        self.last_read_ms
    }
}

/// An id as a number where it is one.
fn number(id: &str) -> Value {
    id.parse::<i64>().map_or_else(|_| Value::Text(id.into()), Value::Int)
}

/// A row of one link, or (`link` none) one clearing the object's links.
fn link_row(from: &str, link: Option<&Link>, read_at: i64) -> Record {
    let key = link.map_or_else(|| from.to_owned(), |l| format!("{from}-{}-{}", l.to, l.type_id));
    let mut record = Record::new(key.clone());
    record.set(ASSOCIATION_KEY, Value::Text(key.into()));
    record.set("from_id", number(from));
    record.set("to_id", link.map_or(Value::Null, |l| number(&l.to)));
    record.set("type_id", link.map_or(Value::Null, |l| Value::Int(l.type_id)));
    record.set("category", link.map_or(Value::Null, |l| Value::Text(l.category.as_str().into())));
    record.set("label", link.and_then(|l| l.label.clone()).map_or(Value::Null, Value::from));
    record.set(VERSION, Value::Int(read_at));
    record
}

/// A row of the `n`th value (from the oldest) of a property, or (`value` none) one clearing the
/// object's history.
fn history_row(object: &str, value: Option<(&str, usize, &HistoryValue)>, read_at: i64) -> Record {
    let key = value.map_or_else(|| object.to_owned(), |(property, n, _)| format!("{object}:{property}:{n}"));
    let text = |v: Option<&String>| v.cloned().map_or(Value::Null, Value::from);
    let mut record = Record::new(key.clone());
    record.set(ROW_KEY, Value::Text(key.into()));
    record.set("object_id", number(object));
    record.set("property", value.map_or(Value::Null, |(property, ..)| Value::Text(property.into())));
    record.set("value", text(value.map(|(_, _, v)| &v.value)));
    record.set("changed_at", text(value.map(|(_, _, v)| &v.timestamp)));
    record.set("source_type", text(value.and_then(|(_, _, v)| v.source_type.as_ref())));
    record.set("source_id", text(value.and_then(|(_, _, v)| v.source_id.as_ref())));
    record.set("updated_by_user_id", value.and_then(|(_, _, v)| v.updated_by_user_id).map_or(Value::Null, Value::Int));
    record.set(VERSION, Value::Int(read_at));
    record
}

impl Source for DetailSource {
    async fn next_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        self.check().await?;
        loop {
            let Some(page) = self.objects.next_page(after).await? else { return Ok(None) };
            let page = self.details(page).await?;
            // a page of archived objects only has no history rows: the next page has
            if !page.records.is_empty() || !page.rejected.is_empty() {
                return Ok(Some(page));
            }
        }
    }

    fn audit(&self) -> Option<String> {
        self.objects.audit()
    }
}

impl DetailSource {
    /// The rows of the details of a page of objects, under the page's cursor.
    async fn details(&mut self, page: Page) -> Result<Page, ConnectorError> {
        let marked = |r: &Record, field: &str| r.get(field).is_some_and(|v| !v.is_null());
        let live: Vec<String> =
            page.records.iter().filter(|r| !marked(r, DELETED_FIELD) && !marked(r, MERGED_FIELD)).map(|r| r.key.clone()).collect();
        let mut records = Vec::with_capacity(page.records.len());
        match self.detail.clone() {
            Detail::Links { to } => {
                let links = self.links(&to, &live).await?;
                let read_at = self.read_at();
                for object in &page.records {
                    // only live objects' links were read, so the others clear their rows
                    match links.get(&object.key) {
                        Some(links) if !links.is_empty() => records.extend(links.iter().map(|l| link_row(&object.key, Some(l), read_at))),
                        _ => records.push(link_row(&object.key, None, read_at)),
                    }
                }
            }
            Detail::History { properties } => {
                let histories = self.histories(&properties, &live).await?;
                let read_at = self.read_at();
                for object in &page.records {
                    if marked(object, DELETED_FIELD) {
                        continue; // an archived object's history is kept
                    }
                    let values = histories.get(&object.key).map(Vec::as_slice).unwrap_or_default();
                    if values.is_empty() {
                        records.push(history_row(&object.key, None, read_at));
                    }
                    let mut numbers: BTreeMap<&str, usize> = BTreeMap::new();
                    for (property, value) in values {
                        let n = numbers.entry(property.as_str()).or_default();
                        records.push(history_row(&object.key, Some((property, *n, value)), read_at));
                        *n += 1;
                    }
                }
            }
        }
        Ok(Page { records, cursor: page.cursor, rejected: page.rejected })
    }
}
