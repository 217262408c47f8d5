//! One HubSpot portal: its property definitions, its objects, and its rate budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::schemas::{CustomSchema, SchemaEgg};
use super::webhooks::{Outbox, WebhookSettings};

/// HubSpot account tiers and their limits for privately distributed apps (API-CONTRACTS §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Free / Starter: 100 per 10 s, 250,000 a day.
    Free,
    /// Professional: 190 per 10 s, 625,000 a day.
    Professional,
    /// Enterprise: 190 per 10 s, 1,000,000 a day.
    Enterprise,
    /// API limit increase pack: 250 per 10 s, +1,000,000 a day.
    LimitIncrease,
}

impl Tier {
    pub fn burst(self) -> u32 {
        match self {
            Tier::Free => 100,
            Tier::Professional | Tier::Enterprise => 190,
            Tier::LimitIncrease => 250,
        }
    }

    pub fn daily(self) -> u64 {
        match self {
            Tier::Free => 250_000,
            Tier::Professional => 625_000,
            Tier::Enterprise => 1_000_000,
            Tier::LimitIncrease => 2_000_000,
        }
    }
}

/// How a portal is set up: its token, tier, and the properties added to HubSpot's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    pub token: String,
    pub tier: Tier,
    /// The account id. Default: a random one, as a new HubSpot portal gets — so a sandbox
    /// started again is a new, empty portal, not the one an earlier sandbox was.
    #[serde(default)]
    pub portal_id: Option<u64>,
    /// Custom properties per object type (`contacts`, `companies`…).
    #[serde(default)]
    pub properties: BTreeMap<String, Vec<Property>>,
    /// Custom object schemas, in the shape `POST /crm-object-schemas/v3/schemas` takes.
    #[serde(default)]
    pub custom_objects: Vec<SchemaEgg>,
    /// The app's webhook subscriptions and target, when changes should be delivered.
    #[serde(default)]
    pub webhooks: Option<WebhookSettings>,
}

/// A property definition, in HubSpot's own JSON shape.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub name: String,
    #[serde(default)]
    pub label: String,
    /// `bool`, `date`, `datetime`, `enumeration`, `number`, `phone_number`, `string`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "text")]
    pub field_type: String,
    #[serde(default = "contactinformation")]
    pub group_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    #[serde(default)]
    pub has_unique_value: bool,
    #[serde(default)]
    pub read_only_value: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    pub label: String,
    pub value: String,
}

fn text() -> String {
    "text".into()
}

fn contactinformation() -> String {
    "contactinformation".into()
}

impl Property {
    fn builtin(name: &str, kind: &str, field_type: &str, unique: bool, read_only: bool) -> Property {
        Property {
            name: name.into(),
            label: name.into(),
            kind: kind.into(),
            field_type: field_type.into(),
            group_name: "contactinformation".into(),
            description: String::new(),
            options: Vec::new(),
            has_unique_value: unique,
            read_only_value: read_only,
        }
    }

    /// The definition as `GET /crm/v3/properties/{objectType}` returns it.
    pub fn to_json(&self, hubspot_defined: bool) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .enumerate()
            .map(|(i, o)| json!({"label": o.label, "value": o.value, "displayOrder": i, "hidden": false}))
            .collect();
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
            "options": options,
            "displayOrder": -1,
            "hasUniqueValue": self.has_unique_value,
            "hidden": false,
            "formField": !self.read_only_value,
            "calculated": false,
            "externalOptions": false,
            "hubspotDefined": hubspot_defined,
            "archived": false,
            "createdAt": "2020-01-01T00:00:00Z",
            "updatedAt": "2020-01-01T00:00:00Z",
            "modificationMetadata": {"archivable": !hubspot_defined, "readOnlyDefinition": hubspot_defined, "readOnlyValue": self.read_only_value},
        })
    }

    /// Checks a value as HubSpot does; the error is HubSpot's per-property detail object.
    fn check(&self, value: &str) -> Result<(), Value> {
        let invalid = |error: &str, message: String| Err(json!({"isValid": false, "message": message, "error": error, "name": self.name}));
        if self.read_only_value {
            return invalid("READ_ONLY_VALUE", format!("\"{}\" is a read only property; its value cannot be set.", self.name));
        }
        // an empty string clears any property
        if value.is_empty() {
            return Ok(());
        }
        let allowed: Vec<&str> = self.options.iter().map(|o| o.value.as_str()).collect();
        let is_option = |v: &str| allowed.contains(&v);
        let (valid, error, message) = match self.kind.as_str() {
            "enumeration" if self.field_type == "checkbox" => (value.split(';').all(is_option), "INVALID_OPTION", ""),
            "enumeration" => (is_option(value), "INVALID_OPTION", ""),
            "number" => (value.parse::<f64>().is_ok(), "INVALID_INTEGER", "is not a valid number"),
            "bool" => (matches!(value, "true" | "false"), "INVALID_BOOLEAN", "is not a valid boolean; use true or false"),
            "date" => {
                let midnight_ms = value.parse::<i64>().is_ok_and(|ms| ms % 86_400_000 == 0);
                let valid = midnight_ms || NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok();
                (valid, "INVALID_DATE", "is not a valid date: use YYYY-MM-DD or epoch milliseconds at midnight UTC")
            }
            "datetime" => {
                let valid = value.parse::<i64>().is_ok() || DateTime::parse_from_rfc3339(value).is_ok();
                (valid, "INVALID_DATETIME", "is not a valid datetime")
            }
            _ => (true, "", ""),
        };
        if valid {
            return Ok(());
        }
        let message = match error {
            "INVALID_OPTION" => format!("{value} was not one of the allowed options: [{}]", allowed.join(", ")),
            _ => format!("{value} {message}"),
        };
        invalid(error, message)
    }
}

