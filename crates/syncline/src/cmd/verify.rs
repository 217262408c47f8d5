//! `syncline verify <pipeline>`: compares the warehouse table a HubSpot source fills with
//! HubSpot itself — the live objects counted on both sides, then a random sample of live rows
//! read back from HubSpot and compared field by field — and prints the differences. It is the
//! seed users' "run the new sync beside the old one and compare" step, and writes nothing.
//! For a pipeline of associations it compares every link, both ways.

use std::collections::{BTreeSet, HashMap};

use syncline_connectors::hubspot::{DELETED_FIELD, DetailSource, MERGED_FIELD, RAW_FIELD};
use syncline_connectors::sql::{SqlSink, same_in_column};
use syncline_connectors::{AnySink, AnySource};
use syncline_core::{ConnectorError, FieldType, Record, Sink, Source, Value};

use crate::cli::VerifyArgs;
use crate::config::Config;
use crate::exit::{CliError, CliResult, Exit};
use crate::{output, pipeline};

pub async fn run(config: &Config, args: VerifyArgs) -> CliResult {
    let p = config.pipeline(&args.pipeline).ok_or_else(|| super::run::unknown_pipeline(config, &args.pipeline))?;
    let failed = |side: &'static str| move |e: ConnectorError| CliError::connector(&e, format!("pipeline {}: {side}", p.name));
    let source = pipeline::source(p, &config.base_dir, None).await?;
    let sink = pipeline::sink(p, &config.base_dir, p.batch_size).await?;
    let (mut source, mut sink) = match (source, sink) {
        (AnySource::HubSpot(source), AnySink::Sql(sink)) => (source, sink),
        (AnySource::HubSpotDetails(source), AnySink::Sql(sink)) if source.pair().is_some() => {
            return links(source, sink, &args).await.map_err(failed("source"));
        }
        (AnySource::HubSpotDetails(_) | AnySource::HubSpotReference(_), AnySink::Sql(_)) => {
            let message = format!(
                "pipeline {}: verify compares objects and links with HubSpot; property histories, owners and pipelines are read \
                 whole or per changed object on every run, so a run brings them level",
                p.name
            );
            return Err(CliError::usage(message));
        }
        _ => return Err(CliError::usage(format!("pipeline {}: verify compares a HubSpot source with the SQL table it fills", p.name))),
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

/// Links: every link HubSpot has between the pair (read as a full run would, into memory)
/// against every row of the table, both ways.
async fn links(mut source: DetailSource, sink: SqlSink, args: &VerifyArgs) -> Result<Exit, ConnectorError> {
    let (from, to) = source.pair().map(|(from, to)| (from.to_owned(), to.to_owned())).expect("a links source");
    let pair = format!("{from} → {to} links");
    let link = |values: &[Value]| -> Option<(i64, i64, i64)> {
        let number = |v: &Value| v.as_text().and_then(|t| t.trim().parse::<i64>().ok());
        Some((number(&values[0])?, number(&values[1])?, number(&values[2])?))
    };
    let (mut theirs, mut cursor) = (BTreeSet::new(), None);
    while let Some(page) = source.next_page(cursor.as_ref()).await? {
        cursor = page.cursor.clone();
        for record in &page.records {
            let values: Vec<Value> =
                ["from_id", "to_id", "type_id"].iter().map(|f| record.get(f).cloned().unwrap_or(Value::Null)).collect();
            theirs.extend(link(&values));
        }
    }
    let ours: BTreeSet<(i64, i64, i64)> = sink.rows(&["from_id", "to_id", "type_id"]).await?.iter().filter_map(|r| link(r)).collect();
    let missing: Vec<_> = theirs.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&theirs).collect();
    let agree = missing.is_empty() && extra.is_empty();
    output::line(format!(
        "{} {pair}: {} in HubSpot, {} rows in {}; {} missing, {} HubSpot no longer has",
        if agree { "✓" } else { "✗" },
        theirs.len(),
        ours.len(),
        sink.identity(),
        missing.len(),
        extra.len()
    ));
    let shown = missing.iter().map(|l| (l, "missing from the table")).chain(extra.iter().map(|l| (l, "not in HubSpot")));
    for ((from_id, to_id, type_id), why) in shown.clone().take(args.show) {
        output::line(format!("  {from} {from_id} → {to} {to_id} (type {type_id}): {why}"));
    }
    if missing.len() + extra.len() > args.show {
        output::line(format!("  … and {} more (--show N lists more)", missing.len() + extra.len() - args.show));
    }
    Ok(if agree { Exit::Ok } else { Exit::Rejects })
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
        let text = |t: &str| Value::Text(t.into());
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
