//! Query strings as HubSpot reads them. A list parameter may repeat (`properties=a&properties=b`,
//! as the official SDKs send lists) or hold names separated by commas, or both; a parameter
//! HubSpot does not know is ignored; a value that does not parse is HubSpot's JSON 400, not
//! the web framework's text.

use axum::http::{StatusCode, Uri};

use super::{Answer, error};

/// The parameters of the objects and schemas reads.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct HubQuery {
    pub limit: Option<usize>,
    pub after: Option<String>,
    /// `None` when not asked: the object type's default properties.
    pub properties: Option<Vec<String>>,
    /// Properties whose every value is returned, newest first.
    pub properties_with_history: Vec<String>,
    pub id_property: Option<String>,
    /// Reads see only archived objects (or schemas) when true, only live ones otherwise.
    pub archived: bool,
}

impl HubQuery {
    pub(crate) fn of(uri: &Uri) -> Result<HubQuery, Answer> {
        let mut query = HubQuery::default();
        for (name, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            match &*name {
                "limit" => query.limit = Some(value.trim().parse().map_err(|_| invalid(&name, &value, "a whole number"))?),
                "after" => query.after = Some(value.into_owned()),
                "properties" => names(query.properties.get_or_insert_with(Vec::new), &value),
                "propertiesWithHistory" => names(&mut query.properties_with_history, &value),
                // HubSpot's `associations` parameter is not emulated (the v4 API is), and
                // ignored like unknown ones
                "idProperty" => query.id_property = Some(value.into_owned()),
                "archived" => {
                    query.archived = match value.trim() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid(&name, &value, "true or false")),
                    }
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

/// Adds the comma-separated names of one occurrence of a list parameter.
fn names(into: &mut Vec<String>, value: &str) {
    into.extend(value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
}

fn invalid(name: &str, value: &str, wanted: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Invalid value {value:?} for query parameter {name}: expected {wanted}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<HubQuery, Answer> {
        HubQuery::of(&format!("/crm/v3/objects/contacts?{query}").parse().unwrap())
    }

    #[test]
    fn lists_repeat_or_separate_with_commas() {
        let q = parse("properties=email&properties=firstname,lastname&limit=5&archived=true&idProperty=email").unwrap();
        assert_eq!(q.properties.unwrap(), ["email", "firstname", "lastname"]);
        assert_eq!((q.limit, q.archived, q.id_property.as_deref()), (Some(5), true, Some("email")));
        assert_eq!(parse("").unwrap(), HubQuery::default());
    }

    #[test]
    fn a_bad_value_is_a_json_400_naming_it() {
        let (status, body) = parse("limit=ten").unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["category"], "VALIDATION_ERROR");
        assert!(body["message"].as_str().unwrap().contains("limit"), "{body}");
        assert!(parse("archived=maybe").is_err());
    }
}
