//! HubSpot objects as a source, for any object type.
//!
//! - A **full** read lists every object in id order (`after` paging, 100 a page, the portal's
//!   ten-second budget). Its last page's cursor is the time the listing started: anything
//!   modified since is read by the next incremental run.
//! - An **incremental** read searches from the cursor in `(modified, id)` order: objects
//!   modified after the cursor's time, or at that time with a larger id, modified before the
//!   run started less `settle` (search sees a write a few moments late, and the cursor must not
//!   pass a write search cannot see yet). Every page is a new query from the cursor of the page
//!   before, so no query ever pages toward the 10,000-result limit, any number of objects may
//!   share one millisecond, and an object modified during the run (which leaves its place in
//!   the order) cannot shift the pages after it.
//!   When most objects changed since the cursor (a thousand or more), the read lists them all
//!   instead: listing is the faster of the two then.
//! - **Backfill** reads the objects created in a time range the same way, ordered by creation.
//! - **What left HubSpot**, when the stream marks deletes: after the read reaches the end, the
//!   archived objects are listed (`archived=true`, 100 a page) as records with `_deleted_at`,
//!   then the objects merged away (named by the `hs_merged_object_ids` of the objects read) as
//!   records with `_merged_into`. Those pages carry the read's last cursor, so they move
//!   nothing; every read lists the archived objects again (HubSpot cannot filter them by time).
//!   Live records carry both fields empty, so an object restored from the archive is live again.
//! - **The completeness check**: a search read that reaches the end counts, in one more search,
//!   the objects in the range it read (from its first position to its last) and compares that
//!   with the objects search returned. Objects modified again during the run leave the range, so
//!   the count may be lower; a higher count means search left objects out of its results (its
//!   index out of step), which now lie behind the cursor: the read fails, naming the range and
//!   how to land them (`--full` lists). The result is the run's audit in the sync history.
//!
//! The properties read are resolved against the object type's definitions when the first page
//! is read: the listed ones (a name the type lacks is an error naming it), or every property
//! the type has then but the excluded ones, so a property added in HubSpot is read from the
//! next run on. Each object becomes a record keyed by its id, with `hs_object_id` and the wanted
//! properties as HubSpot's text (unset ones null), and with the object's JSON in `_raw` when the
//! stream keeps it; `fields` gives each field's type from its definition, for a warehouse's
//! columns.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use syncline_core::{ConnectorError, Cursor, ErrorClass, FieldType, Page, Record, Source, Value};

use super::api::{Filter, FilterGroup, HubSpotApi, Operator, PropertyDef, SEARCH_PAGE, SearchRequest, SimpleObject, Sort};
use super::config::{
    DELETED_FIELD, MAX_INPUTS_PER_CALL, MERGED_FIELD, Properties, RAW_FIELD, SourceStream, standard_objects, time_properties,
};

/// Where a read stands, as the cursor stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Position {
    /// Inside a full listing: the next page starts at object `list_after` (HubSpot's `after`),
    /// and the listing began at `listed_at_ms`.
    Listing { list_after: u64, listed_at_ms: i64 },
    /// Every object up to `(at_ms, id)` in (time, id) order has been read; `id` 0 means none
    /// at `at_ms` yet.
    Keyset { at_ms: i64, id: u64 },
}

impl Position {
    fn cursor(self) -> Cursor {
        Cursor(serde_json::to_value(self).expect("a position serializes"))
    }

    fn of(cursor: &Cursor) -> Result<Position, ConnectorError> {
        serde_json::from_value(cursor.0.clone()).map_err(|_| {
            ConnectorError::new(ErrorClass::Config, format!("the cursor {} is not a HubSpot source's (state clear resets it)", cursor.0))
        })
    }
}

/// Which read this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// From the start: by list, then the cursor is where the listing began.
    Everything,
    /// From a time on, by search on the modification time (`--since`).
    ModifiedFrom(i64),
    /// The objects created in `[from, until)`, by search on the creation time (backfill).
    Created { from: i64, until: i64 },
}

