//! `POST /crm/v3/objects/{objectType}/search`: filter groups (ORed) of filters (ANDed), sorts
//! (each breaking the ties of the one before), a free-text query, pages of ≤ 200 and no paging
//! past 10,000 results (API-CONTRACTS §1.3). Its own budget (5 per second, `SECONDLY` 429s, no rate-limit headers) is spent in
//! `serve`; records written less than `search_delay_ms` ago are not visible yet.

use std::cmp::Ordering;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::portal::Portal;
use super::store::{Object, stamp_properties};
use super::{default_wanted, error};

const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 10;
const MAX_FILTERS: usize = 25;
const MAX_PAGE: usize = 200;
const MAX_RESULTS: usize = 10_000;
const MAX_QUERY: usize = 3000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SearchBody {
    #[serde(default)]
    filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    sorts: Vec<Sort>,
    query: Option<String>,
    #[serde(default)]
    properties: Vec<String>,
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Deserialize)]
struct FilterGroup {
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    property_name: String,
    operator: String,
    value: Option<Value>,
    values: Option<Vec<Value>>,
    high_value: Option<Value>,
}

/// The spec types a sort as a string; the docs send objects. Both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum Sort {
    Name(String),
    Spec {
        #[serde(rename = "propertyName")]
        property_name: String,
        direction: Option<String>,
    },
}

type Answer = (StatusCode, Value);

fn invalid(message: impl Into<String>) -> Answer {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

/// What search sees of the objects: those written before `visible_before`, and of them all but
/// `skips` in its results (which its `total` still counts).
pub(crate) struct Index<'a> {
    pub visible_before: DateTime<Utc>,
    pub skips: &'a [u64],
}

