//! HubSpot's reference data as a source: the portal's **owners** (`object: owners`), or an
//! object type's **pipelines with their stages** (`pipelines: deals`), one row per stage. These
//! are small tables that HubSpot cannot filter by time, so every run reads them whole: owners
//! live then archived (`archived` marks the latter), pipelines in one call. A stage or pipeline
//! gone from HubSpot leaves the table: every row of a read carries its time, and the sink
//! replaces the object type's older rows (`replaces`).

use std::sync::Arc;

use chrono::Utc;
use syncline_core::{ConnectorError, Cursor, ErrorClass, FieldType, Page, Record, Replaces, Source, Value};

use super::api::{HubSpotApi, OwnerPage, PipelineList};
use super::config::ROW_KEY;

/// Which reference data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Owners,
    /// The pipelines of this object type (`deals`, `tickets`).
    Pipelines(String),
}

/// How pipeline rows replace stored ones: every row of the object type, newest read wins.
pub const PIPELINE_REPLACES: Replaces = Replaces { group: "object_type", version: "_read_at_ms", member: "stage_id" };

/// Where a read of owners stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Live,
    Archived,
    Done,
}

pub struct ReferenceSource {
    api: Arc<HubSpotApi>,
    reference: Reference,
    stage: Stage,
    after: Option<String>,
    read_at: i64,
}

impl ReferenceSource {
    pub fn new(api: Arc<HubSpotApi>, reference: Reference) -> ReferenceSource {
        ReferenceSource { api, reference, stage: Stage::Live, after: None, read_at: Utc::now().timestamp_millis() }
    }

    /// The fields of its rows, with their types; `id` is the key.
    pub fn fields(&self) -> Vec<(String, FieldType)> {
        use FieldType::*;
        let fields: &[(&str, FieldType)] = match self.reference {
            Reference::Owners => &[
                (ROW_KEY, Int),
                ("email", Text),
                ("first_name", Text),
                ("last_name", Text),
                ("user_id", Int),
                ("teams", Text),
                ("archived", Bool),
                ("created_at", TimestampTz),
                ("updated_at", TimestampTz),
            ],
            Reference::Pipelines(_) => &[
                (ROW_KEY, Text),
                ("object_type", Text),
                ("pipeline_id", Text),
                ("pipeline_label", Text),
                ("pipeline_display_order", Int),
                ("stage_id", Text),
                ("stage_label", Text),
                ("stage_display_order", Int),
                ("probability", Decimal),
                ("is_closed", Bool),
                ("metadata", Text),
                ("updated_at", TimestampTz),
                ("_read_at_ms", Int),
            ],
        };
        fields.iter().map(|(name, kind)| ((*name).to_owned(), *kind)).collect()
    }

    /// How its rows replace stored ones, when the table must follow removals.
    pub fn replaces(&self) -> Option<Replaces> {
        matches!(self.reference, Reference::Pipelines(_)).then_some(PIPELINE_REPLACES)
    }

