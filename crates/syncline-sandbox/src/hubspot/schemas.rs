//! Custom object schemas (`/crm-object-schemas/v3/schemas`, API-CONTRACTS §1.2): define a new
//! object type `2-<n>` with its properties, required and display properties and associations,
//! read, patch and delete it. Once defined, the type is reached at `/crm/v3/objects/2-<n>` (or
//! its fully qualified name `p<portal>_<name>`) like any standard one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::portal::{Portal, object_type_id, standard_type};
use super::properties::{Property, defaults};
use super::query::HubQuery;
use super::store::iso;
use super::{Answer, Call, Limit, error, parse_body, serve};
use crate::Sandbox;

/// `ObjectSchemaEgg`: what creating a custom object takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaEgg {
    pub name: String,
    pub labels: Labels,
    #[serde(default)]
    pub description: String,
    pub properties: Vec<Property>,
    #[serde(default)]
    pub required_properties: Vec<String>,
    pub primary_display_property: Option<String>,
    #[serde(default)]
    pub secondary_display_properties: Vec<String>,
    #[serde(default)]
    pub searchable_properties: Vec<String>,
    /// Object types records of this one can be associated with (`CONTACT`, `0-1`…).
    #[serde(default)]
    pub associated_objects: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Labels {
    pub singular: String,
    pub plural: String,
}

/// A defined custom object type. Its property definitions live with the portal's others.
#[derive(Debug, Clone)]
pub struct CustomSchema {
    /// `2-<n>`.
    pub object_type_id: String,
    pub name: String,
    pub labels: Labels,
    pub description: String,
    pub required_properties: Vec<String>,
    pub primary_display_property: Option<String>,
    pub secondary_display_properties: Vec<String>,
    pub searchable_properties: Vec<String>,
    /// objectTypeIds this type associates with.
    pub associations: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
}

/// Why a schema cannot be defined.
pub enum SchemaError {
    Invalid(String),
    /// A live custom object already has that name.
    Exists(String),
}

impl SchemaError {
    pub fn message(&self) -> &str {
        match self {
            SchemaError::Invalid(m) | SchemaError::Exists(m) => m,
        }
    }

    fn answer(self) -> Answer {
        match self {
            SchemaError::Invalid(m) => error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", m),
            SchemaError::Exists(m) => error(StatusCode::CONFLICT, "OBJECT_ALREADY_EXISTS", m),
        }
    }
}

const PROPERTY_TYPES: [&str; 7] = ["bool", "date", "datetime", "enumeration", "number", "phone_number", "string"];

fn is_internal_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl CustomSchema {
    pub fn fully_qualified_name(&self, portal_id: u64) -> String {
        format!("p{portal_id}_{}", self.name)
    }

    /// `ObjectTypeDefinition`, as a patch answers.
    fn definition_json(&self, portal: &Portal) -> Value {
        json!({
            "id": self.object_type_id.trim_start_matches("2-"),
            "objectTypeId": self.object_type_id,
            "name": self.name,
            "fullyQualifiedName": self.fully_qualified_name(portal.id),
            "labels": {"singular": self.labels.singular, "plural": self.labels.plural},
            "description": self.description,
            "requiredProperties": self.required_properties,
            "primaryDisplayProperty": self.primary_display_property,
            "secondaryDisplayProperties": self.secondary_display_properties,
            "searchableProperties": self.searchable_properties,
            "portalId": portal.id,
            "archived": self.archived,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        })
    }

    /// `ObjectSchema`: the definition with its properties and association definitions.
    fn to_json(&self, portal: &Portal) -> Value {
        let mut json = self.definition_json(portal);
        let properties = portal.properties.get(&self.object_type_id).into_iter().flatten();
        json["properties"] = properties.map(|(p, builtin)| p.to_json(*builtin)).collect();
        json["associations"] = self
            .associations
            .iter()
            .enumerate()
            .map(|(i, to)| {
                json!({"id": (100 + i).to_string(), "fromObjectTypeId": self.object_type_id, "toObjectTypeId": to,
                       "name": format!("{}_to_{}", self.name, to.replace('-', "_"))})
            })
            .collect();
        if json["primaryDisplayProperty"].is_null() {
            json.as_object_mut().expect("an object").remove("primaryDisplayProperty");
        }
        json
    }
}