/// The properties HubSpot stamps on every object: (created, last modified). Contacts keep the
/// old names; companies and deals mix them; appointments and custom objects use `hs_` names.
pub fn stamp_properties(object_type: &str) -> (&'static str, &'static str) {
    match object_type {
        "contacts" => ("createdate", "lastmodifieddate"),
        "companies" | "deals" => ("createdate", "hs_lastmodifieddate"),
        _ => ("hs_createdate", "hs_lastmodifieddate"),
    }
}

/// HubSpot's default properties per object type (a working subset; a custom type gets the id
/// and stamps).
pub(crate) fn defaults(object_type: &str) -> Vec<Property> {
    let p = Property::builtin;
    let (created, modified) = stamp_properties(object_type);
    let mut list = vec![
        p("hs_object_id", "number", "number", true, true),
        p(created, "datetime", "date", false, true),
        p(modified, "datetime", "date", false, true),
    ];
    match object_type {
        "contacts" => list.extend([
            p("email", "string", "text", true, false),
            p("firstname", "string", "text", false, false),
            p("lastname", "string", "text", false, false),
            p("phone", "string", "phonenumber", false, false),
            p("mobilephone", "string", "phonenumber", false, false),
            p("date_of_birth", "date", "date", false, false),
        ]),
        "companies" => list.extend([p("name", "string", "text", false, false), p("domain", "string", "text", false, false)]),
        "deals" => list.extend([
            p("dealname", "string", "text", false, false),
            p("amount", "number", "number", false, false),
            p("closedate", "datetime", "date", false, false),
            p("pipeline", "string", "text", false, false),
            p("dealstage", "string", "text", false, false),
        ]),
        "appointments" => list.extend([
            p("hs_appointment_name", "string", "text", false, false),
            p("hs_appointment_start", "datetime", "date", false, false),
            p("hs_appointment_end", "datetime", "date", false, false),
        ]),
        _ => {}
    }
    list
}

/// HubSpot's standard object types this emulator keeps: path name, objectTypeId, singular.
const STANDARD_TYPES: [(&str, &str, &str); 4] =
    [("contacts", "0-1", "contact"), ("companies", "0-2", "company"), ("deals", "0-3", "deal"), ("appointments", "0-421", "appointment")];

/// A standard object type by path name, singular or objectTypeId (`contacts`, `contact`, `0-1`).
pub fn standard_type(name: &str) -> Option<&'static str> {
    STANDARD_TYPES.iter().find(|(path, id, singular)| [*path, *id, *singular].contains(&name)).map(|(path, ..)| *path)
}

/// The objectTypeId of a standard type's path name, or a custom type's own id.
pub fn object_type_id(object_type: &str) -> &str {
    STANDARD_TYPES.iter().find(|(path, ..)| *path == object_type).map_or(object_type, |(_, id, _)| id)
}

#[derive(Debug, Clone)]
pub struct Object {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when archived: the object leaves reads, search and unique indexes, but stays
    /// readable with `archived=true` (contacts are restorable for 90 days).
    pub archived_at: Option<DateTime<Utc>>,
}

