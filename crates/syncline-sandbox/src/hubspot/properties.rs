//! Property definitions: HubSpot's defaults per object type, the seed's own, and the value
//! checks HubSpot makes on every write.

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::store::stamp_properties;

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
    pub(crate) fn builtin(name: &str, kind: &str, field_type: &str, unique: bool, read_only: bool) -> Property {
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
    pub(crate) fn check(&self, value: &str) -> Result<(), Value> {
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
    if matches!(object_type, "contacts" | "companies" | "deals" | "tickets") {
        list.push(p("hs_merged_object_ids", "enumeration", "checkbox", false, true));
    }
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
