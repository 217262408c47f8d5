//! `syncline verify <pipeline>`: compares the warehouse table a HubSpot source fills with
//! HubSpot itself — the live objects counted on both sides, then a random sample of live rows
//! read back from HubSpot and compared field by field — and prints the differences. It is the
//! seed users' "run the new sync beside the old one and compare" step, and writes nothing.

use std::collections::HashMap;

use syncline_connectors::hubspot::{DELETED_FIELD, MERGED_FIELD, RAW_FIELD};
use syncline_connectors::sql::same_in_column;
use syncline_connectors::{AnySink, AnySource};
use syncline_core::{ConnectorError, FieldType, Record, Sink, Value};

use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::{output, pipeline};

pub async fn run(config: &Config, args: VerifyArgs) -> CliResult {
    let p = config.pipeline(&args.pipeline).ok_or_else(|| super::run::unknown_pipeline(config, &args.pipeline))?;
    let failed = |side: &'static str| move |e: ConnectorError| CliError::connector(&e, format!("pipeline {}: {side}", p.name));
    let source = pipeline::source(p, &config.base_dir, None).await?;
    let sink = pipeline::sink(p, &config.base_dir, p.batch_size).await?;
    let (AnySource::HubSpot(mut source), AnySink::Sql(mut sink)) = (source, sink) else {
        return Err(CliError::usage(format!("pipeline {}: verify compares a HubSpot source with the SQL table it fills", p.name)));
    };
    let object = source.stream().object.clone();
    let fields = source.fields().await.map_err(failed("source"))?;
    let in_hubspot = source.count().await.map_err(failed("source"))?;
    let (in_table, keys) = sink.live_rows(&[DELETED_FIELD, MERGED_FIELD], args.sample).await.map_err(failed("sink"))?;
    let counts_agree = in_hubspot == in_table;
    let mark = if counts_agree { "✓" } else { "✗" };
    output::line(format!(
        "{mark} {object}: {in_hubspot} live in HubSpot, {in_table} live rows in {} ({})",
        sink.identity(),
        match in_table.cmp(&in_hubspot) {
            std::cmp::Ordering::Equal => "the same".to_owned(),
            std::cmp::Ordering::Less => format!("{} missing", in_hubspot - in_table),
            std::cmp::Ordering::Greater => format!("{} more than HubSpot has", in_table - in_hubspot),
        }
    ));

    let theirs: HashMap<String, Record> =
        source.read_by_id(&keys).await.map_err(failed("source"))?.into_iter().map(|r| (r.key.clone(), r)).collect();
    let asked: Vec<Record> = keys.iter().map(|k| Record::new(k.clone())).collect();
    let ours = sink.current(&asked).await.map_err(failed("sink"))?.unwrap_or_default();
    let compared: Vec<&(String, FieldType)> =
        fields.iter().filter(|(name, _)| ![RAW_FIELD, DELETED_FIELD, MERGED_FIELD].contains(&name.as_str())).collect();
    let mut differences = Vec::new();
    for row in &ours {
        let Some(hubspot) = theirs.get(&row.key) else {
            differences.push(format!("{} {}: a live row, but HubSpot has no such object", object, row.key));
            continue;
        };
        for (name, field_type) in &compared {
            let Some(stored) = row.get(name) else { continue }; // a column the pipeline does not fill
            let current = hubspot.get(name).unwrap_or(&Value::Null);
            if !same_in_column(current, stored, *field_type) {
                differences.push(format!("{object} {} {name}: HubSpot {} · warehouse {}", row.key, shown(current), shown(stored)));
            }
        }
    }
    let mark = if differences.is_empty() { "✓" } else { "✗" };
    output::line(format!(
        "{mark} sample: {} live rows × {} fields compared with HubSpot, {} difference(s)",
        ours.len(),
        compared.len(),
        differences.len()
    ));
    for difference in differences.iter().take(args.show) {
        output::line(format!("  {difference}"));
    }
    if differences.len() > args.show {
        output::line(format!("  … and {} more (--show N lists more)", differences.len() - args.show));
    }
    Ok(if counts_agree && differences.is_empty() { Exit::Ok } else { Exit::Rejects })
}

fn shown(value: &Value) -> String {
    match value.as_text() {
        None => "(empty)".to_owned(),
        Some(text) => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use syncline_connectors::sql::same_in_column as same;

    #[test]
    fn values_compare_by_type_not_spelling() {
        let text = |t: &str| Value::Text(t.to_owned());
        assert!(same(&text("750000.25"), &Value::Float(750000.25), FieldType::Decimal));
        assert!(same(&text("3"), &Value::Decimal("3.00000000".into()), FieldType::Decimal));
        assert!(!same(&text("3"), &Value::Int(4), FieldType::Decimal));
        assert!(same(&text("2026-11-30T09:00:54.379Z"), &text("2026-11-30 09:00:54.379"), FieldType::TimestampTz));
        assert!(!same(&text("2026-11-30T09:00:54.379Z"), &text("2026-11-30 09:00:54.380"), FieldType::TimestampTz));
        assert!(same(&text("1990-04-01"), &text("1990-04-01T00:00:00Z"), FieldType::Date));
        assert!(same(&text(""), &Value::Null, FieldType::Text));
        assert!(!same(&text("Ana"), &text("Anna"), FieldType::Text));
        assert!(same(&text("true"), &Value::Bool(true), FieldType::Bool));
    }
}