pub struct HubSpotSource {
    api: Arc<HubSpotApi>,
    stream: SourceStream,
    read: Read,
    /// The time property searches order by, and the exclusive bound on it.
    by: &'static str,
    until_ms: i64,
    /// What is asked of each object (the stream's properties, the id and both times) with each
    /// one's type; empty until resolved against the definitions.
    wanted: Vec<(String, FieldType)>,
    /// The fields of each record, in order: `fields`' names, shared by every record read.
    field_names: Vec<Arc<str>>,
    /// When the current read was started (a full listing's cursor once it ends).
    started_ms: i64,
    /// Whether the page just returned came from the listing (its records carry no position).
    listing: bool,
    /// The last search returned less than a page: there is nothing after it.
    exhausted: bool,
    /// The read itself reached the end.
    read_ended: bool,
    /// Whether to list rather than search was decided (or the read lists anyway).
    decided: bool,
    /// Where the read stands once it reached the end, marking what left HubSpot.
    tail: Option<Tail>,
    /// Objects merged away, and into which, as the records read name them.
    merged: Vec<(u64, u64)>,
    /// The search read so far, for the completeness check.
    range: Option<SearchedRange>,
    /// What the completeness check found.
    audit: Option<String>,
    /// Search requests made (backfill reports them).
    pub searches: u64,
}

/// The pages after the read: archived objects from `archived_after` (HubSpot's `after`), then
/// the merged ones, all under the read's last cursor.
#[derive(Debug, Clone)]
struct Tail {
    cursor: Cursor,
    archived_after: Option<String>,
    archived_done: bool,
}

/// A search read: from which position, to which, and how many objects search returned.
#[derive(Debug, Clone, Copy)]
struct SearchedRange {
    from: (i64, u64),
    to: (i64, u64),
    returned: u64,
}

impl HubSpotSource {
    /// Every object of the stream: listed when read from the start, searched from a cursor, or
    /// from `since` on (objects modified at or after it).
    pub fn new(api: Arc<HubSpotApi>, stream: SourceStream, since: Option<DateTime<Utc>>) -> HubSpotSource {
        let now = Utc::now().timestamp_millis();
        let until_ms = now - stream.settle.as_millis() as i64;
        let read = since.map_or(Read::Everything, |t| Read::ModifiedFrom(t.timestamp_millis()));
        HubSpotSource::with(api, stream, read, until_ms)
    }

    /// The objects created in `[from, until)`, oldest first.
    pub fn created_between(api: Arc<HubSpotApi>, stream: SourceStream, from: DateTime<Utc>, until: DateTime<Utc>) -> HubSpotSource {
        let read = Read::Created { from: from.timestamp_millis(), until: until.timestamp_millis() };
        let until_ms = until.timestamp_millis();
        HubSpotSource::with(api, stream, read, until_ms)
    }

    fn with(api: Arc<HubSpotApi>, stream: SourceStream, read: Read, until_ms: i64) -> HubSpotSource {
        let (created, modified) = time_properties(&stream.object);
        let by = if matches!(read, Read::Created { .. }) { created } else { modified };
        let started_ms = Utc::now().timestamp_millis();
        HubSpotSource {
            api,
            stream,
            read,
            by,
            until_ms,
            wanted: Vec::new(),
            field_names: Vec::new(),
            started_ms,
            listing: false,
            exhausted: false,
            read_ended: false,
            decided: false,
            tail: None,
            merged: Vec::new(),
            range: None,
            audit: None,
            searches: 0,
        }
    }

    /// The fields its records have, each with its type (the property's), `_raw` last when kept.
    pub async fn fields(&mut self) -> Result<Vec<(String, FieldType)>, ConnectorError> {
        self.resolve().await?;
        Ok(self.all_fields())
    }

    fn all_fields(&self) -> Vec<(String, FieldType)> {
        let mut fields = self.wanted.clone();
        if self.stream.raw {
            fields.push((RAW_FIELD.to_owned(), FieldType::Text));
        }
        if self.marks_deletes() {
            fields.push((DELETED_FIELD.to_owned(), FieldType::TimestampTz));
            fields.push((MERGED_FIELD.to_owned(), FieldType::Int));
        }
        fields
    }

    /// Whether the read marks archived and merged objects (not backfill: it reads creations).
    fn marks_deletes(&self) -> bool {
        self.stream.deletes && !matches!(self.read, Read::Created { .. })
    }

