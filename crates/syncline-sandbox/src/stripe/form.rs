//! Stripe's v1 parameters as it reads them: form-encoded bodies and query strings with bracket
//! nesting (`metadata[plan]=gold`, `created[gte]=1700000000`, `expand[]=data.default_price`).

use std::collections::BTreeMap;

use super::invalid;
use crate::emulate::Answer;

/// The parameters of one request, in the order sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(text: &[u8]) -> Form {
        Form(form_urlencoded::parse(text).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The value of a plain parameter (the last one sent wins, as Stripe's parser does).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The values of a list parameter: `name[]=a&name[]=b` or `name[0]=a&name[1]=b`.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| sub_key(k, name).is_some_and(|i| i.is_empty() || i.parse::<u32>().is_ok()))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The entries of a hash parameter: `name[key]=value`.
    pub fn hash(&self, name: &str) -> BTreeMap<String, String> {
        self.0.iter().filter_map(|(k, v)| sub_key(k, name).filter(|i| !i.is_empty()).map(|i| (i.to_owned(), v.clone()))).collect()
    }

    /// Whether the request names the parameter at all (plain, list or hash).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name || k.strip_prefix(name).is_some_and(|rest| rest.starts_with('[')))
    }

    /// Stripe's 400 for the first parameter not in `known` (top-level names).
    pub fn only(&self, known: &[&str]) -> Result<(), Answer> {
        match self.0.iter().map(|(k, _)| k.split('[').next().unwrap_or(k)).find(|k| !known.contains(k)) {
            Some(unknown) => Err(invalid("parameter_unknown", unknown, format!("Received unknown parameter: {unknown}"))),
            None => Ok(()),
        }
    }

    /// An integer parameter, or Stripe's 400 naming it.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, Answer> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| invalid("parameter_invalid_integer", name, "Invalid integer: ".to_owned() + v)))
            .transpose()
    }

    /// A boolean parameter (`true`/`false`), or Stripe's 400 naming it.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, Answer> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(invalid("parameter_invalid_boolean", name, format!("Invalid boolean: {other}"))),
            })
            .transpose()
    }

    /// A range filter like `created`: a plain integer (equal) or `[gt|gte|lt|lte]` bounds, as
    /// a predicate on the value.
    pub fn range(&self, name: &str) -> Result<Range, Answer> {
        let mut range = Range::default();
        if let Some(exact) = self.integer(name)? {
            range.gte = Some(exact);
            range.lte = Some(exact);
        }
        for (bound, text) in self.hash(name) {
            let value = text
                .parse::<i64>()
                .map_err(|_| invalid("parameter_invalid_integer", &format!("{name}[{bound}]"), format!("Invalid integer: {text}")))?;
            match bound.as_str() {
                "gt" => range.gte = Some(value + 1),
                "gte" => range.gte = Some(value),
                "lt" => range.lte = Some(value - 1),
                "lte" => range.lte = Some(value),
                _ => {
                    return Err(invalid(
                        "parameter_unknown",
                        &format!("{name}[{bound}]"),
                        format!("Received unknown parameter: {name}[{bound}]"),
                    ));
                }
            }
        }
        Ok(range)
    }

    /// A canonical text of the parameters, for comparing an idempotent retry with its first
    /// request.
    pub fn canonical(&self) -> String {
        let mut pairs = self.0.clone();
        pairs.sort();
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    }
}

/// `name[inner]` → `inner`.
fn sub_key<'k>(key: &'k str, name: &str) -> Option<&'k str> {
    key.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')
}

/// Inclusive bounds on an integer (a timestamp).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Range {
    gte: Option<i64>,
    lte: Option<i64>,
}

impl Range {
    pub fn holds(&self, value: i64) -> bool {
        self.gte.is_none_or(|low| value >= low) && self.lte.is_none_or(|high| value <= high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_parameters_are_read_as_stripe_reads_them() {
        let form = Form::parse(
            b"name=Tee&metadata[plan]=gold&metadata[tier]=2&expand[]=data.default_price&created[gte]=10&created[lt]=20&ids[0]=a&ids[1]=b",
        );
        assert_eq!(form.get("name"), Some("Tee"));
        assert_eq!(form.hash("metadata"), BTreeMap::from([("plan".into(), "gold".into()), ("tier".into(), "2".into())]));
        assert_eq!(form.list("expand"), vec!["data.default_price"]);
        assert_eq!(form.list("ids"), vec!["a", "b"]);
        let created = form.range("created").unwrap();
        assert!(created.holds(10) && created.holds(19) && !created.holds(20) && !created.holds(9));
        assert!(form.has("metadata") && !form.has("meta"));
        let (status, body) = form.only(&["name", "metadata", "expand", "created"]).unwrap_err();
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "ids", "{body}");
        assert_eq!(Form::parse(b"b=2&a=1").canonical(), Form::parse(b"a=1&b=2").canonical());
    }
}
