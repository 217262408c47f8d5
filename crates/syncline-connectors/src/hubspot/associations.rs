//! The associations (v4) from one object type to another, as a source: one record per link and
//! association type — `from_id`, `to_id`, `type_id`, `category`, `label` — keyed
//! `<from>-<to>-<type>`.
//!
//! Which objects' links are read follows the objects themselves, read as the objects source
//! reads them (ids and times only, so one page is cheap): a full read lists every object of the
//! `from` type, an incremental one searches those modified since the cursor. A link added or
//! removed modifies both its objects in HubSpot (it recounts their `num_associated_*`), so the
//! objects changed on either side of a link are among those searched. Each page's objects then
//! have their links read in batches of 1,000 (exempt from the ten-second budget). The cursor,
//! crash recovery and the completeness check are the objects source's.
//!
//! Every record of one object carries the time its links were read (`_read_at_ms`), and the
//! source tells the sink (`replaces`) that an object read again replaces its older rows: a link
//! removed in HubSpot leaves the warehouse. An object left with no links, archived, or merged
//! away is one record with an empty `to_id` that only clears its rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use syncline_core::{ConnectorError, Cursor, FieldType, Page, Record, Replaces, Source, Value};

use super::api::{AssociationsInput, HubSpotApi};
use super::config::{DELETED_FIELD, MERGED_FIELD, SourceStream, object_name};
use super::source::{HubSpotSource, unknown_type};

/// Objects whose links one batch read asks for (HubSpot's limit).
const IDS_PER_READ: usize = 1_000;

/// The destination key of a link record.
pub const ASSOCIATION_KEY: &str = "association_id";

/// How link records replace stored rows: per object of the `from` side, newest read wins.
pub const REPLACES: Replaces = Replaces { group: "from_id", version: "_read_at_ms", member: "to_id" };

/// One link as read: the linked object and the type's id, category and label.
struct Link {
    to: String,
    type_id: i64,
    category: String,
    label: Option<String>,
}

pub struct AssociationSource {
    api: Arc<HubSpotApi>,
    from: String,
    to: String,
    /// The `from` objects, ids and times only: what says whose links to read.
    objects: HubSpotSource,
    /// Whether the `to` type was checked to exist.
    checked: bool,
    /// The last `_read_at_ms` given, so each read is newer than the one before.
    last_read_ms: i64,
}

impl AssociationSource {
    /// The links of `stream.object`'s objects to `stream.associations`'s; `since` as for objects.
    pub fn new(api: Arc<HubSpotApi>, stream: &SourceStream, since: Option<DateTime<Utc>>) -> AssociationSource {
        let to = object_name(stream.associations.as_deref().unwrap_or_default());
        let mut objects = SourceStream::new(&stream.object, &[]);
        objects.deletes = true;
        objects.settle = stream.settle;
        let from = objects.object.clone();
        AssociationSource { objects: HubSpotSource::new(api.clone(), objects, since), api, from, to, checked: false, last_read_ms: 0 }
    }

    /// The fields of its records, with their types.
    pub fn fields() -> Vec<(String, FieldType)> {
        [
            (ASSOCIATION_KEY, FieldType::Text),
            ("from_id", FieldType::Int),
            ("to_id", FieldType::Int),
            ("type_id", FieldType::Int),
            ("category", FieldType::Text),
            ("label", FieldType::Text),
            (REPLACES.version, FieldType::Int),
        ]
        .into_iter()
        .map(|(name, kind)| (name.to_owned(), kind))
        .collect()
    }

    /// What it reads, for keying state: the portal and the pair of object types.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        let portal = self.api.account_id().await?;
        Ok(format!("hubspot:portal/{portal}/{}/associations/{}", self.from, self.to))
    }

    /// The pair of object types, `from` first.
    pub fn pair(&self) -> (&str, &str) {
        (&self.from, &self.to)
    }

    /// The `from` objects read (the cursor and counts are theirs).
    pub fn objects(&self) -> &HubSpotSource {
        &self.objects
    }

    /// How many objects a read from `after` will read the links of (one search), for progress.
    pub async fn estimate(&mut self, after: Option<&Cursor>) -> Result<u64, ConnectorError> {
        self.objects.estimate(after).await
    }

    /// The links of `ids` (every page of each), by object id.
    async fn links(&self, ids: &[String]) -> Result<BTreeMap<String, Vec<Link>>, ConnectorError> {
        let mut links: BTreeMap<String, Vec<Link>> = BTreeMap::new();
        let mut pending: Vec<(String, Option<String>)> = ids.iter().map(|id| (id.clone(), None)).collect();
        while !pending.is_empty() {
            let mut more = Vec::new();
            for chunk in pending.chunks(IDS_PER_READ) {
                let inputs: Vec<AssociationsInput> =
                    chunk.iter().map(|(id, after)| AssociationsInput { id, after: after.as_deref() }).collect();
                let batch = self.api.associations(&self.from, &self.to, &inputs).await?;
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

    /// A time later than any this source gave before, in epoch milliseconds.
    fn read_at(&mut self) -> i64 {
        self.last_read_ms = Utc::now().timestamp_millis().max(self.last_read_ms + 1);
        self.last_read_ms
    }
}

/// A record of one link, or (`link` none) one clearing the object's rows.
fn record(from: &str, link: Option<&Link>, read_at: i64) -> Record {
    let number = |id: &str| id.parse::<i64>().map_or_else(|_| Value::Text(id.to_owned()), Value::Int);
    let key = link.map_or_else(|| from.to_owned(), |l| format!("{from}-{}-{}", l.to, l.type_id));
    let mut record = Record::new(key.clone());
    record.set(ASSOCIATION_KEY, Value::Text(key));
    record.set("from_id", number(from));
    record.set("to_id", link.map_or(Value::Null, |l| number(&l.to)));
    record.set("type_id", link.map_or(Value::Null, |l| Value::Int(l.type_id)));
    record.set("category", link.map_or(Value::Null, |l| Value::Text(l.category.clone())));
    record.set("label", link.and_then(|l| l.label.clone()).map_or(Value::Null, Value::Text));
    record.set(REPLACES.version, Value::Int(read_at));
    record
}

impl Source for AssociationSource {
    async fn next_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        if !self.checked {
            self.api.properties(&self.to).await.map_err(|e| unknown_type(&self.to, e))?;
            self.checked = true;
        }
        let Some(page) = self.objects.next_page(after).await? else { return Ok(None) };
        let gone = |r: &Record| [DELETED_FIELD, MERGED_FIELD].iter().any(|f| r.get(f).is_some_and(|v| !v.is_null()));
        let live: Vec<String> = page.records.iter().filter(|r| !gone(r)).map(|r| r.key.clone()).collect();
        let links = self.links(&live).await?;
        let read_at = self.read_at();
        let mut records = Vec::with_capacity(page.records.len());
        for object in &page.records {
            match links.get(&object.key).filter(|l| !l.is_empty() && !gone(object)) {
                Some(links) => records.extend(links.iter().map(|link| record(&object.key, Some(link), read_at))),
                None => records.push(record(&object.key, None, read_at)),
            }
        }
        Ok(Some(Page { records, cursor: page.cursor, rejected: page.rejected }))
    }

    fn audit(&self) -> Option<String> {
        self.objects.audit()
    }
}