    /// The next page of what left HubSpot, once the read reached the end at `cursor`.
    async fn tail_page(&mut self) -> Result<Option<Page>, ConnectorError> {
        while let Some(mut tail) = self.tail.take() {
            let records: Vec<Record> = if tail.archived_done {
                let merged = std::mem::take(&mut self.merged);
                merged.into_iter().map(|(id, into)| gone(id.to_string(), MERGED_FIELD, Value::Int(into as i64))).collect()
            } else {
                let page = self.api.list_archived(&self.stream.object, tail.archived_after.as_deref()).await?;
                tail.archived_after = page.next_after().map(str::to_owned);
                tail.archived_done = tail.archived_after.is_none();
                let archived = |o: SimpleObject| o.archived_at.or(o.updated_at).map_or(Value::Null, Value::from);
                page.results
                    .into_iter()
                    .map(|o| (o.value.id.clone(), archived(o.value)))
                    .map(|(id, at)| gone(id, DELETED_FIELD, at))
                    .collect()
            };
            let cursor = Some(tail.cursor.clone());
            if !tail.archived_done || !self.merged.is_empty() {
                self.tail = Some(tail);
            }
            if !records.is_empty() {
                return Ok(Some(Page { records, cursor, rejected: Vec::new() }));
            }
        }
        Ok(None)
    }

    /// Resolves the properties read against the object type's definitions, once.
    async fn resolve(&mut self) -> Result<(), ConnectorError> {
        if self.wanted.is_empty() {
            let defined = self.api.properties(&self.stream.object).await.map_err(|e| unknown_type(&self.stream.object, e))?;
            self.wanted = resolve(&self.stream, &defined)?;
            // the id first, then each name once
            let mut names: Vec<Arc<str>> = vec![Arc::from("hs_object_id")];
            for (name, _) in self.all_fields() {
                if !names.iter().any(|n| **n == *name) {
                    names.push(Arc::from(name));
                }
            }
            self.field_names = names;
        }
        Ok(())
    }

