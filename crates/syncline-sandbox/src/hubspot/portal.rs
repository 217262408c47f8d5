//! One HubSpot portal: its setup, and the writes that keep its four parts in step — property
//! definitions (`properties.rs`), objects (`store.rs`), budgets (`budget.rs`) and the webhook
//! events its changes queue (`webhooks.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::associations::Associations;
use super::budget::{Budget, Tier};
use super::properties::{Property, defaults};
use super::reference::{Owner, Pipeline};
use super::schemas::{CustomSchema, SchemaEgg};
use super::store::{Object, ObjectStore, iso, stamp_properties};
use super::webhooks::{Outbox, WebhookSettings};

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
    pub(crate) budget: Budget,
    /// Webhook events waiting to be delivered.
    pub(crate) outbox: Outbox,
    /// The links between objects (associations v4).
    pub associations: Associations,
    /// The portal's users as owners of objects.
    pub owners: Vec<Owner>,
    /// Pipelines per object type (deals get HubSpot's default on first read).
    pub pipelines: BTreeMap<String, Vec<Pipeline>>,
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
            budget: Budget::new(config.tier),
            outbox: Outbox::default(),
            associations: Associations::default(),
            owners: Vec::new(),
            pipelines: BTreeMap::new(),
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
    /// fully qualified name (`p<portal>_<name>`, or the short `p_<name>`).
    pub fn object_type(&self, name: &str) -> Option<String> {
        if let Some(kind) = standard_type(name) {
            return Some(kind.to_owned());
        }
        let short = |s: &&CustomSchema| name.strip_prefix("p_").is_some_and(|n| !s.archived && s.name == n);
        self.schema(name).or_else(|| self.schemas.iter().find(short)).map(|s| s.object_type_id.clone())
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
        self.budget.spend(now)
    }

    /// Spends one of the search API's 5 requests per second (exempt from the ten-second bucket).
    pub fn spend_search(&mut self, now: Instant) -> Result<(), &'static str> {
        self.budget.spend_search(now)
    }

    /// `X-HubSpot-RateLimit-*` header values after this call.
    pub fn rate_headers(&self) -> Vec<(&'static str, String)> {
        self.budget.rate_headers()
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
        let object = Object { id, properties: stamps, created_at: now, updated_at: now, archived_at: None, history: BTreeMap::new() };
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

    /// Merges the live object `secondary` into the live object `primary`, as HubSpot does: the
    /// secondary leaves every read (archived ones included) and its unique values are freed, and
    /// the primary lists it, and any it had absorbed, in `hs_merged_object_ids`.
    pub fn merge(&mut self, object_type: &str, primary: u64, secondary: u64) -> Result<(), Refused> {
        let live =
            |portal: &Portal, id: u64| portal.stores.get(object_type).and_then(|s| s.find("hs_object_id", &id.to_string())).is_some();
        if primary == secondary || !live(self, primary) || !live(self, secondary) {
            return Err(Refused::NotFound);
        }
        let store = self.store(object_type);
        let gone = store.objects.remove(&secondary).expect("checked live above");
        store.unique.retain(|_, holder| *holder != secondary);
        let merged_ids = |o: &BTreeMap<String, String>| o.get("hs_merged_object_ids").cloned().unwrap_or_default();
        let mut ids: Vec<String> = merged_ids(&store.objects[&primary].properties).split(';').map(str::to_owned).collect();
        ids.extend(merged_ids(&gone.properties).split(';').map(str::to_owned));
        ids.push(secondary.to_string());
        ids.retain(|id| !id.is_empty());
        let merged = BTreeMap::from([("hs_merged_object_ids".to_owned(), ids.join(";"))]);
        self.apply(object_type, primary, &merged, Utc::now());
        let linked = self.associations.move_all(&(object_type.to_owned(), secondary), &(object_type.to_owned(), primary));
        self.touch_all(&linked);
        Ok(())
    }

    /// Archives the live object `id`; false when there is none.
    pub fn archive(&mut self, object_type: &str, id: u64) -> bool {
        let store = self.store(object_type);
        let Some(object) = store.objects.get_mut(&id).filter(|o| o.archived_at.is_none()) else { return false };
        object.archived_at = Some(Utc::now());
        store.unique.retain(|_, holder| *holder != id);
        self.emit(object_type, id, "deletion", None);
        let linked = self.associations.remove_all(&(object_type.to_owned(), id));
        self.touch_all(&linked);
        true
    }

    /// Queues the webhook event of a change to a standard object, when subscribed.
    fn emit(&mut self, object_type: &str, id: u64, change: &str, property: Option<(&str, &str)>) {
        if let Some((_, _, singular)) = STANDARD_TYPES.iter().find(|(path, ..)| *path == object_type) {
            self.outbox.emit(self.id, singular, id, change, property);
        }
    }

    /// Marks the live object `id` modified now, its values unchanged.
    pub(crate) fn touch(&mut self, object_type: &str, id: u64) {
        self.apply(object_type, id, &BTreeMap::new(), Utc::now());
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
            object.history.entry(name.clone()).or_default().push((value.clone(), now));
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
