//! HubSpot's wire: the request and response shapes syncline uses (the only place they are
//! written), its limits, and `classify`, which turns HubSpot's answers into error classes and
//! budget facts. Every call goes through the shared [`Endpoint`](crate::http::Endpoint).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncline_core::metric::Service;
use syncline_core::{ConnectorError, ErrorClass, FieldType};
use syncline_resilience::{Budget, Feedback, Health, Policy, PolicyConfig, Reply, ResponseCache, parse_retry_after};

use super::config::HubSpotProfile;
use crate::http::{Answer, Endpoint, Request, shared};

/// Objects per list page (API-CONTRACTS §1.2).
pub const LIST_PAGE: usize = 100;
/// Objects per search page (§1.3).
pub const SEARCH_PAGE: usize = 200;
/// Results one search query can page through; paging past them is a 400 (§1.3).
pub const SEARCH_MAX_RESULTS: usize = 10_000;
/// The search API's limit per portal (§1.3).
const SEARCHES_PER_SECOND: u32 = 5;

/// One property definition (`Property` in the properties spec); only what syncline checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub field_type: String,
    #[serde(default)]
    pub options: Vec<PropertyOptionDef>,
    #[serde(default)]
    pub has_unique_value: bool,
    #[serde(default)]
    pub calculated: bool,
    #[serde(default)]
    pub modification_metadata: Option<ModificationMetadata>,
}

impl PropertyDef {
    /// What its values are, for a warehouse column: numbers stay exact, times keep their zone,
    /// options and everything else are text. The object id is a whole number.
    pub fn field_type(&self) -> FieldType {
        match (self.name.as_str(), self.kind.as_str()) {
            ("hs_object_id", _) => FieldType::Int,
            (_, "number") => FieldType::Decimal,
            (_, "datetime") => FieldType::TimestampTz,
            (_, "date") => FieldType::Date,
            (_, "bool") => FieldType::Bool,
            _ => FieldType::Text,
        }
    }

    /// Whether a value can be written to it through the API.
    pub fn writable(&self) -> bool {
        !self.calculated && !self.modification_metadata.as_ref().is_some_and(|m| m.read_only_value)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PropertyOptionDef {
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationMetadata {
    #[serde(default)]
    pub read_only_value: bool,
}

#[derive(Deserialize)]
struct PropertyList {
    results: Vec<PropertyDef>,
}

/// One input of a batch upsert.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpsertInput {
    pub id: String,
    pub id_property: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Inputs<T> {
    inputs: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadRequest<'a> {
    inputs: Vec<ReadInput<'a>>,
    properties: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    properties_with_history: &'a [String],
    id_property: &'a str,
}

#[derive(Serialize)]
struct ReadInput<'a> {
    id: &'a str,
}

/// A batch answer, 200 or 207 (`BatchResponseSimplePublicObject[WithErrors]`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    #[serde(default)]
    pub results: Vec<SimpleObject>,
    #[serde(default)]
    pub errors: Vec<StandardError>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimpleObject {
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Upserts only: whether the object was created.
    #[serde(default, skip_serializing)]
    pub new: Option<bool>,
    /// Each property asked for with its history: its values, newest first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties_with_history: BTreeMap<String, Vec<HistoryValue>>,
}

/// `ValueWithTimestamp`: one value a property had, and when and by what it was set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryValue {
    pub value: String,
    pub timestamp: String,
    pub source_type: Option<String>,
    pub source_id: Option<String>,
    pub updated_by_user_id: Option<i64>,
}

/// One input's error inside a 207; every field is optional in practice (API-CONTRACTS §1.5).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StandardError {
    pub category: String,
    pub message: String,
    pub context: BTreeMap<String, Vec<String>>,
    pub errors: Vec<ErrorDetail>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub message: String,
    pub code: Option<String>,
    #[serde(rename = "in")]
    pub field: Option<String>,
}

/// A search (`PublicObjectSearchRequest`): filter groups are ORed, the filters in a group ANDed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    pub filter_groups: Vec<FilterGroup>,
    pub sorts: Vec<Sort>,
    pub properties: Vec<String>,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FilterGroup {
    pub filters: Vec<Filter>,
}

/// One condition; values travel as strings (times as epoch milliseconds).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    pub operator: Operator,
    pub value: String,
}

