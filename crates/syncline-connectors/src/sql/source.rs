//! Reads a table or query in keyset pages ordered by `(watermark, key)`, so rows that share a
//! watermark value are never skipped or read twice, whatever the page size.

use super::config::{NullWatermarks, SqlSourceSettings, SqlTable, TextMode};
use super::dialect::Dialect;
use super::pool::{Param, SqlPool};
use chrono::{NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;
use syncline_core::{ConnectorError, Cursor, ErrorClass, Page, Record, RecordError, Source, Value};

pub struct SqlSource {
    pool: SqlPool,
    settings: SqlSourceSettings,
    /// Read from here (inclusive) when there is no cursor: `--since`.
    since: Option<NaiveDateTime>,
    /// A `--since` run that continues a committed cursor also reads everything after it,
    /// whatever `since` compares like against the stored values (text watermarks compare as
    /// text), so the cursor it moves never passes an unread row.
    resume: Option<Cursor>,
    /// The cursor the run started from gets the overlap; later pages do not.
    overlap_pending: bool,
}

impl SqlSource {
    pub async fn open(settings: SqlSourceSettings, since: Option<NaiveDateTime>) -> Result<SqlSource, ConnectorError> {
        let pool = SqlPool::connect(&settings.url, 2).await?;
        Ok(SqlSource { pool, settings, since, resume: None, overlap_pending: true })
    }

    /// Reads `since` on *and* everything after `cursor` (see `resume`).
    pub fn resume_after(&mut self, cursor: Cursor) {
        self.resume = Some(cursor);
    }

    fn relation(&self) -> String {
        match &self.settings.from {
            SqlTable::Table(table) => self.dialect().quote(table),
            SqlTable::Query(query) => format!("({query}) AS syncline_src"),
        }
    }

    fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// The WHERE clause and its parameters for reading after `after`.
    fn predicate(&mut self, after: Option<&Cursor>) -> Result<(String, Vec<Param>), ConnectorError> {
        let d = self.dialect();
        let (wm, key) = (d.quote(&self.settings.watermark), d.quote(&self.settings.key));
        match after {
            Some(cursor) => {
                let (watermark, last_key) = decode_cursor(cursor)?;
                let overlap = std::mem::take(&mut self.overlap_pending) && !self.settings.overlap.is_zero();
                if overlap {
                    if let Some(earlier) = minus(&watermark, self.settings.overlap) {
                        return Ok((format!("{wm} >= {}", d.placeholder(1)), vec![param(&earlier, d)?]));
                    }
                    tracing::warn!(watermark = %watermark, "overlap applies to date/time watermarks only; ignored");
                }
                let mut params = vec![param(&watermark, d)?; d.keyset_watermark_binds()];
                params.push(param(&last_key, d)?);
                Ok((d.keyset_after(&wm, &key), params))
            }
            None => match (self.since, &self.resume) {
                (Some(since), Some(cursor)) => {
                    let (watermark, last_key) = decode_cursor(cursor)?;
                    let mut params = vec![param(&watermark, d)?; d.keyset_watermark_binds()];
                    params.push(param(&last_key, d)?);
                    params.push(param(&Value::Timestamp(since), d)?);
                    // keyset_after takes placeholders 1 and 2 (or three `?`); `since` comes next
                    Ok((format!("(({}) OR {wm} >= {})", d.keyset_after(&wm, &key), d.placeholder(3)), params))
                }
                (Some(since), None) => Ok((format!("{wm} >= {}", d.placeholder(1)), vec![param(&Value::Timestamp(since), d)?])),
                // rows without a watermark are read on their own (`null_partition`), never here
                (None, _) => Ok((format!("{wm} IS NOT NULL"), Vec::new())),
            },
        }
    }

    /// With `null_watermarks: first`, the page of rows without a watermark that comes after
    /// `after` (a cursor in that partition, or the start), by key; None once past them.
    async fn null_partition(&mut self, after: Option<&Cursor>) -> Result<Option<Option<Page>>, ConnectorError> {
        let in_partition = match after {
            None => self.since.is_none(),
            Some(cursor) => decode_cursor(cursor)?.0.is_null(),
        };
        if self.settings.null_watermarks != NullWatermarks::First || !in_partition {
            return Ok(None);
        }
        let d = self.dialect();
        let (wm, key) = (d.quote(&self.settings.watermark), d.quote(&self.settings.key));
        let (predicate, params) = match after {
            Some(cursor) => (format!("{wm} IS NULL AND {key} > {}", d.placeholder(1)), vec![param(&decode_cursor(cursor)?.1, d)?]),
            None => (format!("{wm} IS NULL"), Vec::new()),
        };
        let sql = d.page_query(&self.relation(), &predicate, &key, self.settings.page_size);
        // `None` past them: the rows with a watermark come next
        Ok(self.fetch_page(&sql, &params).await?.map(Some))
    }

    /// How many rows the source holds now (`verify_counts`).
    pub async fn count_rows(&self) -> Result<u64, ConnectorError> {
        count(&self.pool, &format!("SELECT COUNT(*) AS n FROM {}", self.relation())).await
    }

    /// How many rows have no watermark, and the keys of the first few (`null_watermarks: refuse`
    /// checks this before a run, and `check` reports it).
    pub async fn rows_without_watermark(&self) -> Result<(u64, Vec<String>), ConnectorError> {
        let d = self.dialect();
        let (wm, key) = (d.quote(&self.settings.watermark), d.quote(&self.settings.key));
        let n = count(&self.pool, &format!("SELECT COUNT(*) AS n FROM {} WHERE {wm} IS NULL", self.relation())).await?;
        if n == 0 {
            return Ok((0, Vec::new()));
        }
        let some = self.pool.fetch(&d.page_query(&self.relation(), &format!("{wm} IS NULL"), &key, 3), &[]).await?;
        let at = some.names.iter().position(|n| n.eq_ignore_ascii_case(&self.settings.key));
        let keys = some.rows.into_iter().filter_map(|row| at.map(|i| row[i].to_string())).collect();
        Ok((n, keys))
    }

    /// The rows a page query returns, as a page (`None` for none). They are made into
    /// records where they were read (see [`SqlPool::fetch_then`]).
    async fn fetch_page(&self, sql: &str, params: &[Param]) -> Result<Option<Page>, ConnectorError> {
        let layout =
            PageLayout { key: self.settings.key.clone(), watermark: self.settings.watermark.clone(), text: self.settings.text.clone() };
        self.pool.fetch_then(sql, params, move |rows| layout.page(rows)).await
    }
}

/// What turns rows into a page: the key and watermark columns, and how to read text that is
/// not UTF-8.
struct PageLayout {
    key: String,
    watermark: String,
    text: std::collections::BTreeMap<String, TextMode>,
}

impl PageLayout {
    /// Rows as a page, with the cursor of its last row.
    fn page(&self, mut rows: super::pool::Rows) -> Result<Option<Page>, ConnectorError> {
        if rows.rows.is_empty() {
            return Ok(None);
        }
        let refused = self.apply_text_modes(&mut rows);
        let find = |name: &str| rows.names.iter().position(|n| n.eq_ignore_ascii_case(name));
        let missing = |what: &str, name: &str| {
            ConnectorError::new(
                ErrorClass::Config,
                format!("the source has no {what} column {name:?} (columns: {})", rows.names.join(", ")),
            )
        };
        let key_at = find(&self.key).ok_or_else(|| missing("key", &self.key))?;
        let wm_at = find(&self.watermark).ok_or_else(|| missing("watermark", &self.watermark))?;
        let Some(last) = rows.rows.last() else { return Ok(None) };
        let cursor = cursor_of(&last[wm_at], &last[key_at]);
        let (mut records, mut rejected) = (Vec::with_capacity(rows.rows.len()), Vec::new());
        for (i, values) in rows.rows.into_iter().enumerate() {
            let record = Record { key: values[key_at].to_string(), fields: rows.names.iter().cloned().zip(values).collect() };
            match refused.get(&i) {
                Some(error) => rejected.push((record, error.clone())),
                None => records.push(record),
            }
        }
        Ok(Some(Page { records, cursor: Some(cursor), rejected }))
    }

    /// Text that is not UTF-8: kept with replacement characters in a `lossy` column, base64 in
    /// a `bytes` one (whose every value is then base64), and in any other column the reason its
    /// row becomes a dead letter, naming the field and the first byte that is wrong.
    fn apply_text_modes(&self, rows: &mut super::pool::Rows) -> std::collections::BTreeMap<usize, RecordError> {
        use base64::Engine;
        let base64 = |bytes: &[u8]| Value::Text(base64::engine::general_purpose::STANDARD.encode(bytes).into());
        let mode = |column: usize| {
            let name = &rows.names[column];
            self.text.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, m)| *m)
        };
        let bytes_columns: Vec<usize> = (0..rows.names.len()).filter(|c| mode(*c) == Some(TextMode::Bytes)).collect();
        for row in rows.rows.iter_mut() {
            for &c in &bytes_columns {
                if let Value::Text(text) = &row[c] {
                    row[c] = base64(text.as_bytes());
                }
            }
        }
        let mut refused = std::collections::BTreeMap::new();
        for cell in std::mem::take(&mut rows.invalid) {
            match mode(cell.column) {
                Some(TextMode::Lossy) => {}
                Some(TextMode::Bytes) => rows.rows[cell.row][cell.column] = base64(&cell.bytes),
                None => {
                    let field = rows.names[cell.column].to_string();
                    let at = std::str::from_utf8(&cell.bytes).err().map_or(0, |e| e.valid_up_to());
                    let around: Vec<String> =
                        cell.bytes[at.saturating_sub(3)..(at + 3).min(cell.bytes.len())].iter().map(|b| format!("{b:02X}")).collect();
                    let message = format!(
                        "not valid UTF-8 at byte {at} (… {} …); to take it, set text: {{{field}: lossy}} (replacement characters) or bytes (base64) in the source",
                        around.join(" ")
                    );
                    refused.entry(cell.row).or_insert_with(|| RecordError::data(&field, "utf8", message));
                }
            }
        }
        refused
    }
}