impl Object {
    /// `SimplePublicObject` with the requested properties (all set ones when `wanted` is None),
    /// plus the id and stamps HubSpot always returns.
    pub fn to_json(&self, wanted: Option<&[String]>) -> Value {
        let mut properties = serde_json::Map::new();
        for (name, value) in &self.properties {
            if wanted.is_none_or(|w| w.iter().any(|n| n == name) || is_always_returned(name)) {
                properties.insert(name.clone(), Value::String(value.clone()));
            }
        }
        let mut json = json!({
            "id": self.id.to_string(),
            "properties": properties,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": self.archived_at.is_some(),
        });
        if let Some(at) = self.archived_at {
            json["archivedAt"] = Value::String(iso(at));
        }
        json
    }
}

fn is_always_returned(name: &str) -> bool {
    matches!(name, "hs_object_id" | "createdate" | "lastmodifieddate" | "hs_createdate" | "hs_lastmodifieddate")
}

pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One object type's records and its unique-value indexes (of live objects only).
#[derive(Debug, Default)]
pub struct ObjectStore {
    pub objects: BTreeMap<u64, Object>,
    /// (property, value) → id, for every property with `hasUniqueValue`.
    unique: HashMap<(String, String), u64>,
}

impl ObjectStore {
    /// The live object whose `id_property` is `value`.
    pub fn find(&self, id_property: &str, value: &str) -> Option<&Object> {
        if id_property == "hs_object_id" {
            return value.parse().ok().and_then(|id| self.objects.get(&id)).filter(|o| o.archived_at.is_none());
        }
        self.unique.get(&(id_property.to_owned(), value.to_owned())).and_then(|id| self.objects.get(id))
    }

    /// The live object (`archived` false) or archived one (`archived` true) whose `id_property` is
    /// `value`, as reads with the `archived` query parameter see them.
    pub fn find_as(&self, id_property: &str, value: &str, archived: bool) -> Option<&Object> {
        if !archived {
            return self.find(id_property, value);
        }
        self.objects.values().filter(|o| o.archived_at.is_some()).find(|o| o.properties.get(id_property).is_some_and(|v| v == value))
    }

    /// Live or archived objects in id order, from `after` on.
    pub fn page(&self, after: u64, archived: bool) -> impl Iterator<Item = &Object> {
        self.objects.range(after..).map(|(_, o)| o).filter(move |o| o.archived_at.is_some() == archived)
    }

    pub fn live(&self) -> impl Iterator<Item = &Object> {
        self.objects.values().filter(|o| o.archived_at.is_none())
    }
}

pub struct Portal {
    pub config: PortalConfig,
    /// The account id (in custom objects' fully qualified names).
    pub id: u64,
    /// Property definitions per object type (standard path name or custom objectTypeId), each
    /// marked whether HubSpot defines it.
    pub properties: BTreeMap<String, Vec<(Property, bool)>>,
    pub stores: BTreeMap<String, ObjectStore>,
    /// Custom object schemas, archived ones included.
    pub schemas: Vec<CustomSchema>,
    next_id: u64,
    pub(crate) next_schema: u64,
    window: VecDeque<Instant>,
    /// The search API's own rolling second.
    search_window: VecDeque<Instant>,
    pub daily_used: u64,
    /// Webhook events waiting to be delivered.
    pub(crate) outbox: Outbox,
}

/// What a write input did.
pub enum Written {
    Created(u64),
    Updated(u64),
}

/// Why a write was refused.
pub enum Refused {
    /// No live object has that id.
    NotFound,
    /// Another object already holds one of the new unique values: its id.
    Conflict(u64),
}

impl Portal {
    pub fn new(config: PortalConfig, id: u64) -> Result<Portal, String> {
        let mut properties = BTreeMap::new();
        for (kind, ..) in STANDARD_TYPES {
            properties.insert(kind.to_owned(), defaults(kind).into_iter().map(|p| (p, true)).collect());
        }
        let mut portal = Portal {
            config: config.clone(),
            id,
            properties,
            stores: BTreeMap::new(),
            schemas: Vec::new(),
            next_id: 1001,
            next_schema: 1,
            window: VecDeque::new(),
            search_window: VecDeque::new(),
            daily_used: 0,
            outbox: Outbox::default(),
        };
        if let Some(settings) = &config.webhooks {
            settings.check()?;
            portal.outbox.settings = Some(settings.clone());
        }
        for (kind, custom) in &config.properties {
            let Some(kind) = portal.object_type(kind) else { return Err(format!("unknown object type {kind} in the portal's properties")) };
            let list = portal.properties.get_mut(&kind).expect("every known type has definitions");
            for property in custom {
                list.retain(|(p, _)| p.name != property.name);
                list.push((property.clone(), false));
            }
        }
        for egg in &config.custom_objects {
            portal.define_schema(egg.clone()).map_err(|e| format!("custom object {}: {}", egg.name, e.message()))?;
        }
        Ok(portal)
    }