impl Filter {
    pub fn new(property: &str, operator: Operator, value: impl ToString) -> Filter {
        Filter { property_name: property.to_owned(), operator, value: value.to_string() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// An ascending sort on one property.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    pub property_name: String,
    pub direction: &'static str,
}

impl Sort {
    pub fn ascending(property: &str) -> Sort {
        Sort { property_name: property.to_owned(), direction: "ASCENDING" }
    }
}

/// A list page (`CollectionResponseSimplePublicObjectWithAssociationsForwardPaging`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListPage {
    pub results: Vec<AsSent<SimpleObject>>,
    pub paging: Option<Paging>,
}

impl ListPage {
    /// The cursor of the next page, if there is one.
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref().and_then(|p| p.next.as_ref()).map(|n| n.after.as_str())
    }
}

/// A value with the JSON it was sent as: a source keeps an object's own text in `_raw` (every
/// field HubSpot sent, in its order) without writing it again.
#[derive(Debug)]
pub struct AsSent<T> {
    pub value: T,
    pub json: Box<serde_json::value::RawValue>,
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for AsSent<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let value = serde_json::from_str(json.get()).map_err(serde::de::Error::custom)?;
        Ok(AsSent { value, json })
    }
}

/// A search page (`CollectionResponseWithTotalSimplePublicObjectForwardPaging`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchPage {
    pub total: u64,
    pub results: Vec<AsSent<SimpleObject>>,
    pub paging: Option<Paging>,
}

impl SearchPage {
    /// The cursor of the next page, if there is one.
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref().and_then(|p| p.next.as_ref()).map(|n| n.after.as_str())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    pub next: Option<NextPage>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NextPage {
    pub after: String,
}

/// `GET /account-info/v3/details`, only the id.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDetails {
    portal_id: u64,
}

/// A whole-call error body (`Error`, and the 429 body with `policyName`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ErrorBody {
    message: String,
    category: Option<String>,
    policy_name: Option<String>,
}

/// A HubSpot portal as seen through one private app token.
pub struct HubSpotApi {
    endpoint: Endpoint,
    /// Calls in flight at once that the portal's policy admits.
    in_flight: usize,
    policy: Policy,
    /// The search API's own 5 requests per second, outside the ten-second budget.
    search_policy: Policy,
    /// Calls exempt from the ten-second budget (v4 association batches): retries and breaker alike.
    exempt_policy: Policy,
    /// Property definitions change rarely and every pre-flight reads them.
    definitions: ResponseCache<Vec<PropertyDef>>,
}

impl HubSpotApi {
    /// A client whose calls share the portal's budget and a circuit breaker.
    pub fn new(profile: &HubSpotProfile) -> Result<HubSpotApi, ConnectorError> {
        let config = PolicyConfig {
            name: "hubspot".into(),
            // 1 % kept clear of the window's edge: our clock and HubSpot's are not the same clock
            budget: Some(Budget::per(profile.calls_per_ten_seconds, Duration::from_secs(10)).with_margin(Duration::from_millis(100))),
            max_in_flight: Some(profile.in_flight.max(1)),
            bulkhead_wait: profile.call_timeout,
            overall_timeout: profile.call_timeout,
            unavailable_for: profile.unreachable_for,
            ..PolicyConfig::default()
        };
        HubSpotApi::with_policy(profile, config)
    }

    /// A client with its own policy (`check` wants a short one).
    pub fn with_policy(profile: &HubSpotProfile, config: PolicyConfig) -> Result<HubSpotApi, ConnectorError> {
        let exempt = PolicyConfig { name: "hubspot-exempt".into(), budget: None, ..config.clone() };
        let search = PolicyConfig {
            name: "hubspot-search".into(),
            budget: Some(Budget::per(SEARCHES_PER_SECOND, Duration::from_secs(1)).with_margin(Duration::from_millis(20))),
            ..config.clone()
        };
        Ok(HubSpotApi {
            endpoint: Endpoint::new(Service::HUBSPOT, &profile.base_url, &profile.token)?,
            in_flight: profile.in_flight.max(1),
            policy: shared(Policy::new(config), &profile.budgets, "hubspot", &profile.base_url, &profile.token),
            search_policy: shared(Policy::new(search), &profile.budgets, "hubspot-search", &profile.base_url, &profile.token),
            exempt_policy: Policy::new(exempt),
            definitions: ResponseCache::new(Duration::from_secs(300), 100),
        })
    }