    fn wanted_names(&self) -> Vec<String> {
        self.wanted.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The objects with these ids as records, as a read would make them (`verify`); ids HubSpot
    /// does not have are left out.
    pub async fn read_by_id(&mut self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        self.resolve().await?;
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_INPUTS_PER_CALL) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let found = self.api.batch_read(&self.stream.object, "hs_object_id", &chunk, &self.wanted_names()).await?;
            for object in found.results {
                records.push(self.record(object, None)?.0);
            }
        }
        Ok(records)
    }

    /// What it reads, for keying state: the portal (asked of HubSpot) and the object type.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        let portal = self.api.account_id().await?;
        Ok(format!("hubspot:portal/{portal}/{}", self.stream.object))
    }

    pub fn stream(&self) -> &SourceStream {
        &self.stream
    }

    /// The time property pages are ordered by (`lastmodifieddate`, `hs_lastmodifieddate`, or a
    /// creation time for backfill).
    pub fn ordered_by(&self) -> &'static str {
        self.by
    }

    /// Whether a read from `since` starts at or before `cursor`, so it also reads everything
    /// after the cursor and the cursor may follow it.
    pub fn starts_at_or_before(&self, since: DateTime<Utc>, cursor: &Cursor) -> bool {
        match Position::of(cursor) {
            Ok(Position::Keyset { at_ms, .. }) => since.timestamp_millis() <= at_ms,
            // a listing not finished has not read past anything in time
            _ => false,
        }
    }

    /// Whether `cursor` is a position of this source (`state set`).
    pub fn check_cursor(&self, cursor: &Cursor) -> Result<(), ConnectorError> {
        Position::of(cursor).map(drop)
    }

    /// How many objects a read from `after` will see (one search), for progress.
    pub async fn estimate(&mut self, after: Option<&Cursor>) -> Result<u64, ConnectorError> {
        let position = match after.map(Position::of).transpose()? {
            Some(Position::Keyset { at_ms, id }) => Some((at_ms, id)),
            _ => self.start_position(),
        };
        let groups = position.map(|position| self.after_groups(position)).unwrap_or_default();
        self.searches += 1;
        self.total(groups).await
    }

    /// How many objects the stream has now (`verify_counts`).
    pub async fn count(&self) -> Result<u64, ConnectorError> {
        self.total(Vec::new()).await
    }

    /// How many objects match `filter_groups`: a search's `total`, with one id on its page.
    async fn total(&self, filter_groups: Vec<FilterGroup>) -> Result<u64, ConnectorError> {
        let request = SearchRequest { filter_groups, limit: 1, properties: vec!["hs_object_id".into()], ..SearchRequest::default() };
        Ok(self.api.search(&self.stream.object, &request).await?.total)
    }

    /// Where a search starts when there is no cursor: `None` for a full read (it lists).
    fn start_position(&self) -> Option<(i64, u64)> {
        match self.read {
            Read::Everything => None,
            Read::ModifiedFrom(from) | Read::Created { from, .. } => Some((from, 0)),
        }
    }

    /// Filter groups for the objects after `(at, id)` and before the read's bound.
    fn after_groups(&self, (at_ms, id): (i64, u64)) -> Vec<FilterGroup> {
        let before = Filter::new(self.by, Operator::Lt, self.until_ms);
        if id == 0 {
            return vec![FilterGroup { filters: vec![Filter::new(self.by, Operator::Gte, at_ms), before] }];
        }
        vec![
            FilterGroup { filters: vec![Filter::new(self.by, Operator::Gt, at_ms), before.clone()] },
            FilterGroup { filters: vec![Filter::new(self.by, Operator::Eq, at_ms), Filter::new("hs_object_id", Operator::Gt, id), before] },
        ]
    }

    /// Filter groups for the objects after `from` and at or before `to`, in `(time, id)` order.
    fn between_groups(&self, from: (i64, u64), to: (i64, u64)) -> Vec<FilterGroup> {
        let lower = match from {
            (at_ms, 0) => vec![vec![Filter::new(self.by, Operator::Gte, at_ms)]],
            (at_ms, id) => vec![
                vec![Filter::new(self.by, Operator::Gt, at_ms)],
                vec![Filter::new(self.by, Operator::Eq, at_ms), Filter::new("hs_object_id", Operator::Gt, id)],
            ],
        };
        let upper = [
            vec![Filter::new(self.by, Operator::Lt, to.0)],
            vec![Filter::new(self.by, Operator::Eq, to.0), Filter::new("hs_object_id", Operator::Lte, to.1)],
        ];
        lower.iter().flat_map(|l| upper.iter().map(move |u| FilterGroup { filters: [l.clone(), u.clone()].concat() })).collect()
    }

    /// The completeness check of a search read that reached the end (see the module's notes).
    async fn check_complete(&mut self) -> Result<(), ConnectorError> {
        let Some(range) = self.range.filter(|r| r.returned > 0) else { return Ok(()) };
        self.searches += 1;
        let counted = self.total(self.between_groups(range.from, range.to)).await?;
        let time = |ms: i64| DateTime::from_timestamp_millis(ms).map_or(ms.to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        let window = format!("{} from {} to {}", self.by, time(range.from.0), time(range.to.0));
        let object = &self.stream.object;
        if counted > range.returned {
            let message = format!(
                "completeness check failed: HubSpot's search counts {counted} {object} with {window} but returned {}: {} missing from \
                 its results, now behind the cursor; `run --full` lists every object and lands them",
                range.returned,
                counted - range.returned
            );
            return Err(ConnectorError::new(ErrorClass::Data, message));
        }
        let moved = range.returned - counted;
        let moved = if moved > 0 { format!(" ({moved} modified again since, read next run)") } else { String::new() };
        self.audit = Some(format!("complete: {} {object} read, search counts {counted} with {window}{moved}", range.returned));
        Ok(())
    }

    /// One page of the listing from object `after`: up to `LISTED_PER_PAGE` objects.
    async fn list_page(&mut self, mut after: Option<u64>, listed_at_ms: i64) -> Result<Option<Page>, ConnectorError> {
        self.decided = true;
        // a page of the read is up to three list calls, so writes and commits come in hundreds
        let mut records = Vec::new();
        let by_id = self.names_too_long_for_a_url();
        loop {
            let wanted = if by_id { vec!["hs_object_id".to_owned()] } else { self.wanted_names() };
            let page = self.api.list(&self.stream.object, &wanted, after.map(|a| a.to_string()).as_deref()).await?;
            after =
                match page.next_after() {
                    Some(next) => Some(next.parse::<u64>().map_err(|_| {
                        ConnectorError::new(ErrorClass::Data, format!("HubSpot's list cursor {next:?} is not an object id"))
                    })?),
                    None => None,
                };
            if by_id {
                let ids: Vec<String> = page.results.into_iter().map(|o| o.value.id).collect();
                records.extend(self.read_by_id(&ids).await?);
            } else {
                for object in page.results {
                    records.push(self.record(object.value, Some(&object.json))?.0);
                }
            }
            if after.is_none() || records.len() >= LISTED_PER_PAGE {
                break;
            }
        }
        let position = match after {
            Some(list_after) => Position::Listing { list_after, listed_at_ms },
            // listed to the end: what changed since the listing began comes by search
            None => Position::Keyset { at_ms: listed_at_ms, id: 0 },
        };
        self.listing = true;
        Ok((!records.is_empty()).then(|| Page { records, cursor: Some(position.cursor()), rejected: Vec::new() }))
    }

    /// Whether the properties read, named in a list call's URL, would make it longer than HubSpot
    /// takes (a 414: portals have hundreds of properties). Then the listing asks for ids only and
    /// reads each page's objects by id, the names in the request's body: one call more per 100.
    fn names_too_long_for_a_url(&self) -> bool {
        // each name and its comma, encoded as %2C
        self.wanted.iter().map(|(name, _)| name.len() + 3).sum::<usize>() > MAX_NAMES_IN_URL
    }

    /// One search page after `(at, id)`.
    async fn search_page(&mut self, position: (i64, u64)) -> Result<Option<Page>, ConnectorError> {
        self.listing = false;
        if self.exhausted || position.0 >= self.until_ms {
            return Ok(None);
        }
        let request = SearchRequest {
            filter_groups: self.after_groups(position),
            sorts: vec![Sort::ascending(self.by), Sort::ascending("hs_object_id")],
            properties: self.wanted_names(),
            limit: SEARCH_PAGE,
            after: None,
        };
        self.searches += 1;
        let page = self.api.search(&self.stream.object, &request).await?;
        self.exhausted = page.results.len() < SEARCH_PAGE;
        let range = self.range.get_or_insert(SearchedRange { from: position, to: position, returned: 0 });
        range.returned += page.results.len() as u64;
        let mut records = Vec::with_capacity(page.results.len());
        let mut last = position;
        for object in page.results {
            let (record, at_ms, id) = self.record(object.value, Some(&object.json))?;
            if (at_ms, id) <= last {
                let message = format!("HubSpot's search returned object {id} out of ({}, id) order", self.by);
                return Err(ConnectorError::new(ErrorClass::Data, message));
            }
            last = (at_ms, id);
            records.push(record);
        }
        if let Some(range) = &mut self.range {
            range.to = last;
        }
        if self.exhausted {
            self.check_complete().await?;
        }
        let cursor = Position::Keyset { at_ms: last.0, id: last.1 }.cursor();
        Ok((!records.is_empty()).then(|| Page { records, cursor: Some(cursor), rejected: Vec::new() }))
    }

    /// An object as a record, with its position (its ordering time and id); `_raw` holds `sent`,
    /// the object's JSON as HubSpot sent it, when the stream keeps it.
    fn record(&self, object: SimpleObject, sent: Option<&RawValue>) -> Result<(Record, i64, u64), ConnectorError> {
        let id: u64 =
            object.id.parse().map_err(|_| ConnectorError::new(ErrorClass::Data, format!("object id {:?} is not a number", object.id)))?;
        let at = object.properties.get(self.by).and_then(Option::as_deref).unwrap_or_default();
        let at_ms = epoch_ms(at).ok_or_else(|| {
            ConnectorError::new(ErrorClass::Data, format!("{} {id}: {} {at:?} is not a time", self.stream.object, self.by))
        })?;
        let mut raw = self
            .stream
            .raw
            .then(|| sent.map_or_else(|| serde_json::to_string(&object).expect("an object serializes"), |s| s.get().to_owned()));
        // the names are shared by every record (`field_names`), and each is set once: no lookups
        let mut properties = object.properties;
        let mut fields = Vec::with_capacity(self.field_names.len());
        for name in &self.field_names {
            let value = match &**name {
                "hs_object_id" => Value::Text(object.id.as_str().into()),
                RAW_FIELD => raw.take().map_or(Value::Null, Value::from),
                DELETED_FIELD | MERGED_FIELD => Value::Null,
                name => properties.remove(name).flatten().map_or(Value::Null, Value::from),
            };
            fields.push((Arc::clone(name), value));
        }
        let record = Record { key: object.id, fields };
        Ok((record, at_ms, id))
    }
}

