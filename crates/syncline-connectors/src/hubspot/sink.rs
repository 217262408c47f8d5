//! The HubSpot sink: batch upserts by `idProperty`, several calls in flight as far as the
//! budget allows, one outcome per record from HubSpot's 200/207 answers, and a pre-flight check
//! of the mapped properties against the portal's definitions before the first write.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use syncline_core::{ConnectorError, ErrorClass, Outcome, Record, RecordError, Sink, Value};

use super::api::{BatchResponse, HubSpotApi, PropertyDef, StandardError, UpsertInput};
use super::config::{HubSpotProfile, MAX_INPUTS_PER_CALL, SinkStream};

pub struct HubSpotSink {
    api: Arc<HubSpotApi>,
    target: SinkStream,
    /// The object's property definitions by name, read once per run.
    definitions: Option<HashMap<String, PropertyDef>>,
    /// Fields already found writable.
    checked: HashSet<String>,
}

impl HubSpotSink {
    /// A sink with its own client for `profile`.
    pub fn open(profile: &HubSpotProfile, stream: SinkStream) -> Result<HubSpotSink, ConnectorError> {
        Ok(HubSpotSink::new(Arc::new(HubSpotApi::new(profile)?), stream))
    }

    pub fn new(api: Arc<HubSpotApi>, mut stream: SinkStream) -> HubSpotSink {
        stream.inputs_per_call = stream.inputs_per_call.clamp(1, MAX_INPUTS_PER_CALL);
        HubSpotSink { api, target: stream, definitions: None, checked: HashSet::new() }
    }

