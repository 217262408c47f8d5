//! One HubSpot portal: its property definitions, its objects, and its rate budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// Custom properties per object type (`contacts`, `companies`…).
    #[serde(default)]
    pub properties: BTreeMap<String, Vec<Property>>,
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

/// HubSpot's default properties per object type (a working subset).
fn defaults(object_type: &str) -> Vec<Property> {
    let p = Property::builtin;
    let mut list = vec![
        p("hs_object_id", "number", "number", true, true),
        p("createdate", "datetime", "date", false, true),
        p("lastmodifieddate", "datetime", "date", false, true),
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
        _ => {}
    }
    list
}

/// The object types this emulator keeps, by path name and by objectTypeId.
pub fn object_type(name: &str) -> Option<&'static str> {
    match name {
        "contacts" | "contact" | "0-1" => Some("contacts"),
        "companies" | "company" | "0-2" => Some("companies"),
        "deals" | "deal" | "0-3" => Some("deals"),
        "appointments" | "0-421" => Some("appointments"),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct Object {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Object {
    /// `SimplePublicObject` with the requested properties (all set ones when `wanted` is None).
    pub fn to_json(&self, wanted: Option<&[String]>) -> Value {
        let mut properties = serde_json::Map::new();
        for (name, value) in &self.properties {
            if wanted.is_none_or(|w| w.iter().any(|n| n == name) || is_always_returned(name)) {
                properties.insert(name.clone(), Value::String(value.clone()));
            }
        }
        json!({
            "id": self.id.to_string(),
            "properties": properties,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": false,
        })
    }
}

fn is_always_returned(name: &str) -> bool {
    matches!(name, "hs_object_id" | "createdate" | "lastmodifieddate")
}

pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One object type's records and its unique-value indexes.
#[derive(Debug, Default)]
pub struct ObjectStore {
    pub objects: BTreeMap<u64, Object>,
    /// (property, value) → id, for every property with `hasUniqueValue`.
    unique: HashMap<(String, String), u64>,
}

impl ObjectStore {
    pub fn find(&self, id_property: &str, value: &str) -> Option<&Object> {
        if id_property == "hs_object_id" {
            return value.parse().ok().and_then(|id| self.objects.get(&id));
        }
        self.unique.get(&(id_property.to_owned(), value.to_owned())).and_then(|id| self.objects.get(id))
    }
}

pub struct Portal {
    pub config: PortalConfig,
    pub properties: BTreeMap<&'static str, Vec<(Property, bool)>>,
    pub stores: BTreeMap<&'static str, ObjectStore>,
    next_id: u64,
    window: VecDeque<Instant>,
    /// The search API's own rolling second.
    search_window: VecDeque<Instant>,
    pub daily_used: u64,
}

/// What a write input did.
pub enum Written {
    Created(u64),
    Updated(u64),
}

impl Portal {
    pub fn new(config: PortalConfig) -> Portal {
        let mut properties = BTreeMap::new();
        for kind in ["contacts", "companies", "deals", "appointments"] {
            let mut list: Vec<(Property, bool)> = defaults(kind).into_iter().map(|p| (p, true)).collect();
            for custom in config.properties.get(kind).into_iter().flatten() {
                list.retain(|(p, _)| p.name != custom.name);
                list.push((custom.clone(), false));
            }
            properties.insert(kind, list);
        }
        Portal {
            config,
            properties,
            stores: BTreeMap::new(),
            next_id: 1001,
            window: VecDeque::new(),
            search_window: VecDeque::new(),
            daily_used: 0,
        }
    }

    pub fn property(&self, object_type: &str, name: &str) -> Option<&Property> {
        self.properties.get(object_type)?.iter().map(|(p, _)| p).find(|p| p.name == name)
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

    /// Creates or updates the object whose `id_property` is `key`. Another object already holding
    /// one of the new unique values is a conflict: `Err(existing id)`.
    pub fn upsert(
        &mut self,
        object_type: &'static str,
        id_property: &str,
        key: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Written, u64> {
        let now = Utc::now();
        let unique: Vec<String> = self
            .properties
            .get(object_type)
            .map(|list| list.iter().filter(|(p, _)| p.has_unique_value).map(|(p, _)| p.name.clone()).collect())
            .unwrap_or_default();
        let store = self.stores.entry(object_type).or_default();
        let existing = store.find(id_property, key).map(|o| o.id);
        for name in &unique {
            let value = if name == id_property { Some(key) } else { properties.get(name).map(String::as_str) };
            if let Some(value) = value.filter(|v| !v.is_empty())
                && let Some(holder) = store.unique.get(&(name.clone(), value.to_owned()))
                && Some(*holder) != existing
            {
                return Err(*holder);
            }
        }
        let (id, created) = match existing {
            Some(id) => (id, false),
            None => {
                let id = self.next_id;
                self.next_id += 1;
                let mut props = BTreeMap::new();
                props.insert("hs_object_id".to_owned(), id.to_string());
                props.insert("createdate".to_owned(), iso(now));
                if id_property != "hs_object_id" {
                    props.insert(id_property.to_owned(), key.to_owned());
                }
                store.objects.insert(id, Object { id, properties: props, created_at: now, updated_at: now });
                (id, true)
            }
        };
        let object = store.objects.get_mut(&id).expect("just found or inserted");
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
        object.properties.insert("lastmodifieddate".to_owned(), iso(now));
        Ok(if created { Written::Created(id) } else { Written::Updated(id) })
    }
}