/// The properties API refuses (400) only an object type the portal does not have: that is the
/// config's mistake, said with the names it could have meant.
pub(crate) fn unknown_type(object: &str, error: ConnectorError) -> ConnectorError {
    if error.class != ErrorClass::Data {
        return error;
    }
    let close = syncline_core::did_you_mean(object, standard_objects()).map(|name| format!("did you mean {name:?}? ")).unwrap_or_default();
    let message = format!(
        "the portal has no object type {object:?} ({close}standard ones are {}; a custom one is named by its 2-… id or its name)",
        standard_objects().collect::<Vec<_>>().join(", ")
    );
    ConnectorError::new(ErrorClass::Config, message)
}

/// The properties `stream` reads of an object type with these definitions, each with its type:
/// the listed ones or all but the excluded ones, and always the id and both times. A listed or
/// excluded name the type does not have is a config error naming it (with the closest name).
pub(crate) fn resolve(stream: &SourceStream, defined: &[PropertyDef]) -> Result<Vec<(String, FieldType)>, ConnectorError> {
    let named = match &stream.properties {
        Properties::Listed(names) => names,
        Properties::All { except } => except,
    };
    let unknown: Vec<String> = named
        .iter()
        .filter(|name| !defined.iter().any(|d| d.name == **name))
        .map(|name| match syncline_core::did_you_mean(name, defined.iter().map(|d| d.name.as_str())) {
            Some(close) => format!("{name:?} (did you mean {close:?}?)"),
            None => format!("{name:?}"),
        })
        .collect();
    if !unknown.is_empty() {
        let message = format!("{} has no propert{} {}", stream.object, if unknown.len() == 1 { "y" } else { "ies" }, unknown.join(", "));
        return Err(ConnectorError::new(ErrorClass::Config, message));
    }
    let mut wanted: Vec<String> = match &stream.properties {
        Properties::Listed(names) => names.clone(),
        Properties::All { except } => defined.iter().map(|d| d.name.clone()).filter(|name| !except.contains(name)).collect(),
    };
    let (created, modified) = time_properties(&stream.object);
    // merges are told by the objects merged into
    let merges = stream.deletes && defined.iter().any(|d| d.name == MERGES);
    for always in ["hs_object_id", created, modified].into_iter().chain(merges.then_some(MERGES)) {
        if !wanted.iter().any(|w| w == always) {
            wanted.push(always.to_owned());
        }
    }
    let type_of = |name: &str| defined.iter().find(|d| d.name == name).map_or(FieldType::Text, PropertyDef::field_type);
    Ok(wanted
        .into_iter()
        .map(|name| {
            let field_type = type_of(&name);
            (name, field_type)
        })
        .collect())
}