/// Runs one search over the objects the index holds.
pub(crate) fn search(portal: &mut Portal, kind: &str, body: SearchBody, index: Index) -> Answer {
    let filters: usize = body.filter_groups.iter().map(|g| g.filters.len()).sum();
    if body.filter_groups.len() > MAX_GROUPS
        || body.filter_groups.iter().any(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
        || filters > MAX_FILTERS
    {
        return invalid(format!(
            "Too many filters: at most {MAX_GROUPS} filterGroups, {MAX_FILTERS_PER_GROUP} filters per group and {MAX_FILTERS} filters in all"
        ));
    }
    if body.query.as_ref().is_some_and(|q| q.chars().count() > MAX_QUERY) {
        return invalid(format!("query is longer than {MAX_QUERY} characters"));
    }
    for filter in body.filter_groups.iter().flat_map(|g| &g.filters) {
        if let Err(why) = check(filter) {
            return invalid(why);
        }
    }
    let limit = body.limit.unwrap_or(10);
    if limit > MAX_PAGE {
        return invalid(format!("limit must be at most {MAX_PAGE}, got {limit}"));
    }
    let offset: usize = match body.after.as_deref().map(str::parse).transpose() {
        Ok(after) => after.unwrap_or(0),
        Err(_) => return invalid(format!("Invalid after cursor: {}", body.after.unwrap_or_default())),
    };
    if offset + limit > MAX_RESULTS {
        return invalid(format!("Paging past {MAX_RESULTS} results is not supported; narrow the search (after {offset}, limit {limit})"));
    }

    let store = portal.store(kind);
    let query = body.query.as_deref().map(str::to_lowercase).filter(|q| !q.trim().is_empty());
    let mut hits: Vec<&Object> = store
        .live()
        .filter(|o| o.updated_at <= index.visible_before)
        .filter(|o| body.filter_groups.is_empty() || body.filter_groups.iter().any(|g| g.filters.iter().all(|f| matches(o, f))))
        .filter(|o| query.as_ref().is_none_or(|q| o.properties.values().any(|v| v.to_lowercase().contains(q.as_str()))))
        .collect();
    let sorts: Vec<(String, bool)> = body
        .sorts
        .iter()
        .map(|sort| match sort {
            Sort::Name(name) => (name.trim_start_matches('-').to_owned(), name.starts_with('-')),
            Sort::Spec { property_name, direction } => (property_name.clone(), direction.as_deref() == Some("DESCENDING")),
        })
        .collect();
    if !sorts.is_empty() {
        // each sort breaks the ties of the one before; the id breaks the last ones
        hits.sort_by(|a, b| {
            sorts
                .iter()
                .map(|(name, descending)| {
                    let order = compare_opt(a.properties.get(name), b.properties.get(name));
                    if *descending { order.reverse() } else { order }
                })
                .find(|order| order.is_ne())
                .unwrap_or_else(|| a.id.cmp(&b.id))
        });
    }
    let total = hits.len();
    let mut wanted = if body.properties.is_empty() { default_wanted(kind) } else { body.properties.clone() };
    let (created, modified) = stamp_properties(kind);
    wanted.extend([created, "hs_object_id", modified].map(String::from));
    // what the index skips is counted in the total, yet no page holds it
    let returned = hits.iter().filter(|o| !index.skips.contains(&o.id));
    let results: Vec<Value> = returned.skip(offset).take(limit).map(|o| o.to_json(Some(&wanted))).collect();
    let mut answer = json!({"total": total, "results": results});
    if offset + limit < total {
        let next = (offset + limit).to_string();
        answer["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
    }
    (StatusCode::OK, answer)
}

fn check(filter: &Filter) -> Result<(), String> {
    let needs = |what: bool, field: &str| {
        if what { Ok(()) } else { Err(format!("{} on {} needs {field}", filter.operator, filter.property_name)) }
    };
    match filter.operator.as_str() {
        "EQ" | "NEQ" | "LT" | "LTE" | "GT" | "GTE" | "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => needs(filter.value.is_some(), "value"),
        "BETWEEN" => needs(filter.value.is_some() && filter.high_value.is_some(), "value and highValue"),
        "IN" | "NOT_IN" => needs(filter.values.is_some(), "values"),
        "HAS_PROPERTY" | "NOT_HAS_PROPERTY" => Ok(()),
        other => Err(format!("Unknown filter operator {other}")),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A property value as it compares: numbers and dates (epoch ms or ISO 8601) by value, other
/// text without regard to case.
#[derive(PartialEq, PartialOrd)]
enum Comparable {
    Number(f64),
    Text(String),
}

fn comparable(value: &str) -> Comparable {
    if let Ok(n) = value.trim().parse::<f64>() {
        return Comparable::Number(n);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Comparable::Number(at.timestamp_millis() as f64);
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Comparable::Number(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis() as f64);
    }
    Comparable::Text(value.to_lowercase())
}

fn compare(a: &str, b: &str) -> Option<Ordering> {
    comparable(a).partial_cmp(&comparable(b))
}

/// Missing values sort first.
fn compare_opt(a: Option<&String>, b: Option<&String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => compare(a, b).unwrap_or_else(|| a.cmp(b)),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

fn matches(object: &Object, filter: &Filter) -> bool {
    let current = object.properties.get(&filter.property_name).filter(|v| !v.is_empty());
    let value = filter.value.as_ref().map(text).unwrap_or_default();
    let order = || current.and_then(|c| compare(c, &value));
    let listed = || filter.values.iter().flatten().map(text).any(|v| current.is_some_and(|c| compare(c, &v) == Some(Ordering::Equal)));
    let has_token = || {
        let token = value.to_lowercase();
        let token = token.trim_matches('*');
        current
            .is_some_and(|c| c.to_lowercase().split(|ch: char| !ch.is_alphanumeric() && ch != '@' && ch != '.').any(|t| t.contains(token)))
    };
    match filter.operator.as_str() {
        "EQ" => order() == Some(Ordering::Equal),
        "NEQ" => order() != Some(Ordering::Equal),
        "LT" => order() == Some(Ordering::Less),
        "LTE" => matches!(order(), Some(Ordering::Less | Ordering::Equal)),
        "GT" => order() == Some(Ordering::Greater),
        "GTE" => matches!(order(), Some(Ordering::Greater | Ordering::Equal)),
        "BETWEEN" => {
            let high = filter.high_value.as_ref().map(text).unwrap_or_default();
            matches!(order(), Some(Ordering::Greater | Ordering::Equal))
                && current.is_some_and(|c| matches!(compare(c, &high), Some(Ordering::Less | Ordering::Equal)))
        }
        "IN" => listed(),
        "NOT_IN" => !listed(),
        "HAS_PROPERTY" => current.is_some(),
        "NOT_HAS_PROPERTY" => current.is_none(),
        "CONTAINS_TOKEN" => has_token(),
        "NOT_CONTAINS_TOKEN" => !has_token(),
        _ => false,
    }
}
