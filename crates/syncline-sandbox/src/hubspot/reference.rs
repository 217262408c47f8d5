//! Owners (`/crm/v3/owners`) and pipelines with their stages (`/crm/v3/pipelines/{objectType}`),
//! the reference data deals and tickets point at (`hubspot_owner_id`, `pipeline`, `dealstage`).
//! Every portal starts with HubSpot's default deal pipeline and no owners; owners are added by
//! the demo or tests, pipelines also through the API (create, archive).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::portal::Portal;
use super::query::HubQuery;
use super::store::iso;
use super::{Call, Limit, error, known_type, parse_body, serve};
use crate::Sandbox;

/// Owners per page: HubSpot's default and its most.
const OWNERS_PAGE: usize = 100;
const OWNERS_MAX: usize = 500;

#[derive(Debug, Clone)]
pub struct Owner {
    pub id: u64,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub teams: Vec<(String, String)>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
}

impl Owner {
    /// `PublicOwner`.
    fn to_json(&self) -> Value {
        let teams: Vec<Value> =
            self.teams.iter().enumerate().map(|(i, (id, name))| json!({"id": id, "name": name, "primary": i == 0})).collect();
        json!({
            "id": self.id.to_string(), "email": self.email, "firstName": self.first_name, "lastName": self.last_name,
            "userId": self.user_id, "userIdIncludingInactive": self.user_id, "type": "PERSON", "teams": teams,
            "createdAt": iso(self.created_at), "updatedAt": iso(self.updated_at), "archived": self.archived,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    pub stages: Vec<Stage>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    #[serde(default)]
    pub id: String,
    pub label: String,
    pub display_order: i64,
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

impl Pipeline {
    /// `Pipeline`, its stages as `PipelineStage`s.
    fn to_json(&self) -> Value {
        let (created, updated) = (iso(self.created_at), iso(self.updated_at));
        let stages: Vec<Value> = self
            .stages
            .iter()
            .map(|s| {
                json!({"id": s.id, "label": s.label, "displayOrder": s.display_order, "metadata": s.metadata,
                    "createdAt": created, "updatedAt": updated, "archived": false, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"})
            })
            .collect();
        json!({"id": self.id, "label": self.label, "displayOrder": self.display_order, "stages": stages,
            "createdAt": created, "updatedAt": updated, "archived": self.archived})
    }
}

/// HubSpot's default deal pipeline: its stages and their win probabilities.
pub fn default_deal_pipeline(now: DateTime<Utc>) -> Pipeline {
    let stages = [
        ("appointmentscheduled", "Appointment Scheduled", "0.2"),
        ("qualifiedtobuy", "Qualified To Buy", "0.4"),
        ("presentationscheduled", "Presentation Scheduled", "0.6"),
        ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8"),
        ("contractsent", "Contract Sent", "0.9"),
        ("closedwon", "Closed Won", "1.0"),
        ("closedlost", "Closed Lost", "0.0"),
    ];
    let stages = stages
        .iter()
        .enumerate()
        .map(|(i, (id, label, probability))| Stage {
            id: (*id).to_owned(),
            label: (*label).to_owned(),
            display_order: i as i64,
            metadata: json!({"isClosed": id.starts_with("closed").to_string(), "probability": probability})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    Pipeline {
        id: "default".into(),
        label: "Sales Pipeline".into(),
        display_order: 0,
        stages,
        created_at: now,
        updated_at: now,
        archived: false,
    }
}

impl Portal {
    /// Adds an owner (a user of the portal): its owner id.
    pub fn add_owner(&mut self, email: &str, first_name: &str, last_name: &str, team: Option<&str>) -> u64 {
        let id = 70_000_000 + self.owners.len() as u64 + 1;
        let now = Utc::now();
        let teams = team.map(|t| vec![(format!("{}", 4_000 + t.len()), t.to_owned())]).unwrap_or_default();
        self.owners.push(Owner {
            id,
            user_id: 9_000_000 + self.owners.len() as u64 + 1,
            email: email.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            teams,
            created_at: now,
            updated_at: now,
            archived: false,
        });
        id
    }
}

/// `GET /crm/v3/owners?limit=&after=&archived=&email=`: owners in id order.
pub(crate) async fn owners(State(sandbox): State<Sandbox>, call: Call) -> Response {
    let query = HubQuery::of(&call.uri);
    let email =
        form_urlencoded::parse(call.uri.query().unwrap_or_default().as_bytes()).find(|(k, _)| k == "email").map(|(_, v)| v.into_owned());
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let query = match query {
            Ok(query) => query,
            Err(e) => return e,
        };
        let after: u64 = query.after.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        let limit = query.limit.unwrap_or(OWNERS_PAGE).clamp(1, OWNERS_MAX);
        let matching: Vec<&Owner> = portal
            .owners
            .iter()
            .filter(|o| o.archived == query.archived && o.id > after && email.as_ref().is_none_or(|e| *e == o.email))
            .collect();
        let results: Vec<Value> = matching.iter().take(limit).map(|o| o.to_json()).collect();
        let mut body = json!({"results": results});
        if matching.len() > limit {
            let next = matching[limit - 1].id.to_string();
            body["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
        }
        (StatusCode::OK, body)
    })
    .await
}

/// `GET /crm/v3/pipelines/{objectType}`: the object type's live pipelines with their stages.
pub(crate) async fn pipelines(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(portal, &kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let results: Vec<Value> = portal.pipelines_of(&kind).iter().filter(|p| !p.archived).map(Pipeline::to_json).collect();
        (StatusCode::OK, json!({"results": results}))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PipelineInput {
    label: String,
    display_order: i64,
    stages: Vec<Stage>,
}

/// `POST /crm/v3/pipelines/{objectType}`: a new pipeline (201); stages without an id get one.
pub(crate) async fn create_pipeline(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<PipelineInput, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(portal, &kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        let input = match parsed {
            Ok(input) => input,
            Err(e) => return e,
        };
        let now = Utc::now();
        let n = portal.pipelines_of(&kind).len();
        let id = format!("{}", 100_000 + n);
        let stages = input
            .stages
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                if s.id.is_empty() {
                    s.id = format!("{id}{i:02}");
                }
                s
            })
            .collect();
        let pipeline = Pipeline {
            id,
            label: input.label,
            display_order: input.display_order,
            stages,
            created_at: now,
            updated_at: now,
            archived: false,
        };
        let json = pipeline.to_json();
        portal.pipelines.entry(kind).or_default().push(pipeline);
        (StatusCode::CREATED, json)
    })
    .await
}

/// `DELETE /crm/v3/pipelines/{objectType}/{pipelineId}`: archives it (204).
pub(crate) async fn archive_pipeline(State(sandbox): State<Sandbox>, call: Call, Path((kind, id)): Path<(String, String)>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let kind = match known_type(portal, &kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        portal.pipelines_of(&kind);
        match portal.pipelines.get_mut(&kind).and_then(|list| list.iter_mut().find(|p| p.id == id && !p.archived)) {
            Some(pipeline) => {
                pipeline.archived = true;
                pipeline.updated_at = Utc::now();
                (StatusCode::NO_CONTENT, Value::Null)
            }
            None => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("No pipeline {id} for {kind}")),
        }
    })
    .await
}

impl Portal {
    /// The object type's pipelines; deals start with HubSpot's default one.
    pub fn pipelines_of(&mut self, kind: &str) -> &Vec<Pipeline> {
        self.pipelines
            .entry(kind.to_owned())
            .or_insert_with(|| if kind == "deals" { vec![default_deal_pipeline(Utc::now())] } else { Vec::new() })
    }
}
