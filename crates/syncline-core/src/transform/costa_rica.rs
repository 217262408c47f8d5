//! The Costa Rica rules of the member database: cédula, phone and beneficiary percentages.

use super::present_text;
use crate::error::RecordError;
use crate::record::Record;
use crate::traits::Transform;
use crate::value::{Text, Value};
use compact_str::format_compact;

/// The kinds of Costa Rican identification numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CedulaKind {
    /// Cédula de identidad: 9 digits, the first (the province) 1–9.
    National,
    /// DIMEX, the residents' document: 11 or 12 digits.
    Dimex,
    /// Cédula jurídica (legal entities): 10 digits starting with 3.
    Legal,
}

impl CedulaKind {
    pub const ALL: [CedulaKind; 3] = [CedulaKind::National, CedulaKind::Dimex, CedulaKind::Legal];

    pub fn name(self) -> &'static str {
        match self {
            CedulaKind::National => "national",
            CedulaKind::Dimex => "dimex",
            CedulaKind::Legal => "legal",
        }
    }
}

/// Normalizes a cédula to its digits and tells its kind. Accepts `1-0234-0567`,
/// `1 0234 0567`, `102340567` and the short written form `1-234-567` (tomo and asiento
/// zero-padded to four digits).
pub fn normalize_cedula(input: &str) -> Result<(Text, CedulaKind), String> {
    let parts: Vec<&str> = input.split(|c: char| c == '-' || c.is_whitespace()).filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err("may contain only digits, spaces and dashes".into());
    }
    let digits = match parts.as_slice() {
        // provincia-tomo-asiento, as written on the card: pad tomo and asiento to four digits
        [prov, tomo, asiento] if prov.len() == 1 && (1..=4).contains(&tomo.len()) && (1..=4).contains(&asiento.len()) => {
            format_compact!("{prov}{tomo:0>4}{asiento:0>4}")
        }
        _ => parts.iter().copied().collect(),
    };
    let kind = match digits.len() {
        9 if !digits.starts_with('0') => CedulaKind::National,
        9 => return Err("a national cédula cannot start with 0".into()),
        10 if digits.starts_with('3') => CedulaKind::Legal,
        10 => return Err("a 10-digit cédula jurídica must start with 3".into()),
        11 | 12 => CedulaKind::Dimex,
        n => {
            return Err(format!("has {n} digits; expected 9 (national), 10 (legal entity) or 11–12 (DIMEX)"));
        }
    };
    Ok((digits, kind))
}

/// Validates and normalizes cédula fields to their digits.
pub struct Cedula {
    pub fields: Vec<String>,
    pub kinds: Vec<CedulaKind>,
}

impl Transform for Cedula {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for field in &self.fields {
            let Some(text) = present_text(&record, field) else { continue };
            let (digits, kind) = normalize_cedula(&text)
                .map_err(|why| RecordError::data(field, "cedula", format!("{} {why}", RecordError::quote(&text))))?;
            if !self.kinds.contains(&kind) {
                let allowed: Vec<_> = self.kinds.iter().map(|k| k.name()).collect();
                return Err(RecordError::data(
                    field,
                    "cedula",
                    format!("{} is a {} number; allowed: {}", RecordError::quote(&text), kind.name(), allowed.join(", ")),
                ));
            }
            record.set(field, Value::Text(digits));
        }
        Ok(record)
    }
}

/// Normalizes a Costa Rican phone number to E.164 (`+506XXXXXXXX`): eight digits whose first is
/// 2, 4, 6, 7 or 8, with an optional `+506`/`506` prefix, spaces, dashes, dots or parentheses.
pub fn normalize_phone(input: &str) -> Result<Text, String> {
    let mut digits = Text::with_capacity(12);
    for (i, c) in input.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(format!("has the character {c:?}")),
        }
    }
    let local = match digits.len() {
        8 => digits.as_str(),
        11 if digits.starts_with("506") => &digits[3..],
        n => return Err(format!("has {n} digits; expected 8, optionally after +506")),
    };
    if !matches!(local.as_bytes()[0], b'2' | b'4' | b'6' | b'7' | b'8') {
        return Err("must start with 2, 4, 6, 7 or 8".into());
    }
    Ok(format_compact!("+506{local}"))
}

/// Validates and normalizes phone fields; configured placeholder numbers become null.
pub struct Phone {
    pub fields: Vec<String>,
    /// Known fake numbers (e.g. `22120000`), compared after normalization.
    pub placeholders: Vec<Text>,
}

impl Phone {
    pub fn new(fields: Vec<String>, placeholders: &[String]) -> Result<Phone, String> {
        let placeholders =
            placeholders.iter().map(|p| normalize_phone(p).map_err(|why| format!("placeholder {p:?} {why}"))).collect::<Result<_, _>>()?;
        Ok(Phone { fields, placeholders })
    }
}