    /// The key of an object type given by path name, objectTypeId or, for custom objects,
    /// fully qualified name (`p<portal>_<name>`).
    pub fn object_type(&self, name: &str) -> Option<String> {
        if let Some(kind) = standard_type(name) {
            return Some(kind.to_owned());
        }
        self.schema(name).map(|s| s.object_type_id.clone())
    }

    /// The live custom schema called `name` (objectTypeId or fully qualified name).
    pub fn schema(&self, name: &str) -> Option<&CustomSchema> {
        self.schemas.iter().find(|s| !s.archived && (s.object_type_id == name || s.fully_qualified_name(self.id) == name))
    }

    pub fn property(&self, object_type: &str, name: &str) -> Option<&Property> {
        self.properties.get(object_type)?.iter().map(|(p, _)| p).find(|p| p.name == name)
    }

    pub fn store(&mut self, object_type: &str) -> &mut ObjectStore {
        self.stores.entry(object_type.to_owned()).or_default()
    }

    /// Spends one call of the rolling ten-second budget, or says which limit is spent.
    pub fn spend(&mut self, now: Instant) -> Result<(), &'static str> {
        let interval = Duration::from_secs(10);
        while self.window.front().is_some_and(|t| now.duration_since(*t) >= interval) {
            self.window.pop_front();
        }
        if self.daily_used >= self.config.tier.daily() {
            return Err("DAILY");
        }
        if self.window.len() >= self.config.tier.burst() as usize {
            return Err("TEN_SECONDLY_ROLLING");
        }
        self.window.push_back(now);
        self.daily_used += 1;
        Ok(())
    }

    /// Spends one of the search API's 5 requests per second (exempt from the ten-second bucket).
    pub fn spend_search(&mut self, now: Instant) -> Result<(), &'static str> {
        while self.search_window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.search_window.pop_front();
        }
        if self.search_window.len() >= 5 {
            return Err("SECONDLY");
        }
        self.search_window.push_back(now);
        Ok(())
    }

    /// `X-HubSpot-RateLimit-*` header values after this call.
    pub fn rate_headers(&self) -> Vec<(&'static str, String)> {
        let burst = self.config.tier.burst();
        vec![
            ("x-hubspot-ratelimit-daily", self.config.tier.daily().to_string()),
            ("x-hubspot-ratelimit-daily-remaining", self.config.tier.daily().saturating_sub(self.daily_used).to_string()),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000".into()),
            ("x-hubspot-ratelimit-max", burst.to_string()),
            ("x-hubspot-ratelimit-remaining", (burst as usize).saturating_sub(self.window.len()).to_string()),
        ]
    }

    /// Checks every property of one write input; the errors are HubSpot's detail objects.
    pub fn check_properties(&self, object_type: &str, properties: &BTreeMap<String, String>) -> Vec<Value> {
        properties
            .iter()
            .filter_map(|(name, value)| match self.property(object_type, name) {
                None => Some(json!({"isValid": false, "message": format!("Property \"{name}\" does not exist"), "error": "PROPERTY_DOESNT_EXIST", "name": name})),
                Some(def) => def.check(value).err(),
            })
            .collect()
    }

    /// A custom object's required properties that a create leaves out or empty.
    pub fn missing_required(&self, object_type: &str, properties: &BTreeMap<String, String>) -> Vec<String> {
        let required = self.schema(object_type).map(|s| s.required_properties.clone()).unwrap_or_default();
        required.into_iter().filter(|name| properties.get(name).is_none_or(|v| v.is_empty())).collect()
    }

    /// The properties whose values must be unique (the object id aside, which is always).
    pub(crate) fn unique_names(&self, object_type: &str) -> Vec<String> {
        let list = self.properties.get(object_type).into_iter().flatten();
        list.filter(|(p, _)| p.has_unique_value && p.name != "hs_object_id").map(|(p, _)| p.name.clone()).collect()
    }

    /// The object, other than `id`, that already holds one of the unique values in `properties`.
    pub fn conflict(&self, object_type: &str, id: Option<u64>, properties: &BTreeMap<String, String>) -> Option<u64> {
        let store = self.stores.get(object_type)?;
        self.unique_names(object_type).iter().find_map(|name| {
            let value = properties.get(name).filter(|v| !v.is_empty())?;
            store.unique.get(&(name.clone(), value.clone())).copied().filter(|holder| Some(*holder) != id)
        })
    }

    /// Creates an object with `properties`, or names the object holding one of its unique values.
    pub fn create(&mut self, object_type: &str, properties: &BTreeMap<String, String>) -> Result<u64, Refused> {
        self.create_at(object_type, properties, Utc::now())
    }

    /// Creates an object as if written at `now` (imports and tests that need exact times).
    pub fn create_at(&mut self, object_type: &str, properties: &BTreeMap<String, String>, now: DateTime<Utc>) -> Result<u64, Refused> {
        if let Some(holder) = self.conflict(object_type, None, properties) {
            return Err(Refused::Conflict(holder));
        }
        let id = self.next_id;
        self.next_id += 1;
        let (created, _) = stamp_properties(object_type);
        let stamps = BTreeMap::from([("hs_object_id".to_owned(), id.to_string()), (created.to_owned(), iso(now))]);
        let object = Object { id, properties: stamps, created_at: now, updated_at: now, archived_at: None };
        self.store(object_type).objects.insert(id, object);
        self.apply(object_type, id, properties, now);
        self.emit(object_type, id, "creation", None);
        Ok(id)
    }

    /// Sets `properties` on the live object `id` (an empty value clears one).
    pub fn update(&mut self, object_type: &str, id: u64, properties: &BTreeMap<String, String>) -> Result<(), Refused> {
        if self.stores.get(object_type).and_then(|s| s.find("hs_object_id", &id.to_string())).is_none() {
            return Err(Refused::NotFound);
        }
        if let Some(holder) = self.conflict(object_type, Some(id), properties) {
            return Err(Refused::Conflict(holder));
        }
        let before = self.stores[object_type].objects[&id].properties.clone();
        self.apply(object_type, id, properties, Utc::now());
        for (name, value) in properties {
            if before.get(name).map_or("", String::as_str) != value {
                self.emit(object_type, id, "propertyChange", Some((name, value)));
            }
        }
        Ok(())
    }

    /// Updates the live object whose `id_property` is `key`, or creates it with that key.
    pub fn upsert(
        &mut self,
        object_type: &str,
        id_property: &str,
        key: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Written, Refused> {
        match self.store(object_type).find(id_property, key).map(|o| o.id) {
            Some(id) => self.update(object_type, id, properties).map(|()| Written::Updated(id)),
            None => {
                let mut properties = properties.clone();
                if id_property != "hs_object_id" {
                    properties.insert(id_property.to_owned(), key.to_owned());
                }
                self.create(object_type, &properties).map(Written::Created)
            }
        }
    }

    /// Archives the live object `id`; false when there is none.
    pub fn archive(&mut self, object_type: &str, id: u64) -> bool {
        let store = self.store(object_type);
        let Some(object) = store.objects.get_mut(&id).filter(|o| o.archived_at.is_none()) else { return false };
        object.archived_at = Some(Utc::now());
        store.unique.retain(|_, holder| *holder != id);
        self.emit(object_type, id, "deletion", None);
        true
    }

    /// Queues the webhook event of a change to a standard object, when subscribed.
    fn emit(&mut self, object_type: &str, id: u64, change: &str, property: Option<(&str, &str)>) {
        if let Some((_, _, singular)) = STANDARD_TYPES.iter().find(|(path, ..)| *path == object_type) {
            self.outbox.emit(self.id, singular, id, change, property);
        }
    }

    /// Writes checked values and keeps the unique indexes and the modified stamp current.
    fn apply(&mut self, object_type: &str, id: u64, properties: &BTreeMap<String, String>, now: DateTime<Utc>) {
        let unique = self.unique_names(object_type);
        let (_, modified) = stamp_properties(object_type);
        let store = self.store(object_type);
        let object = store.objects.get_mut(&id).expect("callers check the object exists");
        for (name, value) in properties {
            if unique.contains(name)
                && let Some(old) = object.properties.get(name)
            {
                store.unique.remove(&(name.clone(), old.clone()));
            }
            if value.is_empty() {
                object.properties.remove(name);
            } else {
                object.properties.insert(name.clone(), value.clone());
            }
        }
        for name in &unique {
            if let Some(value) = object.properties.get(name) {
                store.unique.insert((name.clone(), value.clone()), id);
            }
        }
        object.updated_at = now;
        object.properties.insert(modified.to_owned(), iso(now));
    }
}