    /// What it reads, for keying state.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        let portal = self.api.account_id().await?;
        Ok(match &self.reference {
            Reference::Owners => format!("hubspot:portal/{portal}/owners"),
            Reference::Pipelines(object) => format!("hubspot:portal/{portal}/pipelines/{object}"),
        })
    }

    /// The cursor every page carries: these tables are read whole, so it only says whose it is.
    fn cursor(&self) -> Cursor {
        Cursor(serde_json::json!({"reference": self.name()}))
    }

    fn name(&self) -> String {
        match &self.reference {
            Reference::Owners => "owners".into(),
            Reference::Pipelines(object) => format!("{object} pipelines"),
        }
    }

    /// Whether `cursor` is one this source makes (`state set`).
    pub fn check_cursor(&self, cursor: &Cursor) -> Result<(), ConnectorError> {
        match cursor.0.get("reference").and_then(|r| r.as_str()) {
            Some(name) if name == self.name() => Ok(()),
            _ => Err(ConnectorError::new(
                ErrorClass::Config,
                format!("the cursor {} is not one of {}'s (state clear resets it)", cursor.0, self.name()),
            )),
        }
    }

    async fn owners_page(&mut self) -> Result<Vec<Record>, ConnectorError> {
        let archived = self.stage == Stage::Archived;
        let page: OwnerPage = self.api.owners(self.after.as_deref(), archived).await?;
        self.after = page.paging.as_ref().and_then(|p| p.next.as_ref()).map(|n| n.after.clone());
        if self.after.is_none() {
            self.stage = if archived { Stage::Done } else { Stage::Archived };
        }
        let text = |v: Option<String>| v.map_or(Value::Null, Value::from);
        Ok(page
            .results
            .into_iter()
            .map(|o| {
                let mut record = Record::new(o.id.clone());
                record.set("id", o.id.parse::<i64>().map_or(Value::Text(o.id.into()), Value::Int));
                record.set("email", text(o.email));
                record.set("first_name", text(o.first_name));
                record.set("last_name", text(o.last_name));
                record.set("user_id", o.user_id.map_or(Value::Null, Value::Int));
                let teams: Vec<String> = o.teams.iter().map(|t| format!("{} ({})", t.name, t.id)).collect();
                record.set("teams", Value::Text(teams.join("; ").into()));
                record.set("archived", Value::Bool(o.archived || archived));
                record.set("created_at", text(o.created_at));
                record.set("updated_at", text(o.updated_at));
                record
            })
            .collect())
    }

    async fn pipelines_page(&mut self, object: &str) -> Result<Vec<Record>, ConnectorError> {
        self.stage = Stage::Done;
        let list: PipelineList = self.api.pipelines(object).await.map_err(|e| super::source::unknown_type(object, e))?;
        let mut records = Vec::new();
        for pipeline in list.results {
            for stage in &pipeline.stages {
                let key = format!("{}:{}", pipeline.id, stage.id);
                let meta = |name: &str| stage.metadata.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                let mut record = Record::new(key.clone());
                record.set("id", Value::Text(key.into()));
                record.set("object_type", Value::Text(object.into()));
                record.set("pipeline_id", Value::Text(pipeline.id.as_str().into()));
                record.set("pipeline_label", Value::Text(pipeline.label.as_str().into()));
                record.set("pipeline_display_order", Value::Int(pipeline.display_order));
                record.set("stage_id", Value::Text(stage.id.as_str().into()));
                record.set("stage_label", Value::Text(stage.label.as_str().into()));
                record.set("stage_display_order", Value::Int(stage.display_order));
                record.set("probability", meta("probability").map_or(Value::Null, Value::from));
                record.set("is_closed", meta("isClosed").map_or(Value::Null, Value::from));
                record.set("metadata", Value::Text(serde_json::Value::Object(stage.metadata.clone()).to_string().into()));
                record.set("updated_at", pipeline.updated_at.clone().map_or(Value::Null, Value::from));
                record.set("_read_at_ms", Value::Int(self.read_at));
                records.push(record);
            }
        }
        if records.is_empty() {
            // no pipeline left: one row that only clears the object type's
            let mut record = Record::new(format!("{object}:"));
            for (name, _) in self.fields() {
                record.set(&name, Value::Null);
            }
            record.set("id", Value::Text(compact_str::format_compact!("{object}:")));
            record.set("object_type", Value::Text(object.into()));
            record.set("_read_at_ms", Value::Int(self.read_at));
            records.push(record);
        }
        Ok(records)
    }
}

impl Source for ReferenceSource {
    /// Reads the whole table every run, whatever the cursor (it carries no position).
    async fn next_page(&mut self, _after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        loop {
            let records = match (&self.reference, self.stage) {
                (_, Stage::Done) => return Ok(None),
                (Reference::Owners, _) => self.owners_page().await?,
                (Reference::Pipelines(object), _) => {
                    let object = object.clone();
                    self.pipelines_page(&object).await?
                }
            };
            if !records.is_empty() {
                return Ok(Some(Page { records, cursor: Some(self.cursor()), rejected: Vec::new() }));
            }
        }
    }
}