impl SqlSource {
    /// How many rows a run starting at `after` will read (for progress and ETA).
    pub async fn estimate(&mut self, after: Option<&Cursor>) -> Result<u64, ConnectorError> {
        let pending = self.overlap_pending;
        let (predicate, params) = self.predicate(after)?;
        self.overlap_pending = pending;
        let sql = format!("SELECT COUNT(*) AS n FROM {} WHERE {predicate}", self.relation());
        let rows = self.pool.fetch(&sql, &params).await?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => *n as u64,
            Some(Value::Decimal(n)) => n.parse().unwrap_or(0),
            _ => 0,
        })
    }

    pub fn pool(&self) -> &SqlPool {
        &self.pool
    }

    /// The columns it reads and their families, found without reading a row (`syncline check`).
    pub async fn columns(&self) -> Result<Vec<(String, syncline_core::FieldType)>, ConnectorError> {
        self.pool.describe(&self.relation()).await
    }

    /// The first `rows` rows in the order a run reads them (`syncline check` runs the
    /// transforms over them).
    pub async fn sample(&mut self, rows: usize) -> Result<Vec<Record>, ConnectorError> {
        let page_size = std::mem::replace(&mut self.settings.page_size, rows.max(1));
        let page = self.next_page(None).await;
        self.settings.page_size = page_size;
        Ok(page?.map(|p| p.records).unwrap_or_default())
    }

    pub fn settings(&self) -> &SqlSourceSettings {
        &self.settings
    }

    /// What it reads, for keying its cursor (no credentials).
    pub fn identity(&self) -> String {
        self.settings.identity()
    }

    /// Whether reading from `since` on covers every row after `cursor`, so a `--since` run may
    /// move the cursor. False when the watermark is not a date or time, or cannot be compared:
    /// the run then reads its window and leaves the cursor alone, which can never skip a row.
    pub fn starts_at_or_before(&self, since: NaiveDateTime, cursor: &Cursor) -> bool {
        let Ok((watermark, _)) = decode_cursor(cursor) else { return false };
        match watermark {
            Value::Timestamp(t) => since <= t,
            Value::TimestampTz(t) => since <= t.naive_utc(),
            Value::Date(d) => since <= d.and_time(chrono::NaiveTime::MIN),
            Value::Text(text) => parse_datetime(&text).is_some_and(|t| since <= t),
            _ => false,
        }
    }
}