/// Changed objects from which a read from the cursor may list them all instead (when they are
/// most of the objects).
const LIST_INSTEAD_FROM: u64 = 1_000;

/// Encoded property names a list call's URL carries at most: HubSpot's front servers refuse a
/// request target past about 16,000 characters, and some taps met 414s near 8,000.
const MAX_NAMES_IN_URL: usize = 6_000;

/// Objects listed into one page of the read (three list calls of 100): enough that writes and
/// commits are few, few enough that the pages in flight between the runner's stages stay
/// small (measured with `bench --warehouse`: 1,000 a page held 7 MiB more at the same speed,
/// and 500 held 3-4 MiB more than 300 for 0-7 % more records/s).
const LISTED_PER_PAGE: usize = 300;

/// The property listing the objects merged into an object (`;`-separated ids).
const MERGES: &str = "hs_merged_object_ids";

/// A record marking object `id` as gone: its id and `field` (when archived, or into which object).
fn gone(id: String, field: &str, value: Value) -> Record {
    let mut record = Record::new(id.clone());
    record.set("hs_object_id", Value::Text(id.into()));
    record.set(field, value);
    record
}

/// A HubSpot time as epoch milliseconds: epoch milliseconds or ISO 8601 text.
fn epoch_ms(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().or_else(|| DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.timestamp_millis()))
}

