//! The subset of QuickBooks' query language the connectors use (API-CONTRACTS §4.1):
//! `select * | count(*) from <Entity> [where <cond> [and <cond>]…] [orderby <field> [asc|desc]]
//! [startposition n] [maxresults m]`, with `=`, `!=`, `<`, `<=`, `>`, `>=`, `in (…)` and
//! `like '%…%'`; no `or`, as in QuickBooks. Keywords are case-insensitive, string literals are
//! single-quoted with `\'` inside.
//!
//! Hand-written: no crate parses this dialect, and the subset is a few dozen lines.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed query, or the text of QuickBooks' `QueryParserError` detail.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub entity: String,
    pub count: bool,
    pub conditions: Vec<Condition>,
    pub order: Option<(String, bool)>,
    /// 1-based, as QuickBooks counts.
    pub start: usize,
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub field: String,
    op: Op,
    values: Vec<Literal>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Like,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Symbol(String),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut literal = String::new();
            loop {
                match chars.next() {
                    None => return Err("QueryParserError: unterminated string literal".into()),
                    Some('\\') => literal.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => literal.push(c),
                }
            }
            tokens.push(Token::Text(literal));
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_' || **c == '.' || **c == '-' || **c == ':') {
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Word(word));
        } else {
            chars.next();
            let two = chars.peek().map(|n| format!("{c}{n}"));
            match two.as_deref() {
                Some("<=" | ">=" | "!=" | "<>") => {
                    chars.next();
                    tokens.push(Token::Symbol(two.expect("matched").replace("<>", "!=")));
                }
                _ if "*(),=<>".contains(c) => tokens.push(Token::Symbol(c.to_string())),
                _ => return Err(format!("QueryParserError: Encountered \"{c}\"")),
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        let matches = matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word));
        self.at += usize::from(matches);
        matches
    }

    fn expect(&mut self, what: &str) -> Result<(), String> {
        match self.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(what) => Ok(()),
            Some(Token::Symbol(s)) if s == what => Ok(()),
            other => Err(format!("QueryParserError: expected \"{what}\", found {}", shown(other))),
        }
    }

    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            other => Err(format!("QueryParserError: expected {what}, found {}", shown(other))),
        }
    }

    fn number(&mut self, what: &str) -> Result<usize, String> {
        let word = self.word(what)?;
        word.parse().map_err(|_| format!("QueryParserError: {what} must be a number, not \"{word}\""))
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Token::Text(t)) => Ok(Literal::Text(t)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") => {
                Ok(Literal::Bool(w.eq_ignore_ascii_case("true")))
            }
            Some(Token::Word(w)) => {
                w.parse().map(Literal::Number).map_err(|_| format!("QueryParserError: expected a value, found \"{w}\""))
            }
            other => Err(format!("QueryParserError: expected a value, found {}", shown(other))),
        }
    }

    fn condition(&mut self) -> Result<Condition, String> {
        let field = self.word("a property")?;
        if self.keyword("in") {
            self.expect("(")?;
            let mut values = vec![self.literal()?];
            while matches!(self.tokens.get(self.at), Some(Token::Symbol(s)) if s == ",") {
                self.at += 1;
                values.push(self.literal()?);
            }
            self.expect(")")?;
            return Ok(Condition { field, op: Op::In, values });
        }
        let op = match self.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
            Some(Token::Symbol(s)) => match s.as_str() {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => return Err(format!("QueryParserError: Encountered \"{s}\" after {field}")),
            },
            other => return Err(format!("QueryParserError: expected an operator after {field}, found {}", shown(other))),
        };
        Ok(Condition { field, op, values: vec![self.literal()?] })
    }
}

fn shown(token: Option<Token>) -> String {
    match token {
        None => "the end of the query".into(),
        Some(Token::Word(w) | Token::Symbol(w)) => format!("\"{w}\""),
        Some(Token::Text(t)) => format!("'{t}'"),
    }
}

impl Query {
    pub fn parse(text: &str) -> Result<Query, String> {
        let mut p = Parser { tokens: tokens(text)?, at: 0 };
        p.expect("select")?;
        let count = p.keyword("count");
        if count {
            p.expect("(")?;
            p.expect("*")?;
            p.expect(")")?;
        } else {
            p.expect("*")?;
        }
        p.expect("from")?;
        let entity = p.word("an entity")?;
        let mut query = Query { entity, count, conditions: Vec::new(), order: None, start: 1, max: 100 };
        if p.keyword("where") {
            query.conditions.push(p.condition()?);
            while p.keyword("and") {
                query.conditions.push(p.condition()?);
            }
        }
        if p.keyword("orderby") || (p.keyword("order") && p.keyword("by")) {
            let field = p.word("a property to order by")?;
            let descending = p.keyword("desc");
            if !descending {
                p.keyword("asc");
            }
            query.order = Some((field, descending));
        }
        if p.keyword("startposition") {
            query.start = p.number("STARTPOSITION")?.max(1);
        }
        if p.keyword("maxresults") {
            query.max = p.number("MAXRESULTS")?;
        }
        match p.next() {
            None => Ok(query),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("or") => Err("QueryParserError: OR is not supported in queries".into()),
            extra => Err(format!("QueryParserError: Encountered {} at the end of the query", shown(extra))),
        }
    }