impl Source for SqlSource {
    async fn next_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        if let Some(page) = self.null_partition(after).await? {
            return Ok(page);
        }
        // past the rows without a watermark: the rest, from the start
        let after = match after {
            Some(cursor) if decode_cursor(cursor)?.0.is_null() => None,
            other => other,
        };
        let d = self.dialect();
        let (predicate, params) = self.predicate(after)?;
        let (wm, key) = (d.quote(&self.settings.watermark), d.quote(&self.settings.key));
        let sql = d.page_query(&self.relation(), &predicate, &format!("{wm}, {key}"), self.settings.page_size);
        self.fetch_page(&sql, &params).await
    }

    fn cursor_after(&self, record: &Record) -> Option<Cursor> {
        let field = |name: &str| record.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        Some(cursor_of(field(&self.settings.watermark)?, field(&self.settings.key)?))
    }
}

/// The number a `SELECT COUNT(*) …` returns.
pub(super) async fn count(pool: &SqlPool, sql: &str) -> Result<u64, ConnectorError> {
    let rows = pool.fetch(sql, &[]).await?;
    Ok(match rows.rows.first().and_then(|r| r.first()) {
        Some(Value::Int(n)) => *n as u64,
        Some(Value::Decimal(n)) => n.parse().unwrap_or(0),
        _ => 0,
    })
}