impl HubSpotSource {
    /// The next page of the read itself, from `after`.
    async fn read_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        match after.map(Position::of).transpose()? {
            Some(Position::Listing { list_after, listed_at_ms }) => self.list_page(Some(list_after), listed_at_ms).await,
            Some(Position::Keyset { at_ms, id }) if self.lists_instead((at_ms, id)).await? => self.list_page(None, self.started_ms).await,
            Some(Position::Keyset { at_ms, id }) => self.search_page((at_ms, id)).await,
            None => match self.start_position() {
                Some(position) => self.search_page(position).await,
                None => self.list_page(None, self.started_ms).await,
            },
        }
    }

    /// Whether a read from the cursor at `position` lists every object instead of searching:
    /// when most of them changed since, listing (100 a call within the ten-second budget) is
    /// faster than search (200 a call, 5 calls a second). Decided once, when such a read starts.
    async fn lists_instead(&mut self, position: (i64, u64)) -> Result<bool, ConnectorError> {
        if self.decided || !matches!(self.read, Read::Everything) {
            return Ok(false);
        }
        self.decided = true;
        let changed = self.estimate(Some(&Position::Keyset { at_ms: position.0, id: position.1 }.cursor())).await?;
        let all = self.count().await?;
        self.searches += 1;
        let list = changed >= LIST_INSTEAD_FROM && changed * 2 > all;
        if list {
            let object = &self.stream.object;
            tracing::info!(changed, all, object = %object, "most objects changed since the cursor: listing them all");
            self.audit = Some(format!("listed every one of the {all} {object}: {changed} had changed since the cursor"));
        }
        Ok(list)
    }

    /// Notes the objects `records` say were merged into them.
    fn note_merges(&mut self, records: &[Record]) {
        for record in records {
            let merged = record.get(MERGES).and_then(Value::as_text);
            let (Some(merged), Ok(into)) = (merged, record.key.parse::<u64>()) else { continue };
            self.merged.extend(merged.split(';').filter_map(|id| id.trim().parse().ok()).map(|id| (id, into)));
        }
    }
}

impl Source for HubSpotSource {
    async fn next_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        self.resolve().await?;
        if self.tail.is_none() && !self.read_ended {
            if let Some(page) = self.read_page(after).await? {
                if self.marks_deletes() {
                    self.note_merges(&page.records);
                }
                return Ok(Some(page));
            }
            self.read_ended = true;
            if self.marks_deletes() {
                let start = self.start_position().unwrap_or((self.started_ms, 0));
                let cursor = after.cloned().unwrap_or_else(|| Position::Keyset { at_ms: start.0, id: start.1 }.cursor());
                self.tail = Some(Tail { cursor, archived_after: None, archived_done: false });
            }
        }
        self.tail_page().await
    }

    fn audit(&self) -> Option<String> {
        self.audit.clone()
    }

    /// Inside a search page the position of any record is known; inside the listing it is not
    /// (HubSpot's `after` is its own).
    fn cursor_after(&self, record: &Record) -> Option<Cursor> {
        if self.listing {
            return None;
        }
        let at_ms = record.get(self.by).and_then(Value::as_text).and_then(|t| epoch_ms(&t))?;
        let id = record.key.parse().ok()?;
        Some(Position::Keyset { at_ms, id }.cursor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_cursors() {
        for position in [Position::Listing { list_after: 301, listed_at_ms: 1_700_000_000_000 }, Position::Keyset { at_ms: 5, id: 9 }] {
            assert_eq!(Position::of(&position.cursor()).unwrap(), position);
        }
        let sql = Cursor(serde_json::json!({"watermark": "2024-01-01", "key": 3}));
        assert_eq!(Position::of(&sql).unwrap_err().class, ErrorClass::Config);
    }

    #[test]
    fn times_are_read_in_both_spellings() {
        assert_eq!(epoch_ms("1572480000000"), Some(1_572_480_000_000));
        assert_eq!(epoch_ms("2019-10-31T00:00:00.000Z"), Some(1_572_480_000_000));
        assert_eq!(epoch_ms("yesterday"), None);
    }
}