    /// Whether a condition names `Active` (without one, QuickBooks returns active objects only).
    pub fn mentions_active(&self) -> bool {
        self.conditions.iter().any(|c| c.field.eq_ignore_ascii_case("active"))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.conditions.iter().all(|c| c.holds(field(object, &c.field)))
    }

    /// Orders objects by the `orderby` field (by `Id` when there is none).
    pub fn sort(&self, objects: &mut [&Value]) {
        let (by, descending) = self.order.clone().unwrap_or(("Id".into(), false));
        objects.sort_by(|a, b| {
            let order = compare(field(a, &by), field(b, &by));
            if descending { order.reverse() } else { order }
        });
    }
}

/// A (possibly dotted: `MetaData.LastUpdatedTime`) property of an object, case-insensitively.
pub(crate) fn field<'v>(object: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(object, |value, name| {
        value.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))).map_or(&Value::Null, |(_, v)| v)
    })
}

/// Values as QuickBooks compares them: times as times, ids and amounts as numbers, names without
/// case.
fn compare(a: &Value, b: &Value) -> Ordering {
    let number = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse::<f64>().ok()));
    let time = |v: &Value| v.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    if let (Some(x), Some(y)) = (time(a), time(b)) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    };
    text(a).cmp(&text(b))
}

impl Literal {
    fn value(&self) -> Value {
        match self {
            Literal::Text(t) => Value::String(t.clone()),
            Literal::Number(n) => serde_json::json!(n),
            Literal::Bool(b) => Value::Bool(*b),
        }
    }
}

impl Condition {
    fn holds(&self, actual: &Value) -> bool {
        let one = || self.values[0].value();
        match self.op {
            Op::Eq => compare(actual, &one()).is_eq(),
            Op::Ne => compare(actual, &one()).is_ne(),
            Op::Lt => compare(actual, &one()).is_lt(),
            Op::Le => compare(actual, &one()).is_le(),
            Op::Gt => compare(actual, &one()).is_gt(),
            Op::Ge => compare(actual, &one()).is_ge(),
            Op::In => self.values.iter().any(|v| compare(actual, &v.value()).is_eq()),
            Op::Like => like(actual.as_str().unwrap_or_default(), &self.values[0]),
        }
    }
}

/// `like` with `%` wildcards, without case.
fn like(text: &str, pattern: &Literal) -> bool {
    let Literal::Text(pattern) = pattern else { return false };
    let (text, pattern) = (text.to_lowercase(), pattern.to_lowercase());
    let parts: Vec<&str> = pattern.split('%').collect();
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(after) = rest.strip_prefix(part) else { return false };
            rest = after;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_parse_as_quickbooks_reads_them() {
        let q = Query::parse("SELECT * FROM Item WHERE Name = 'Joe\\'s Tee' AND Active IN (true, false) ORDERBY MetaData.LastUpdatedTime DESC STARTPOSITION 11 MAXRESULTS 5").unwrap();
        assert_eq!(q.entity, "Item");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.order, Some(("MetaData.LastUpdatedTime".into(), true)));
        assert_eq!((q.start, q.max), (11, 5));
        assert!(q.mentions_active());
        assert!(q.matches(&json!({"Name": "joe's tee", "Active": false})));
        assert!(!q.matches(&json!({"Name": "Joe", "Active": true})));
        assert!(Query::parse("select count(*) from Item").unwrap().count);
        assert!(Query::parse("select * from Item where Name = 'a' or Name = 'b'").unwrap_err().contains("OR"));
        assert!(Query::parse("select * from Item where Name = 'open").unwrap_err().contains("unterminated"));
        assert!(Query::parse("select Name from Item").is_err());
    }

    #[test]
    fn comparisons_follow_the_values_kinds() {
        let item = json!({"Id": "12", "Name": "Gold Plan", "MetaData": {"LastUpdatedTime": "2026-11-30T09:00:00-08:00"}});
        let holds = |text: &str| Query::parse(&format!("select * from Item where {text}")).unwrap().matches(&item);
        assert!(holds("Id > '9'"), "ids compare as numbers, not text");
        assert!(holds("Name LIKE '%plan'") && holds("Name like 'gold%'") && !holds("Name like '%silver%'"));
        assert!(holds("MetaData.LastUpdatedTime >= '2026-11-30T16:59:00Z'"), "times compare as instants");
        assert!(holds("Name != 'Silver'"));
    }
}