fn cursor_of(watermark: &Value, key: &Value) -> Cursor {
    Cursor(json!({ "watermark": watermark.to_tagged(), "key": key.to_tagged() }))
}

/// Splits a cursor into its watermark and key.
pub fn decode_cursor(cursor: &Cursor) -> Result<(Value, Value), ConnectorError> {
    let part = |name: &str| cursor.0.get(name).and_then(Value::from_tagged);
    match (part("watermark"), part("key")) {
        (Some(w), Some(k)) => Ok((w, k)),
        _ => Err(ConnectorError::new(
            ErrorClass::Config,
            format!(
                "cursor {} is not a SQL cursor: {{\"watermark\": {{\"kind\": …, \"value\": …}}, \"key\": {{\"kind\": …, \"value\": …}}}} \
                 (kinds: int, decimal, text, date, timestamp, timestamptz); `syncline state clear` forgets a stored one",
                cursor.0
            ),
        )),
    }
}

/// A cursor value as a bind parameter of its own type.
fn param(value: &Value, dialect: Dialect) -> Result<Param, ConnectorError> {
    Ok(match value {
        Value::Null => Param::Text(None),
        Value::Bool(b) => Param::Bool(Some(*b)),
        Value::Int(i) => Param::Int(Some(*i)),
        Value::Float(f) => Param::Float(Some(*f)),
        Value::Decimal(s) => Param::Decimal(Some(
            Decimal::from_str(s).map_err(|e| ConnectorError::new(ErrorClass::Internal, format!("bad decimal in cursor: {e}")))?,
        )),
        Value::Text(s) => Param::Text(Some(s.clone())),
        Value::Date(d) => Param::Date(Some(*d)),
        Value::Timestamp(t) => Param::Timestamp(Some(*t)),
        Value::TimestampTz(t) if dialect == Dialect::MySql => Param::Timestamp(Some(t.naive_utc())),
        Value::TimestampTz(t) => Param::TimestampTz(Some(*t)),
    })
}

/// The watermark moved back by `overlap`, for date/time watermarks (text ones included).
fn minus(watermark: &Value, overlap: std::time::Duration) -> Option<Value> {
    let overlap = chrono::Duration::from_std(overlap).ok()?;
    match watermark {
        Value::Timestamp(t) => Some(Value::Timestamp(*t - overlap)),
        Value::TimestampTz(t) => Some(Value::TimestampTz(*t - overlap)),
        Value::Date(d) => Some(Value::Date(*d - overlap)),
        Value::Text(s) => {
            let naive = parse_datetime(s)?;
            // keep the stored text format so text comparison stays correct
            let sep = if s.contains('T') { "T" } else { " " };
            Some(Value::Text((naive - overlap).format(&format!("%Y-%m-%d{sep}%H:%M:%S%.f")).to_string().into()))
        }
        _ => None,
    }
}

/// A date/time watermark stored as text (`2024-05-01 10:00:00`, ISO 8601 or RFC 3339), in UTC.
fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let iso = text.replace(' ', "T");
    NaiveDateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(&iso).ok().map(|t| t.with_timezone(&Utc).naive_utc()))
        .or_else(|| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(|d| d.and_time(chrono::NaiveTime::MIN)))
}