    /// `GET /crm/v3/properties/{object}`, cached for five minutes.
    pub async fn properties(&self, object: &str) -> Result<Arc<Vec<PropertyDef>>, ConnectorError> {
        let path = format!("/crm/v3/properties/{}", path_segment(object));
        let fetch = async { self.call::<PropertyList>("properties", Request::get(&path)).await.map(|list| list.results) };
        self.definitions.get_or_fetch(&path, fetch).await.map_err(|e| ConnectorError::new(e.class.clone(), e.message.clone()))
    }

    /// `POST /crm/v3/objects/{object}/batch/upsert` (≤ 100 inputs).
    pub async fn batch_upsert(&self, object: &str, inputs: &[UpsertInput]) -> Result<BatchResponse, ConnectorError> {
        self.call("batch_upsert", Request::post(format!("/crm/v3/objects/{}/batch/upsert", path_segment(object)), &Inputs { inputs })).await
    }

    /// `POST /crm/v3/objects/{object}/batch/read` by `id_property` (≤ 100 ids).
    pub async fn batch_read(
        &self,
        object: &str,
        id_property: &str,
        ids: &[&str],
        properties: &[String],
    ) -> Result<BatchResponse, ConnectorError> {
        let request =
            ReadRequest { inputs: ids.iter().map(|id| ReadInput { id }).collect(), properties, properties_with_history: &[], id_property };
        self.call("batch_read", Request::post(format!("/crm/v3/objects/{}/batch/read", path_segment(object)), &request)).await
    }

    /// `POST /crm/v3/objects/{object}/batch/read` of objects by id (≤ 100), with every value
    /// `history` properties had (`propertiesWithHistory`).
    pub async fn batch_read_history(&self, object: &str, ids: &[&str], history: &[String]) -> Result<BatchResponse, ConnectorError> {
        let inputs = ids.iter().map(|id| ReadInput { id }).collect();
        let request = ReadRequest { inputs, properties: &[], properties_with_history: history, id_property: "hs_object_id" };
        self.call("batch_read_history", Request::post(format!("/crm/v3/objects/{}/batch/read", path_segment(object)), &request)).await
    }

    /// `GET /crm/v3/objects/{object}/{id}` with `properties` (a 404 is a `Data` error).
    pub async fn get_object(&self, object: &str, id: &str, properties: &[String]) -> Result<SimpleObject, ConnectorError> {
        let query = query(&[("properties", &properties.join(","))]);
        self.call("get_object", Request::get(format!("/crm/v3/objects/{}/{id}?{query}", path_segment(object)))).await
    }

    /// `GET /crm/v3/objects/{object}`: a page of up to 100 objects in id order, after `after`.
    pub async fn list(&self, object: &str, properties: &[String], after: Option<&str>) -> Result<ListPage, ConnectorError> {
        let (limit, properties) = (LIST_PAGE.to_string(), properties.join(","));
        let mut pairs = vec![("limit", limit.as_str()), ("properties", properties.as_str())];
        pairs.extend(after.map(|after| ("after", after)));
        self.call("list", Request::get(format!("/crm/v3/objects/{}?{}", path_segment(object), query(&pairs)))).await
    }

    /// `GET /crm/v3/objects/{object}?archived=true`: a page of up to 100 archived objects (id
    /// and `archivedAt`) in id order, after `after`.
    pub async fn list_archived(&self, object: &str, after: Option<&str>) -> Result<ListPage, ConnectorError> {
        let limit = LIST_PAGE.to_string();
        let mut pairs = vec![("limit", limit.as_str()), ("archived", "true"), ("properties", "hs_object_id")];
        pairs.extend(after.map(|after| ("after", after)));
        self.call("list_archived", Request::get(format!("/crm/v3/objects/{}?{}", path_segment(object), query(&pairs)))).await
    }

    /// `POST /crm/v3/objects/{object}/search`, paced by the search API's own limit.
    pub async fn search(&self, object: &str, request: &SearchRequest) -> Result<SearchPage, ConnectorError> {
        let request = Request::post(format!("/crm/v3/objects/{}/search", path_segment(object)), request);
        let what = request.what();
        let body = self.endpoint.call(&self.search_policy, "search", request, classify).await?;
        crate::http::decode(Service::HUBSPOT, &what, &body)
    }