impl Transform for Phone {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for field in &self.fields {
            let Some(text) = present_text(&record, field) else { continue };
            let e164 =
                normalize_phone(&text).map_err(|why| RecordError::data(field, "phone", format!("{} {why}", RecordError::quote(&text))))?;
            let value = if self.placeholders.contains(&e164) { Value::Null } else { Value::Text(e164) };
            record.set(field, value);
        }
        Ok(record)
    }
}

/// Beneficiary percentages: each 0–100, and together exactly 100 when any is present.
pub struct Beneficiaries {
    pub fields: Vec<String>,
}

impl Transform for Beneficiaries {
    fn apply(&self, record: Record) -> Result<Record, RecordError> {
        let mut total = 0.0;
        let mut any = false;
        for field in &self.fields {
            let Some(text) = present_text(&record, field) else { continue };
            let pct: f64 = text
                .parse()
                .map_err(|_| RecordError::data(field, "beneficiaries", format!("{} is not a number", RecordError::quote(&text))))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(RecordError::data(field, "beneficiaries", format!("{pct} is outside 0–100")));
            }
            total += pct;
            any = true;
        }
        if any && (total - 100.0).abs() > 0.005 {
            return Err(RecordError::data(&self.fields.join("+"), "beneficiaries", format!("percentages add up to {total}, not 100")));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn cedula(input: &str, expect: Result<(&str, CedulaKind), &str>) {
        let got = normalize_cedula(input);
        match expect {
            Ok((digits, kind)) => assert_eq!(got, Ok((digits.into(), kind)), "{input}"),
            Err(fragment) => {
                let err = got.expect_err(input);
                assert!(err.contains(fragment), "{input}: {err}");
            }
        }
    }

    #[test]
    fn cedulas() {
        use CedulaKind::*;
        cedula("1-0234-0567", Ok(("102340567", National)));
        cedula("1 0234 0567", Ok(("102340567", National)));
        cedula("102340567", Ok(("102340567", National)));
        cedula("1-234-567", Ok(("102340567", National)));
        cedula("9-0001-0001", Ok(("900010001", National)));
        cedula("3-101-123456", Ok(("3101123456", Legal)));
        cedula("3101123456", Ok(("3101123456", Legal)));
        cedula("155812345678", Ok(("155812345678", Dimex)));
        cedula("15581234567", Ok(("15581234567", Dimex)));
        cedula("012345678", Err("cannot start with 0"));
        cedula("4101123456", Err("must start with 3"));
        cedula("12345", Err("has 5 digits"));
        cedula("1-02A4-0567", Err("only digits"));
        cedula("", Err("has 0 digits"));
    }

    #[track_caller]
    fn phone(input: &str, expect: Result<&str, &str>) {
        match (normalize_phone(input), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{input}: {got}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn phones() {
        phone("88887777", Ok("+50688887777"));
        phone("8888-7777", Ok("+50688887777"));
        phone("+506 8888 7777", Ok("+50688887777"));
        phone("506-2212-0000", Ok("+50622120000"));
        phone("(506) 4000-1234", Ok("+50640001234"));
        phone("60001234", Ok("+50660001234"));
        phone("70001234", Ok("+50670001234"));
        phone("10001234", Err("must start with 2, 4, 6, 7 or 8"));
        phone("30001234", Err("must start with"));
        phone("5001234", Err("has 7 digits"));
        phone("+1 305 555 0100", Err("has 11 digits"));
        phone("8888x7777", Err("character 'x'"));
    }

    #[test]
    fn placeholder_phones_become_null() {
        let rule = Phone::new(vec!["phone".into()], &["2212-0000".into()]).unwrap();
        let out = rule.apply(Record::new("1").with("phone", "22120000")).unwrap();
        assert_eq!(out.get("phone"), Some(&Value::Null));
        let out = rule.apply(Record::new("1").with("phone", "8888 7777")).unwrap();
        assert_eq!(out.get("phone"), Some(&Value::Text("+50688887777".into())));
    }

    #[test]
    fn beneficiary_percentages() {
        let rule = Beneficiaries { fields: vec!["p1".into(), "p2".into(), "p3".into()] };
        let rec = |a: &str, b: &str, c: &str| Record::new("k").with("p1", a).with("p2", b).with("p3", c);
        assert!(rule.apply(rec("50", "50", "")).is_ok());
        assert!(rule.apply(rec("", "", "")).is_ok(), "none present is fine");
        assert!(rule.apply(rec("33.34", "33.33", "33.33")).is_ok());
        let err = rule.apply(rec("50", "40", "")).unwrap_err();
        assert_eq!(err.rule, "beneficiaries");
        assert!(err.message.contains("add up to 90"), "{err}");
        let err = rule.apply(rec("150", "-50", "")).unwrap_err();
        assert_eq!(err.field, "p1");
        let err = rule.apply(rec("abc", "", "")).unwrap_err();
        assert!(err.message.contains("not a number"));
    }
}