impl Portal {
    /// Defines a custom object type from `egg`, checked as HubSpot does; its objectTypeId.
    pub fn define_schema(&mut self, egg: SchemaEgg) -> Result<String, SchemaError> {
        let invalid = |m: String| Err(SchemaError::Invalid(m));
        if !is_internal_name(&egg.name) {
            return invalid(format!(
                "Invalid object name {:?}: use lowercase letters, digits and underscores, starting with a letter",
                egg.name
            ));
        }
        if self.schemas.iter().any(|s| !s.archived && s.name == egg.name) {
            return Err(SchemaError::Exists(format!("An object type named {} already exists", egg.name)));
        }
        if egg.labels.singular.trim().is_empty() || egg.labels.plural.trim().is_empty() {
            return invalid("labels.singular and labels.plural are required".into());
        }
        if egg.properties.is_empty() {
            return invalid("A custom object needs at least one property".into());
        }
        for property in &egg.properties {
            if !is_internal_name(&property.name) {
                return invalid(format!("Invalid property name {:?}", property.name));
            }
            if !PROPERTY_TYPES.contains(&property.kind.as_str()) {
                return invalid(format!(
                    "Property {} has type {:?}; expected one of {}",
                    property.name,
                    property.kind,
                    PROPERTY_TYPES.join(", ")
                ));
            }
            if property.kind == "enumeration" && property.options.is_empty() {
                return invalid(format!("Property {} is an enumeration without options", property.name));
            }
            if egg.properties.iter().filter(|p| p.name == property.name).count() > 1 {
                return invalid(format!("Property {} is defined twice", property.name));
            }
        }
        let defined = |name: &String| egg.properties.iter().any(|p| &p.name == name);
        let named = egg.required_properties.iter().chain(&egg.secondary_display_properties).chain(&egg.searchable_properties);
        if let Some(unknown) = named.chain(&egg.primary_display_property).find(|n| !defined(n)) {
            return invalid(format!("Property {unknown} is named in the schema but not defined in its properties"));
        }
        let mut associations = Vec::new();
        for target in &egg.associated_objects {
            let Some(kind) = standard_type(&target.to_lowercase()).or_else(|| self.schema(target).map(|_| "custom")) else {
                return invalid(format!("Unknown object type in associatedObjects: {target}"));
            };
            associations.push(if kind == "custom" { target.clone() } else { object_type_id(kind).to_owned() });
        }
        let object_type_id = format!("2-{}", 10_000 + self.next_schema);
        self.next_schema += 1;
        let mut list: Vec<(Property, bool)> = defaults(&object_type_id).into_iter().map(|p| (p, true)).collect();
        list.extend(egg.properties.into_iter().map(|p| (p, false)));
        self.properties.insert(object_type_id.clone(), list);
        let now = Utc::now();
        self.schemas.push(CustomSchema {
            object_type_id: object_type_id.clone(),
            name: egg.name,
            labels: egg.labels,
            description: egg.description,
            required_properties: egg.required_properties,
            primary_display_property: egg.primary_display_property,
            secondary_display_properties: egg.secondary_display_properties,
            searchable_properties: egg.searchable_properties,
            associations,
            created_at: now,
            updated_at: now,
            archived: false,
        });
        Ok(object_type_id)
    }
}

pub(crate) async fn list(State(sandbox): State<Sandbox>, call: Call) -> Response {
    let query = HubQuery::of(&call.uri);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let q = match query {
            Ok(q) => q,
            Err(e) => return e,
        };
        let results: Vec<Value> = portal.schemas.iter().filter(|s| s.archived == q.archived).map(|s| s.to_json(portal)).collect();
        (StatusCode::OK, json!({"results": results}))
    })
    .await
}