    /// What it writes to, for keying state: the portal (asked of HubSpot, so a token for another
    /// portal is another target) and the object type.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        let portal = self.api.account_id().await?;
        Ok(format!("hubspot:portal/{portal}/{}", self.target.object))
    }

    /// Checks that every field can be written to the object: the property exists, takes API
    /// writes, and (for enumerations) has an option for every value the transforms can produce;
    /// also that `idProperty` is unique. All problems are named in one `Config` error.
    pub async fn preflight<'f>(&mut self, fields: impl IntoIterator<Item = &'f str>) -> Result<(), ConnectorError> {
        if self.definitions.is_none() {
            let list = self.api.properties(&self.target.object).await?;
            self.definitions = Some(list.iter().map(|p| (p.name.clone(), p.clone())).collect());
        }
        let definitions = self.definitions.as_ref().expect("read above");
        let object = &self.target.object;
        let mut problems = Vec::new();
        let id_property = &self.target.id_property;
        match definitions.get(id_property) {
            None => problems.push(format!("the idProperty {id_property:?} is not a {object} property")),
            Some(p) if !p.has_unique_value => {
                problems.push(format!("the idProperty {id_property:?} does not have unique values, so it cannot identify records"))
            }
            Some(_) => {}
        }
        let new: BTreeSet<&str> = fields.into_iter().filter(|f| !self.checked.contains(*f)).collect();
        for field in &new {
            let Some(property) = definitions.get(*field) else {
                problems.push(format!("{field:?} is not a {object} property (create it in HubSpot, or rename or drop the field)"));
                continue;
            };
            if !property.writable() {
                problems.push(format!("{field:?} is read-only in HubSpot (drop it from the mapping)"));
                continue;
            }
            let produced = self.target.produced_values.get(*field);
            if let (true, Some(produced)) = (property.kind == "enumeration", produced) {
                let options: HashSet<&str> = property.options.iter().map(|o| o.value.as_str()).collect();
                let missing: Vec<&str> = produced.iter().map(String::as_str).filter(|v| !options.contains(v)).collect();
                if !missing.is_empty() {
                    let mut known: Vec<&str> = options.into_iter().collect();
                    known.sort_unstable();
                    problems.push(format!(
                        "{field:?} is an enumeration without the option(s) {missing:?} the transforms can produce (its options: {known:?})"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            let message = format!("HubSpot {object} properties do not fit the mapping: {}", problems.join("; "));
            return Err(ConnectorError::new(ErrorClass::Config, message));
        }
        self.checked.extend(new.into_iter().map(str::to_owned));
        Ok(())
    }

    /// The pre-flight check for the fields of these records not checked yet.
    async fn check_fields(&mut self, batch: &[Record]) -> Result<(), ConnectorError> {
        let unseen: BTreeSet<Arc<str>> =
            batch.iter().flat_map(|r| r.fields.iter().map(|(n, _)| n)).filter(|n| !self.checked.contains(&***n)).cloned().collect();
        if unseen.is_empty() && self.definitions.is_some() {
            return Ok(());
        }
        self.preflight(unseen.iter().map(|n| &**n)).await
    }
}

impl Sink for HubSpotSink {
    async fn write(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, ConnectorError> {
        self.check_fields(batch).await?;
        let (api, target) = (&*self.api, &self.target);
        // a second record for the same identity would silently overwrite the first
        let mut seen = HashSet::new();
        let duplicate: Vec<bool> = batch.iter().map(|r| !seen.insert(r.key.to_lowercase())).collect();
        let unique: Vec<&Record> = batch.iter().zip(&duplicate).filter(|(_, d)| !**d).map(|(r, _)| r).collect();
        // collected first: a lazy `map` over the chunks trips the compiler's Send-lifetime inference
        let calls: Vec<_> = unique.chunks(target.inputs_per_call).map(|chunk| upsert(api, target, chunk)).collect();
        let written: Vec<Vec<Outcome>> = stream::iter(calls).buffered(api.in_flight()).try_collect().await?;
        let mut written = written.into_iter().flatten();
        let outcomes = batch
            .iter()
            .zip(duplicate)
            .map(|(record, duplicate)| {
                if duplicate {
                    let message = format!("needs review: another record in the same batch has {} {:?}", target.id_property, record.key);
                    Outcome::Rejected(RecordError {
                        class: ErrorClass::Conflict,
                        field: target.id_property.clone(),
                        rule: "hubspot".into(),
                        message,
                    })
                } else {
                    written.next().expect("one outcome per unique record")
                }
            })
            .collect();
        Ok(outcomes)
    }

    /// Every call goes through the portal's `Policy`, whose limits are the ceiling.
    fn retries_itself(&self) -> bool {
        true
    }

    /// The objects' current values of the batch's fields, read by `idProperty` (dry runs).
    async fn current(&mut self, batch: &[Record]) -> Result<Option<Vec<Record>>, ConnectorError> {
        self.check_fields(batch).await?;
        let (api, target) = (&*self.api, &self.target);
        let mut fields: BTreeSet<String> = batch.iter().flat_map(|r| r.fields.iter().map(|(n, _)| n.to_string())).collect();
        fields.insert(target.id_property.clone());
        let fields: Vec<String> = fields.into_iter().collect();
        let ids: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
        let reads: Vec<_> =
            ids.chunks(target.inputs_per_call).map(|chunk| api.batch_read(&target.object, &target.id_property, chunk, &fields)).collect();
        let answers: Vec<BatchResponse> = stream::iter(reads).buffered(api.in_flight()).try_collect().await?;
        let mut current = Vec::new();
        for object in answers.into_iter().flat_map(|a| a.results) {
            let value = |name: &str| match object.properties.get(name) {
                Some(Some(text)) if !text.is_empty() => Value::Text(text.as_str().into()),
                _ => Value::Null,
            };
            let key = value(&target.id_property).as_text().map(|k| k.into_owned()).unwrap_or_default();
            let mut record = Record::new(key);
            for name in &fields {
                record.set(name, value(name));
            }
            current.push(record);
        }
        Ok(Some(current))
    }
}

/// One batch upsert; a call that still fails transiently after the policy's retries fails its
/// records (they become dead letters) instead of the run. A portal that cannot be reached at all
/// fails the run: that says nothing about the records.
async fn upsert(api: &HubSpotApi, target: &SinkStream, chunk: &[&Record]) -> Result<Vec<Outcome>, ConnectorError> {
    let inputs: Vec<UpsertInput> = chunk.iter().map(|r| input(target, r)).collect();
    match api.batch_upsert(&target.object, &inputs).await {
        Ok(response) => Ok(outcomes(target, &inputs, response)),
        Err(e) if matches!(e.class, ErrorClass::Transient { .. }) => {
            let failed = RecordError { class: e.class.clone(), field: "-".into(), rule: "hubspot".into(), message: e.message };
            Ok(vec![Outcome::Failed(failed); chunk.len()])
        }
        Err(e) => Err(e),
    }
}

/// A record as an upsert input: every field as HubSpot's string value, the key included.
fn input(target: &SinkStream, record: &Record) -> UpsertInput {
    let mut properties: std::collections::BTreeMap<String, String> =
        record.fields.iter().map(|(name, value)| (name.to_string(), hubspot_value(value))).collect();
    properties.insert(target.id_property.clone(), record.key.clone());
    UpsertInput { id: record.key.clone(), id_property: target.id_property.clone(), properties }
}

/// HubSpot takes every property value as a string: dates as `YYYY-MM-DD`, datetimes as epoch
/// milliseconds (UTC), and the empty string clears a property.
fn hubspot_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Timestamp(t) => t.and_utc().timestamp_millis().to_string(),
        Value::TimestampTz(t) => t.timestamp_millis().to_string(),
        other => other.as_text().map(|t| t.into_owned()).unwrap_or_default(),
    }
}

/// One outcome per input, matched by the `idProperty` value HubSpot echoes in results and the
/// ids it names in each error's context.
fn outcomes(target: &SinkStream, inputs: &[UpsertInput], response: BatchResponse) -> Vec<Outcome> {
    let mut by_id: HashMap<String, Outcome> = HashMap::new();
    for result in &response.results {
        if let Some(Some(id)) = result.properties.get(&target.id_property) {
            let outcome = if result.new == Some(true) { Outcome::Created } else { Outcome::Updated };
            by_id.insert(id.to_lowercase(), outcome);
        }
    }
    let mut unattributed = Vec::new();
    for error in &response.errors {
        let ids = error.context.get("ids").filter(|ids| !ids.is_empty());
        match ids {
            Some(ids) => {
                for id in ids {
                    by_id.insert(id.to_lowercase(), Outcome::Rejected(rejection(target, error)));
                }
            }
            None => unattributed.push(error),
        }
    }
    let mut outcomes: Vec<Option<Outcome>> = inputs.iter().map(|i| by_id.remove(&i.id.to_lowercase())).collect();
    let unmatched = outcomes.iter().filter(|o| o.is_none()).count();
    for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
        *slot = Some(match unattributed.as_slice() {
            [only] if unmatched == 1 => Outcome::Rejected(rejection(target, only)),
            others => {
                let hint = others.first().map(|e| format!(" (HubSpot reported: {})", e.message)).unwrap_or_default();
                let message = format!("HubSpot's answer had no result for this record{hint}");
                Outcome::Failed(RecordError {
                    class: ErrorClass::Transient { retry_after: None },
                    field: "-".into(),
                    rule: "hubspot".into(),
                    message,
                })
            }
        });
    }
    outcomes.into_iter().map(|o| o.expect("every slot filled")).collect()
}

/// A per-input HubSpot error as a dead-letter reason: the property it names, HubSpot's code and
/// message; duplicate identities are conflicts for a person to review.
fn rejection(target: &SinkStream, error: &StandardError) -> RecordError {
    let conflict = matches!(error.category.as_str(), "CONFLICT" | "OBJECT_ALREADY_EXISTS");
    let field = error.errors.iter().find_map(|d| d.field.clone()).unwrap_or_else(|| "-".into());
    let message = if conflict {
        format!(
            "needs review: {} (upserting {} {:?})",
            error.message,
            target.id_property,
            error.context.get("ids").and_then(|i| i.first()).map_or("", |s| s)
        )
    } else if error.errors.is_empty() {
        format!("{}: {}", error.category, error.message)
    } else {
        let details: Vec<String> = error
            .errors
            .iter()
            .map(|d| match &d.code {
                Some(code) => format!("{code}: {}", d.message),
                None => d.message.clone(),
            })
            .collect();
        format!("{}: {}", error.category, details.join("; "))
    };
    RecordError { class: if conflict { ErrorClass::Conflict } else { ErrorClass::Data }, field, rule: "hubspot".into(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SinkStream {
        SinkStream::new("contacts", "numero_asociado")
    }

    fn inputs(ids: &[&str]) -> Vec<UpsertInput> {
        ids.iter()
            .map(|id| UpsertInput { id: id.to_string(), id_property: "numero_asociado".into(), properties: Default::default() })
            .collect()
    }

    #[test]
    fn outcomes_are_matched_by_id() {
        let response: BatchResponse = serde_json::from_value(serde_json::json!({
            "status": "COMPLETE",
            "results": [
                {"id": "11", "properties": {"numero_asociado": "2"}, "new": false},
                {"id": "12", "properties": {"numero_asociado": "1"}, "new": true},
            ],
            "numErrors": 2,
            "errors": [
                {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid",
                 "context": {"ids": ["3"]}, "errors": [{"message": "9 was not one of the allowed options", "code": "INVALID_OPTION", "in": "marital_status"}]},
                {"status": "error", "category": "CONFLICT", "message": "Contact already exists. Existing ID: 7", "context": {"ids": ["4"]}},
            ],
        }))
        .unwrap();
        let got = outcomes(&target(), &inputs(&["1", "2", "3", "4", "5"]), response);
        assert_eq!(got[0], Outcome::Created);
        assert_eq!(got[1], Outcome::Updated);
        let Outcome::Rejected(e) = &got[2] else { panic!("{:?}", got[2]) };
        assert_eq!((e.class.clone(), e.field.as_str()), (ErrorClass::Data, "marital_status"));
        assert!(e.message.contains("INVALID_OPTION: 9 was not one of the allowed options"), "{}", e.message);
        let Outcome::Rejected(e) = &got[3] else { panic!("{:?}", got[3]) };
        assert_eq!(e.class, ErrorClass::Conflict);
        assert!(e.message.contains("Existing ID: 7"));
        assert!(matches!(&got[4], Outcome::Failed(e) if e.class == ErrorClass::Transient { retry_after: None }));
    }

    #[test]
    fn values_are_hubspot_strings() {
        let day = chrono::NaiveDate::from_ymd_opt(1980, 5, 1).unwrap();
        assert_eq!(hubspot_value(&Value::Date(day)), "1980-05-01");
        assert_eq!(hubspot_value(&Value::Timestamp(day.and_hms_opt(0, 0, 1).unwrap())), "325987201000");
        assert_eq!(hubspot_value(&Value::Null), "");
        assert_eq!(hubspot_value(&Value::Bool(true)), "true");
        assert_eq!(hubspot_value(&Value::Decimal("1200.50".into())), "1200.50");
    }
}