    /// `POST /crm/v4/associations/{from}/{to}/batch/read` (≤ 1,000 inputs): the objects of type
    /// `to` each input is linked to, with the types of each link. Exempt from the ten-second
    /// budget (the spec's `x-hubspot-rate-limit-exemptions`), so it only waits for a free call
    /// slot. An object with no links is an error beside the results (207), not a failure.
    pub async fn associations(&self, from: &str, to: &str, inputs: &[AssociationsInput<'_>]) -> Result<AssociationBatch, ConnectorError> {
        let path = format!("/crm/v4/associations/{}/{}/batch/read", path_segment(from), path_segment(to));
        let request = Request::post(path, &Inputs { inputs });
        let what = request.what();
        let body = self.endpoint.call(&self.exempt_policy, "associations_read", request, classify).await?;
        crate::http::decode(Service::HUBSPOT, &what, &body)
    }

    /// `GET /crm/v3/owners`: a page of up to 100 owners (live, or archived ones), after `after`.
    pub async fn owners(&self, after: Option<&str>, archived: bool) -> Result<OwnerPage, ConnectorError> {
        let mut pairs = vec![("limit", "100"), ("archived", if archived { "true" } else { "false" })];
        pairs.extend(after.map(|after| ("after", after)));
        self.call("owners", Request::get(format!("/crm/v3/owners?{}", query(&pairs)))).await
    }

    /// `GET /crm/v3/pipelines/{object}`: the object type's pipelines with their stages.
    pub async fn pipelines(&self, object: &str) -> Result<PipelineList, ConnectorError> {
        self.call("pipelines", Request::get(format!("/crm/v3/pipelines/{}", path_segment(object)))).await
    }

    /// Calls worth keeping in flight at once (the profile's `in_flight`).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How the portal's and search's policies are doing, for `/readyz`.
    pub fn health(&self) -> Vec<Health> {
        vec![self.policy.health(), self.search_policy.health()]
    }

    /// The portal's id (`portalId` in its webhook events), from `GET /account-info/v3/details`.
    pub async fn account_id(&self) -> Result<u64, ConnectorError> {
        self.call::<AccountDetails>("account_details", Request::get("/account-info/v3/details")).await.map(|d| d.portal_id)
    }

    /// One call through the portal's policy, its answer decoded.
    async fn call<T: serde::de::DeserializeOwned>(&self, operation: &str, request: Request) -> Result<T, ConnectorError> {
        let what = request.what();
        let body = self.endpoint.call(&self.policy, operation, request, classify).await?;
        crate::http::decode(Service::HUBSPOT, &what, &body)
    }
}

/// How an object type is named in a path: standard types and `2-…` ids as they are, a custom
/// object's name as HubSpot's short qualified name `p_<name>`.
pub fn path_segment(object: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let qualified = object.starts_with("p_") || object.strip_prefix('p').and_then(|rest| rest.split('_').next()).is_some_and(digits);
    let standard = super::config::standard_objects().any(|s| s == object);
    let id = object.split('-').all(digits);
    if standard || id || qualified { object.to_owned() } else { format!("p_{object}") }
}

/// One input of an associations batch read: an object id, and where its links resume.
#[derive(Debug, Serialize)]
pub struct AssociationsInput<'a> {
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<&'a str>,
}

/// `BatchResponsePublicAssociationMultiWithLabel`: each object's links (objects with none are
/// among its `errors`, which say nothing more).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AssociationBatch {
    pub results: Vec<AssociationsOf>,
}

#[derive(Debug, Deserialize)]
pub struct AssociationsOf {
    pub from: ObjectRef,
    #[serde(default)]
    pub to: Vec<Associated>,
    pub paging: Option<Paging>,
}

impl AssociationsOf {
    /// Where this object's links continue, when it has more than one answer holds.
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref().and_then(|p| p.next.as_ref()).map(|n| n.after.as_str())
    }
}

#[derive(Debug, Deserialize)]
pub struct ObjectRef {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
}

/// One linked object and the types of the link.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Associated {
    /// A string in the spec, a number in some answers: kept as its digits.
    #[serde(deserialize_with = "id_text")]
    pub to_object_id: String,
    #[serde(default)]
    pub association_types: Vec<AssociationKind>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationKind {
    pub category: String,
    pub type_id: i64,
    pub label: Option<String>,
}

/// An id written as a string or as a number.
fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("an id, not {other}"))),
    }
}