pub(crate) async fn create(State(sandbox): State<Sandbox>, call: Call, body: Bytes) -> Response {
    let parsed: Result<SchemaEgg, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let egg = match parsed {
            Ok(egg) => egg,
            Err(e) => return e,
        };
        match portal.define_schema(egg) {
            Ok(id) => (StatusCode::CREATED, portal.schema(&id).expect("just defined").to_json(portal)),
            Err(e) => e.answer(),
        }
    })
    .await
}

fn not_found(name: &str) -> Answer {
    error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("Unable to find object type {name}"))
}

pub(crate) async fn get(State(sandbox): State<Sandbox>, call: Call, Path(name): Path<String>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| match portal.schema(&name) {
        Some(schema) => (StatusCode::OK, schema.to_json(portal)),
        None => not_found(&name),
    })
    .await
}

/// `ObjectTypeDefinitionPatch`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaPatch {
    labels: Option<Labels>,
    description: Option<String>,
    #[serde(default)]
    clear_description: bool,
    required_properties: Option<Vec<String>>,
    primary_display_property: Option<String>,
    secondary_display_properties: Option<Vec<String>>,
    searchable_properties: Option<Vec<String>>,
}

pub(crate) async fn patch(State(sandbox): State<Sandbox>, call: Call, Path(name): Path<String>, body: Bytes) -> Response {
    let parsed: Result<SchemaPatch, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let patch = match parsed {
            Ok(patch) => patch,
            Err(e) => return e,
        };
        let Some(id) = portal.schema(&name).map(|s| s.object_type_id.clone()) else { return not_found(&name) };
        let named = patch.required_properties.iter().chain(&patch.secondary_display_properties).chain(&patch.searchable_properties);
        if let Some(unknown) = named.flatten().chain(&patch.primary_display_property).find(|n| portal.property(&id, n).is_none()) {
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Property {unknown} is not defined on {name}"));
        }
        let schema = portal.schemas.iter_mut().find(|s| s.object_type_id == id).expect("found above");
        if let Some(labels) = patch.labels {
            schema.labels = labels;
        }
        if patch.clear_description {
            schema.description.clear();
        }
        if let Some(description) = patch.description {
            schema.description = description;
        }
        if let Some(required) = patch.required_properties {
            schema.required_properties = required;
        }
        if let Some(primary) = patch.primary_display_property {
            schema.primary_display_property = Some(primary);
        }
        if let Some(secondary) = patch.secondary_display_properties {
            schema.secondary_display_properties = secondary;
        }
        if let Some(searchable) = patch.searchable_properties {
            schema.searchable_properties = searchable;
        }
        schema.updated_at = Utc::now();
        let schema = portal.schema(&id).expect("still there");
        (StatusCode::OK, schema.definition_json(portal))
    })
    .await
}

/// Deleting a schema archives it, which HubSpot refuses while live records remain. With
/// `archived=true` an archived schema is removed for good, freeing its name.
pub(crate) async fn delete(State(sandbox): State<Sandbox>, call: Call, Path(name): Path<String>) -> Response {
    let query = HubQuery::of(&call.uri);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let q = match query {
            Ok(q) => q,
            Err(e) => return e,
        };
        if q.archived {
            let id = portal.id;
            let before = portal.schemas.len();
            portal.schemas.retain(|s| !(s.archived && (s.object_type_id == name || s.fully_qualified_name(id) == name)));
            return match before == portal.schemas.len() {
                true => not_found(&name),
                false => (StatusCode::NO_CONTENT, Value::Null),
            };
        }
        let Some(id) = portal.schema(&name).map(|s| s.object_type_id.clone()) else { return not_found(&name) };
        let live = portal.stores.get(&id).map_or(0, |s| s.live().count());
        if live > 0 {
            let message = format!("Object type {name} still has {live} records; archive them before deleting the schema");
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
        }
        let schema = portal.schemas.iter_mut().find(|s| s.object_type_id == id).expect("found above");
        schema.archived = true;
        schema.updated_at = Utc::now();
        (StatusCode::NO_CONTENT, Value::Null)
    })
    .await
}