/// The portal's owners, a page (`CollectionResponsePublicOwnerForwardPaging`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub user_id: Option<i64>,
    #[serde(default)]
    pub teams: Vec<Team>,
    #[serde(default)]
    pub archived: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OwnerPage {
    pub results: Vec<Owner>,
    pub paging: Option<super::api::Paging>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    #[serde(default)]
    pub stages: Vec<PipelineStage>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStage {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PipelineList {
    pub results: Vec<Pipeline>,
}

/// A query string (form-encoded).
fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// An HTTP answer as an attempt's outcome: 2xx (207 included) is a success; the rest has a
/// class. (A reset or a truncated body is transient, as the endpoint says: an upsert by
/// idProperty is safe to repeat.)
fn classify(answer: Answer, what: &str) -> Reply<Vec<u8>> {
    let mut feedback = feedback(&answer);
    if answer.status.is_success() {
        return Reply::ok(answer.body).with_feedback(feedback);
    }
    let error: ErrorBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    let category = error.category.as_deref().or(error.policy_name.as_deref()).unwrap_or("no category");
    let message = format!("{what}: HubSpot answered {} ({category}): {}", answer.status.as_u16(), error.message);
    let class = match answer.status.as_u16() {
        429 => {
            match error.policy_name.as_deref() {
                Some("DAILY") => feedback.daily_remaining = Some(0),
                // the search API's per-second limit reopens within a second
                Some("SECONDLY") => feedback.retry_after = feedback.retry_after.or(Some(Duration::from_secs(1))),
                _ => {}
            }
            ErrorClass::RateLimited
        }
        401 | 403 => ErrorClass::Config,
        408 | 500..=599 => ErrorClass::Transient { retry_after: feedback.retry_after },
        409 => ErrorClass::Conflict,
        _ => ErrorClass::Data,
    };
    Reply::failed(class, message).with_feedback(feedback)
}

/// The budget facts in HubSpot's rate-limit headers and `Retry-After`.
fn feedback(answer: &Answer) -> Feedback {
    Feedback {
        max: answer.header("x-hubspot-ratelimit-max").and_then(|v| v.parse().ok()),
        remaining: answer.header("x-hubspot-ratelimit-remaining").and_then(|v| v.parse().ok()),
        daily_remaining: answer.header("x-hubspot-ratelimit-daily-remaining").and_then(|v| v.parse().ok()),
        retry_after: answer.header("retry-after").and_then(|v| parse_retry_after(v, chrono::Utc::now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn answer(status: StatusCode, pairs: &[(&'static str, &str)], body: &[u8]) -> Answer {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        Answer { status, headers, body: body.to_vec() }
    }

    #[test]
    fn classes_follow_the_status() {
        let class =
            |status: u16, body: &str| match classify(answer(StatusCode::from_u16(status).unwrap(), &[], body.as_bytes()), "x").outcome {
                Ok(_) => None,
                Err(f) => Some(f.class),
            };
        assert_eq!(class(200, "{}"), None);
        assert_eq!(class(207, "{}"), None);
        assert_eq!(class(401, r#"{"category":"INVALID_AUTHENTICATION","message":"no"}"#), Some(ErrorClass::Config));
        assert_eq!(class(429, r#"{"policyName":"TEN_SECONDLY_ROLLING"}"#), Some(ErrorClass::RateLimited));
        assert_eq!(class(503, "not json"), Some(ErrorClass::Transient { retry_after: None }));
        assert_eq!(class(409, r#"{"category":"CONFLICT"}"#), Some(ErrorClass::Conflict));
        assert_eq!(class(400, r#"{"category":"VALIDATION_ERROR"}"#), Some(ErrorClass::Data));
    }

    #[test]
    fn rate_limit_facts_are_learned() {
        let reply = classify(
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                &[("x-hubspot-ratelimit-max", "100"), ("x-hubspot-ratelimit-remaining", "0"), ("retry-after", "3")],
                br#"{"policyName":"TEN_SECONDLY_ROLLING","message":"You have reached your ten_secondly_rolling limit."}"#,
            ),
            "POST /x",
        );
        assert_eq!(
            reply.feedback,
            Feedback { max: Some(100), remaining: Some(0), daily_remaining: None, retry_after: Some(Duration::from_secs(3)) }
        );
        assert!(reply.outcome.unwrap_err().message.contains("ten_secondly_rolling limit"));

        let daily = classify(answer(StatusCode::TOO_MANY_REQUESTS, &[], br#"{"policyName":"DAILY"}"#), "x");
        assert_eq!(daily.feedback.daily_remaining, Some(0));
        let secondly = classify(answer(StatusCode::TOO_MANY_REQUESTS, &[], br#"{"policyName":"SECONDLY"}"#), "x");
        assert_eq!(secondly.feedback.retry_after, Some(Duration::from_secs(1)));
    }
}
