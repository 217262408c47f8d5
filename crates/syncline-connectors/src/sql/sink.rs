//! Upserts batches by key into a table. With `create_table` it creates the table from the first
//! batch and adds a column for each field that appears later (a property added in HubSpot),
//! each of the type its source declares, or else of its values' type. Values are converted to
//! each column's type before binding, so one bad value rejects its record, not the batch.

use super::config::SqlSinkSettings;
use super::dialect::{Dialect, field_type_of};
use super::pool::{ColumnValues, Param, Rows, SqlPool, Statement};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use syncline_core::FieldType;
use syncline_core::{ConnectorError, ErrorClass, Outcome, Record, RecordError, Replaces, Sink, Text, Value};

pub struct SqlSink {
    pool: SqlPool,
    settings: SqlSinkSettings,
    /// The table's columns, once known.
    columns: Option<HashMap<String, FieldType>>,
    /// The field types the source declares (a HubSpot property's type), for the columns made.
    declared: HashMap<String, FieldType>,
    /// How the source's records replace stored rows, when a record alone cannot say it.
    replaces: Option<Replaces>,
    /// The statements made so far for one shape of record.
    shape: Shape,
    /// PostgreSQL: whether every row this sink writes is new, as far as it knows (the table
    /// was empty at its first write, and no insert since was refused). Those rows go in by a
    /// plain insert rather than an upsert: a first full run into a new table, the largest one,
    /// without the server's cost of checking each row for a conflict and reporting it back.
    /// `None` until the first write.
    all_new: Option<bool>,
}

/// The statements for records of these field names, each made once.
#[derive(Default)]
struct Shape {
    names: Vec<String>,
    /// Upserts by rows per statement.
    upserts: HashMap<usize, Arc<str>>,
    /// The one-row insert of a new key (SQLite).
    insert: Option<Arc<str>>,
}

/// PostgreSQL batches of at least this many rows are written as two halves at once.
const HALVES_FROM: usize = 512;

impl SqlSink {
    pub async fn open(settings: SqlSinkSettings) -> Result<SqlSink, ConnectorError> {
        let pool = SqlPool::connect(&settings.url, 2).await?;
        Ok(SqlSink { pool, settings, columns: None, declared: HashMap::new(), replaces: None, shape: Shape::default(), all_new: None })
    }

    fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    pub fn pool(&self) -> &SqlPool {
        &self.pool
    }

    /// How many rows the table holds (`verify_counts`); 0 when it does not exist yet.
    pub async fn count_rows(&self) -> Result<u64, ConnectorError> {
        if self.pool.columns(&self.settings.table).await?.is_none() {
            return Ok(0);
        }
        super::source::count(&self.pool, &format!("SELECT COUNT(*) AS n FROM {}", self.dialect().quote(&self.settings.table))).await
    }

    /// How many rows the table holds that `live_column`s leave empty (every row when the table
    /// lacks them), and the keys of up to `sample` of those rows picked at random (`verify`).
    pub async fn live_rows(&self, live_columns: &[&str], sample: usize) -> Result<(u64, Vec<String>), ConnectorError> {
        let Some(columns) = self.pool.columns(&self.settings.table).await? else { return Ok((0, Vec::new())) };
        let d = self.dialect();
        let live: Vec<String> = live_columns
            .iter()
            .filter(|name| columns.iter().any(|(c, _)| c == *name))
            .map(|name| format!("{} IS NULL", d.quote(name)))
            .collect();
        let filter = if live.is_empty() { String::new() } else { format!(" WHERE {}", live.join(" AND ")) };
        let table = d.quote(&self.settings.table);
        let rows = super::source::count(&self.pool, &format!("SELECT COUNT(*) AS n FROM {table}{filter}")).await?;
        let random = if d == Dialect::MySql { "RAND()" } else { "RANDOM()" };
        let key = d.quote(&self.settings.key);
        let picked = self.pool.fetch(&format!("SELECT {key} FROM {table}{filter} ORDER BY {random} LIMIT {sample}"), &[]).await?;
        Ok((rows, picked.rows.into_iter().filter_map(|r| r.into_iter().next()).map(|v| v.to_string()).collect()))
    }

    /// These columns of every row (none when the table does not exist yet; `verify`).
    pub async fn rows(&self, columns: &[&str]) -> Result<Vec<Vec<Value>>, ConnectorError> {
        if self.pool.columns(&self.settings.table).await?.is_none() {
            return Ok(Vec::new());
        }
        let d = self.dialect();
        let list: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let sql = format!("SELECT {} FROM {}", list.join(", "), d.quote(&self.settings.table));
        Ok(self.pool.fetch(&sql, &[]).await?.rows)
    }

    /// The table's columns, or `None` when it does not exist (`syncline check`).
    pub async fn table_columns(&self) -> Result<Option<Vec<(String, FieldType)>>, ConnectorError> {
        self.pool.columns(&self.settings.table).await
    }

    pub fn settings(&self) -> &SqlSinkSettings {
        &self.settings
    }

    /// What it writes to, for keying state (no credentials).
    pub fn identity(&self) -> String {
        self.settings.identity()
    }

    /// The types the source knows its fields to have, for the columns this sink creates.
    pub fn declare(&mut self, fields: &[(String, FieldType)]) {
        self.declared.extend(fields.iter().cloned());
    }

    /// Each batch also deletes the older rows of the groups its records belong to (see
    /// [`Replaces`]), in the transaction that writes the batch.
    pub fn replace_groups(&mut self, replaces: Replaces) {
        self.replaces = Some(replaces);
    }

    /// `DELETE` statements for the rows of `batch`'s groups older than the batch's versions.
    fn older_rows(&self, replaces: &Replaces, batch: &[Record]) -> Result<Vec<Statement>, ConnectorError> {
        let columns = self.columns.as_ref().expect("known after ensure_table");
        let group_type = columns.get(replaces.group).copied().unwrap_or(FieldType::Text);
        let mut groups: std::collections::BTreeMap<i64, Vec<(String, Param)>> = std::collections::BTreeMap::new();
        for record in batch {
            let group = record.get(replaces.group).unwrap_or(&Value::Null);
            let version = record.get(replaces.version).and_then(Value::as_text).and_then(|t| t.trim().parse::<i64>().ok());
            let (Some(version), Ok(param), false) = (version, convert(group, group_type), group.is_null()) else {
                let message = format!(
                    "record {}: no {} or whole-number {} to replace its older rows by",
                    record.key, replaces.group, replaces.version
                );
                return Err(ConnectorError::new(ErrorClass::Data, message));
            };
            groups.entry(version).or_default().push((group.as_text().unwrap_or_default().into_owned(), param));
        }
        let d = self.dialect();
        let mut statements = Vec::new();
        for (version, mut members) in groups {
            members.sort_by(|a, b| a.0.cmp(&b.0));
            members.dedup_by(|a, b| a.0 == b.0);
            for chunk in members.chunks(500) {
                let marks: Vec<String> = (2..chunk.len() + 2).map(|i| d.placeholder(i)).collect();
                let sql = format!(
                    "DELETE FROM {} WHERE {} < {} AND {} IN ({})",
                    d.quote(&self.settings.table),
                    d.quote(replaces.version),
                    d.placeholder(1),
                    d.quote(replaces.group),
                    marks.join(", ")
                );
                let params = std::iter::once(Param::Int(Some(version))).chain(chunk.iter().map(|(_, p)| p.clone())).collect();
                statements.push((sql.into(), params));
            }
        }
        Ok(statements)
    }

    /// A field the source now declares of a type its column cannot hold (a HubSpot property
    /// whose type was changed) stops the run before anything is written, naming both.
    fn refuse_changed_types(&self, columns: &HashMap<String, FieldType>) -> Result<(), ConnectorError> {
        let mut changed: Vec<String> = self
            .declared
            .iter()
            .filter_map(|(name, declared)| columns.get(name).map(|column| (name, *declared, *column)))
            .filter(|(_, declared, column)| !holds(*column, *declared))
            .map(|(name, declared, column)| format!("{name:?} is now {declared:?} but its column is {column:?}"))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        changed.sort();
        let message = format!(
            "sink table {:?}: the source's field types changed: {}; alter or drop those columns (a dropped one is made again), \
             or leave the fields out",
            self.settings.table,
            changed.join("; ")
        );
        Err(ConnectorError::new(ErrorClass::Config, message))
    }

    /// The type a column for `name` is made of: the declared one, or the first value's.
    fn type_for(&self, name: &str, sample: &[Record]) -> FieldType {
        let of_values = || sample.iter().find_map(|r| r.get(name).and_then(Value::field_type));
        self.declared.get(name).copied().or_else(of_values).unwrap_or(FieldType::Text)
    }

    fn column_definition(&self, name: &str, sample: &[Record]) -> String {
        let is_key = name == self.settings.key;
        let not_null = if is_key { " NOT NULL PRIMARY KEY" } else { "" };
        let column_type = self.dialect().column_type(self.type_for(name, sample), is_key);
        format!("{} {column_type}{not_null}", self.dialect().quote(name))
    }

    /// Learns the table's columns, creating the table from `sample` when it is missing and
    /// `create_table` is set, and adding a column for each of `fields` it lacks.
    async fn ensure_table(&mut self, fields: &[String], sample: &[Record]) -> Result<(), ConnectorError> {
        let table = self.settings.table.clone();
        if self.columns.is_none() {
            let mut found = self.pool.columns(&table).await?;
            if found.is_none() && self.settings.create_table && !fields.is_empty() {
                let defs: Vec<String> = fields.iter().map(|name| self.column_definition(name, sample)).collect();
                self.pool.execute(&format!("CREATE TABLE IF NOT EXISTS {} ({})", self.dialect().quote(&table), defs.join(", "))).await?;
                tracing::info!(table = %table, "created the sink table");
                found = self.pool.columns(&table).await?;
            }
            let columns = found.ok_or_else(|| {
                ConnectorError::new(ErrorClass::Config, format!("sink table {table:?} does not exist; create it or set create_table: true"))
            })?;
            let columns: HashMap<String, FieldType> = columns.into_iter().collect();
            if !columns.contains_key(&self.settings.key) {
                let message = format!("sink table {table:?} has no key column {:?}", self.settings.key);
                return Err(ConnectorError::new(ErrorClass::Config, message));
            }
            self.refuse_changed_types(&columns)?;
            self.columns = Some(columns);
        }
        let known = self.columns.as_ref().expect("learnt above");
        let missing: Vec<&String> = fields.iter().filter(|name| !known.contains_key(*name)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !self.settings.create_table {
            let message = format!(
                "sink table {table:?} has no column {:?}; add it, set create_table: true to add columns for new fields, \
                 or drop the field with a select transform",
                missing[0]
            );
            return Err(ConnectorError::new(ErrorClass::Config, message));
        }
        let mut added = Vec::new();
        for name in missing {
            let column_type = self.dialect().column_type(self.type_for(name, sample), false);
            let sql = format!("ALTER TABLE {} ADD COLUMN {} {column_type}", self.dialect().quote(&table), self.dialect().quote(name));
            if let Err(error) = self.pool.execute(&sql).await {
                // another run may have added it first
                let now = self.pool.columns(&table).await?.unwrap_or_default();
                if !now.iter().any(|(column, _)| column == name) {
                    return Err(error);
                }
            }
            tracing::info!(table = %table, column = %name, "added a column for a new field");
            // as the database will describe it (PostgreSQL's cached statements may not yet)
            added.push((name.clone(), field_type_of(column_type)));
        }
        self.columns.as_mut().expect("learnt above").extend(added);
        Ok(())
    }

    /// Keys of the batch that already exist at the destination.
    async fn existing(&self, keys: &[&str]) -> Result<HashSet<String>, ConnectorError> {
        let key = self.dialect().quote(&self.settings.key);
        let mut found = HashSet::new();
        for chunk in keys.chunks(1000) {
            let rows = self.select_by_key(&key, chunk).await?;
            found.extend(rows.rows.into_iter().filter_map(|r| r.into_iter().next()).map(|v| v.to_string()));
        }
        Ok(found)
    }

    /// `SELECT columns FROM table WHERE key IN (keys)`, the keys bound with the key column's type.
    async fn select_by_key(&self, columns: &str, keys: &[&str]) -> Result<Rows, ConnectorError> {
        let d = self.dialect();
        let marks: Vec<String> = (1..=keys.len()).map(|i| d.placeholder(i)).collect();
        let sql = format!(
            "SELECT {columns} FROM {} WHERE {} IN ({})",
            d.quote(&self.settings.table),
            d.quote(&self.settings.key),
            marks.join(", ")
        );
        let key_family = self.columns.as_ref().and_then(|c| c.get(&self.settings.key)).copied().unwrap_or(FieldType::Text);
        let params: Vec<Param> = keys
            .iter()
            .map(|k| convert(&Value::Text((*k).into()), key_family))
            .collect::<Result<_, _>>()
            .map_err(|e| ConnectorError::new(ErrorClass::Data, e))?;
        self.pool.fetch(&sql, &params).await
    }

    /// The statements that upsert `rows` (each a record's values, in `names`' order): on
    /// PostgreSQL one statement binding each column as an array, elsewhere multi-row `VALUES`,
    /// each row's values moved into its statement's parameters.
    fn upserts(&mut self, names: &[String], rows: Vec<Vec<Param>>) -> Vec<Statement> {
        let d = self.dialect();
        if rows.is_empty() {
            return Vec::new();
        }
        if d.binds_columns() {
            let typed = self.typed(names);
            let arrays = column_arrays(&typed, rows);
            return vec![(d.upsert_columns(&self.settings.table, &self.settings.key, &typed).into(), arrays)];
        }
        let per_statement = d.rows_per_statement(names.len());
        let mut statements = Vec::with_capacity(rows.len().div_ceil(per_statement));
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut params = Vec::with_capacity(per_statement * names.len());
            let mut n = 0;
            for row in rows.by_ref().take(per_statement) {
                params.extend(row);
                n += 1;
            }
            statements.push((self.upsert_sql(names, n), params));
        }
        statements
    }

    /// Whether rows are inserted as new ones, with no upsert: PostgreSQL, and a table that was
    /// empty at this sink's first write (see the field `all_new`).
    async fn all_new(&mut self) -> Result<bool, ConnectorError> {
        if !self.dialect().binds_columns() {
            return Ok(false);
        }
        if self.all_new.is_none() {
            let table = self.dialect().quote(&self.settings.table);
            let rows = self.pool.fetch(&format!("SELECT 1 FROM {table} LIMIT 1"), &[]).await?.rows;
            self.all_new = Some(rows.is_empty());
        }
        Ok(self.all_new == Some(true))
    }

    /// The plain insert of `rows` as one statement of one array per column (PostgreSQL).
    fn inserts(&self, names: &[String], rows: Vec<Vec<Param>>) -> Vec<Statement> {
        if rows.is_empty() {
            return Vec::new();
        }
        let typed = self.typed(names);
        let arrays = column_arrays(&typed, rows);
        vec![(self.dialect().insert_columns(&self.settings.table, &typed).into(), arrays)]
    }

    /// `names` with their columns' types.
    fn typed(&self, names: &[String]) -> Vec<(String, FieldType)> {
        let columns = self.columns.as_ref().expect("known after ensure_table");
        names.iter().map(|n| (n.clone(), columns.get(n).copied().unwrap_or(FieldType::Text))).collect()
    }

    /// The statements for records of `names`, made again only when the names change.
    fn shape(&mut self, names: &[String]) -> &mut Shape {
        if self.shape.names != names {
            self.shape = Shape { names: names.to_vec(), ..Shape::default() };
        }
        &mut self.shape
    }

    /// The multi-row upsert of `rows` rows of `names`.
    fn upsert_sql(&mut self, names: &[String], rows: usize) -> Arc<str> {
        let (d, table, key) = (self.pool.dialect(), self.settings.table.clone(), self.settings.key.clone());
        self.shape(names).upserts.entry(rows).or_insert_with(|| d.upsert(&table, &key, names, rows).into()).clone()
    }

    /// The one-row insert of a new key of `names`.
    fn insert_sql(&mut self, names: &[String]) -> Arc<str> {
        let (d, table, key) = (self.pool.dialect(), self.settings.table.clone(), self.settings.key.clone());
        self.shape(names).insert.get_or_insert_with(|| d.insert_new(&table, &key, names).into()).clone()
    }

    /// Writes `rows` (the records of `keys`, each its values in `names`' order), then runs
    /// `after` in the same transaction. Returns, row by row, whether the row was new.
    async fn write_rows(
        &mut self,
        names: &[String],
        keys: Vec<&str>,
        rows: Vec<Vec<Param>>,
        after: Vec<Statement>,
    ) -> Result<Vec<bool>, ConnectorError> {
        if rows.is_empty() && after.is_empty() {
            return Ok(Vec::new());
        }
        if let SqlPool::Sqlite(db) = &self.pool {
            // in-process, a prepared one-row statement is as cheap as a multi-row one, and
            // SQLite's change count tells a new row from an updated one
            let db = db.clone();
            let statements = (self.insert_sql(names), self.upsert_sql(names, 1));
            return db.write_rows(statements, rows, after).await;
        }
        if after.is_empty() && self.all_new().await? {
            // two halves at once on the sink's two connections, as the upsert does below; the
            // rows are copied (their text mostly inline) in case the upsert has to write them
            let mut first = rows.clone();
            let second = first.split_off(if first.len() >= HALVES_FROM { first.len() / 2 } else { first.len() });
            let (first, second) = (self.inserts(names, first), self.inserts(names, second));
            let inserted = if second.is_empty() {
                self.pool.execute_all(first).await
            } else {
                tokio::try_join!(self.pool.execute_all(first), self.pool.execute_all(second)).map(|(first, _)| first)
            };
            match inserted {
                Ok(_) => return Ok(vec![true; keys.len()]),
                // a row was refused (its key is stored already, or a value does not fit): the
                // upsert below writes the batch and tells which (rows of a half that went in
                // count as updated then); later batches go that way too
                Err(e) if e.class == ErrorClass::Data => {
                    tracing::debug!(table = %self.settings.table, error = %e, "an insert of new rows was refused; upserting from here on");
                    self.all_new = Some(false);
                }
                Err(e) => return Err(e),
            }
        }
        // PostgreSQL's upsert says itself which rows it inserted; elsewhere a query first
        let says_itself = self.dialect().binds_columns();
        let existing = if keys.is_empty() || says_itself { HashSet::new() } else { self.existing(&keys).await? };
        let returned = if says_itself && after.is_empty() && rows.len() >= HALVES_FROM {
            // two halves at once, each a statement on its own connection: the server upserts
            // one while the other is still being sent or waits for its commit's WAL flush
            // (measured on 1M rows: 144,000–148,000 records/s against 130,000 for one statement
            // in the same sitting; four parts were slower than two on two cores). The batch's keys are distinct (superseded
            // records are not written), so the halves never touch the same row. When one half
            // fails after the other committed, the batch is written again, and the rows of
            // the committed half count as updated then.
            let mut first = rows;
            let second = first.split_off(first.len() / 2);
            let (first, second) = (self.upserts(names, first), self.upserts(names, second));
            let (mut returned, more) = tokio::try_join!(self.pool.execute_all(first), self.pool.execute_all(second))?;
            returned.extend(more);
            returned
        } else {
            let mut statements = self.upserts(names, rows);
            statements.extend(after);
            if statements.is_empty() { Vec::new() } else { self.pool.execute_all(statements).await? }
        };
        // PostgreSQL's upsert returns the keys it inserted as one JSON array
        let mut inserted = HashSet::new();
        for json in returned.iter().filter_map(|row| match row.first() {
            Some(Value::Text(json)) => Some(json),
            _ => None,
        }) {
            let keys: Vec<String> = serde_json::from_str(json)
                .map_err(|e| ConnectorError::new(ErrorClass::Internal, format!("the upsert's list of inserted keys: {e}")))?;
            inserted.extend(keys);
        }
        Ok(keys.into_iter().map(|key| if says_itself { inserted.contains(key) } else { !existing.contains(key) }).collect())
    }
}

impl Sink for SqlSink {
    async fn write(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, ConnectorError> {
        let names: Vec<String> = batch.first().map(|r| r.fields.iter().map(|(n, _)| n.to_string()).collect()).unwrap_or_default();
        self.ensure_table(&names, batch).await?;
        let columns = self.columns.as_ref().expect("known after ensure_table");
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];

        // the last record of a key wins; earlier ones in the batch are superseded
        let mut last_of: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for (i, record) in batch.iter().enumerate() {
            if let Some(earlier) = last_of.insert(record.key.as_str(), i) {
                outcomes[earlier] = Some(Outcome::Updated);
            }
        }

        // records that only name their group clear it and are not stored
        let replaced = match &self.replaces {
            Some(replaces) => {
                for (i, record) in batch.iter().enumerate() {
                    if record.get(replaces.member).is_none_or(Value::is_null) {
                        outcomes[i] = Some(Outcome::Unchanged);
                    }
                }
                self.older_rows(replaces, batch)?
            }
            None => Vec::new(),
        };

        // convert every record's values to its columns' types; a bad value rejects that record
        let types: Vec<FieldType> = names.iter().map(|name| columns.get(name).copied().unwrap_or(FieldType::Text)).collect();
        let mut rows: Vec<(usize, Vec<Param>)> = Vec::with_capacity(batch.len());
        for (i, record) in batch.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let mut params = Vec::with_capacity(names.len());
            let mut rejected = None;
            for (at, (name, family)) in names.iter().zip(&types).enumerate() {
                // records of one source mostly share the first one's field order
                let value = match record.fields.get(at) {
                    Some((field, value)) if **field == **name => value,
                    _ => record.get(name).unwrap_or(&Value::Null),
                };
                match convert(value, *family) {
                    Ok(p) => params.push(p),
                    Err(why) => {
                        rejected = Some(RecordError::data(name, "sink_type", why));
                        break;
                    }
                }
            }
            match rejected {
                Some(error) => outcomes[i] = Some(Outcome::Rejected(error)),
                None => rows.push((i, params)),
            }
        }

        // the batch first, then the older rows of its groups: a row written again is updated in
        // place (and counted so), and the delete leaves it, as it carries the batch's version
        let keys: Vec<&str> = rows.iter().map(|(i, _)| batch[*i].key.as_str()).collect();
        let (written, rows): (Vec<usize>, Vec<Vec<Param>>) = rows.into_iter().unzip();
        let created = self.write_rows(&names, keys, rows, replaced).await?;
        for (i, created) in written.into_iter().zip(created) {
            outcomes[i] = Some(if created { Outcome::Created } else { Outcome::Updated });
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every record has an outcome")).collect())
    }

    async fn current(&mut self, batch: &[Record]) -> Result<Option<Vec<Record>>, ConnectorError> {
        let keys: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
        if self.columns.is_none() {
            match self.pool.columns(&self.settings.table).await? {
                Some(found) => self.columns = Some(found.into_iter().collect()),
                None => return Ok(Some(Vec::new())), // no table yet: everything is a create
            }
        }
        let mut out = Vec::new();
        for chunk in keys.chunks(1000) {
            let rows = self.select_by_key("*", chunk).await?;
            let key_at = rows.names.iter().position(|n| **n == *self.settings.key).unwrap_or(0);
            for values in rows.rows {
                out.push(Record { key: values[key_at].to_string(), fields: rows.names.iter().cloned().zip(values).collect() });
            }
        }
        Ok(Some(out))
    }
}

/// Rows as one array parameter per column (PostgreSQL's `UNNEST`), each row's values moved in.
fn column_arrays(typed: &[(String, FieldType)], mut rows: Vec<Vec<Param>>) -> Vec<Param> {
    // the last column first, popped off each row
    let mut arrays: Vec<Param> = typed
        .iter()
        .rev()
        .map(|(_, family)| Param::Column(ColumnValues::of(rows.iter_mut().map(|row| row.pop().expect("a value per column")), *family)))
        .collect();
    arrays.reverse();
    arrays
}

/// Whether a column of type `column` holds every value of a field of type `field`: text holds
/// anything; numbers, times and booleans hold their own kind (a boolean is a number in MariaDB).
fn holds(column: FieldType, field: FieldType) -> bool {
    use FieldType::*;
    let kind = |t: FieldType| match t {
        Text => 0,
        Int | Float | Decimal | Bool => 1,
        Date | Timestamp | TimestampTz => 2,
    };
    column == Text || kind(column) == kind(field)
}

/// Whether two values are the same value once stored in a column of type `column`, however
/// each is spelled (text, a database's numbers and times); empty text equals null. How a
/// warehouse row is compared with its source (`syncline verify`).
pub fn same_in_column(a: &Value, b: &Value, column: FieldType) -> bool {
    let blank = |v: &Value| v.as_text().is_none_or(|t| t.trim().is_empty());
    if blank(a) || blank(b) {
        return blank(a) && blank(b);
    }
    match (convert(a, column), convert(b, column)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.as_text() == b.as_text(),
    }
}

/// Converts a value to a parameter of the column's type, or says why it cannot.
fn convert(value: &Value, family: FieldType) -> Result<Param, String> {
    // values already of the column's type first: no text is made or trimmed for them
    let typed = match (family, value) {
        (FieldType::Text, Value::Text(t)) => Some(Param::Text(Some(t.clone()))),
        (FieldType::Int, Value::Int(i)) => Some(Param::Int(Some(*i))),
        (FieldType::Float, Value::Float(f)) => Some(Param::Float(Some(*f))),
        (FieldType::Bool, Value::Bool(b)) => Some(Param::Bool(Some(*b))),
        (FieldType::Date, Value::Date(d)) => Some(Param::Date(Some(*d))),
        (FieldType::Timestamp, Value::Timestamp(ts)) => Some(Param::Timestamp(Some(*ts))),
        (FieldType::TimestampTz, Value::TimestampTz(ts)) => Some(Param::TimestampTz(Some(*ts))),
        _ => None,
    };
    if let Some(param) = typed {
        return Ok(param);
    }
    let blank = match value {
        Value::Null => true,
        Value::Text(t) | Value::Decimal(t) => t.trim().is_empty(),
        _ => false,
    };
    // blank text stays an empty string in a text column and is NULL in any other
    if value.is_null() || (blank && family != FieldType::Text) {
        return Ok(match family {
            FieldType::Text => Param::Text(None),
            FieldType::Int => Param::Int(None),
            FieldType::Float => Param::Float(None),
            FieldType::Decimal => Param::Decimal(None),
            FieldType::Bool => Param::Bool(None),
            FieldType::Date => Param::Date(None),
            FieldType::Timestamp => Param::Timestamp(None),
            FieldType::TimestampTz => Param::TimestampTz(None),
        });
    }
    let text = value.as_text().unwrap_or_default();
    let t = text.trim();
    let bad = |what: &str| format!("{} does not fit a {what} column", RecordError::quote(t));
    Ok(match (family, value) {
        (FieldType::Text, _) => Param::Text(Some(Text::from(text.as_ref()))),
        (FieldType::Int, Value::Bool(b)) => Param::Int(Some(*b as i64)),
        (FieldType::Int, _) => Param::Int(Some(t.parse().map_err(|_| bad("whole-number"))?)),
        (FieldType::Float, _) => Param::Float(Some(t.parse().map_err(|_| bad("number"))?)),
        (FieldType::Decimal, _) => {
            Param::Decimal(Some(Decimal::from_str(t).or_else(|_| Decimal::from_scientific(t)).map_err(|_| bad("decimal"))?))
        }
        (FieldType::Bool, _) => Param::Bool(Some(match t.to_ascii_lowercase().as_str() {
            "1" | "true" | "t" | "yes" | "y" => true,
            "0" | "false" | "f" | "no" | "n" => false,
            _ => return Err(bad("boolean")),
        })),
        (FieldType::Date, _) => Param::Date(Some(t.get(..10).unwrap_or(t).parse::<NaiveDate>().map_err(|_| bad("date"))?)),
        (FieldType::Timestamp, Value::TimestampTz(ts)) => Param::Timestamp(Some(ts.naive_utc())),
        (FieldType::Timestamp, _) => Param::Timestamp(Some(parse_timestamp(t).ok_or_else(|| bad("timestamp"))?)),
        (FieldType::TimestampTz, Value::Timestamp(ts)) => Param::TimestampTz(Some(ts.and_utc())),
        (FieldType::TimestampTz, _) => Param::TimestampTz(Some(
            DateTime::parse_from_rfc3339(t)
                .map(|x| x.with_timezone(&Utc))
                .ok()
                .or_else(|| parse_timestamp(t).map(|n| n.and_utc()))
                .ok_or_else(|| bad("timestamp"))?,
        )),
    })
}

fn parse_timestamp(t: &str) -> Option<NaiveDateTime> {
    // the usual spelling by chrono's own ISO reader first: a pattern is several times slower
    if let Ok(parsed) = t.trim_end_matches('Z').parse::<NaiveDateTime>() {
        return Some(parsed);
    }
    let iso = t.trim_end_matches('Z').replace(' ', "T");
    NaiveDateTime::parse_from_str(&iso, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(&iso, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(convert(&Value::Text("42".into()), FieldType::Int), Ok(Param::Int(Some(42))));
        assert_eq!(convert(&Value::Text("".into()), FieldType::Int), Ok(Param::Int(None)));
        assert_eq!(convert(&Value::Text("".into()), FieldType::Text), Ok(Param::Text(Some(Text::default()))));
        assert!(convert(&Value::Text("abc".into()), FieldType::Int).unwrap_err().contains("whole-number"));
        assert_eq!(
            convert(&Value::Text("2024-05-01T10:00:00".into()), FieldType::Timestamp),
            Ok(Param::Timestamp(NaiveDate::from_ymd_opt(2024, 5, 1).unwrap().and_hms_opt(10, 0, 0)))
        );
        // ISO with a fraction and a zone letter, with a space, or a date alone
        let at = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap().and_hms_milli_opt(10, 0, 0, 250).unwrap();
        for spelled in ["2024-05-01T10:00:00.250Z", "2024-05-01 10:00:00.250"] {
            assert_eq!(convert(&Value::Text(spelled.into()), FieldType::Timestamp), Ok(Param::Timestamp(Some(at))), "{spelled}");
        }
        assert_eq!(convert(&Value::Text("1950-01-02".into()), FieldType::Date), Ok(Param::Date(NaiveDate::from_ymd_opt(1950, 1, 2))));
        // a date is read from its first ten characters, which may not end on a character
        assert!(convert(&Value::Text("1950-01-0é2".into()), FieldType::Date).unwrap_err().contains("date"));
        assert_eq!(convert(&Value::Decimal("12.50".into()), FieldType::Decimal), Ok(Param::Decimal(Some(Decimal::new(1250, 2)))));
        assert_eq!(convert(&Value::Int(7), FieldType::Text), Ok(Param::Text(Some("7".into()))));
    }

    /// PostgreSQL's sink writes a large batch as two halves at once: a batch of 700 rows, 300
    /// of them already stored (spread over both halves), says created and updated row by row,
    /// and every row holds the batch's value.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_halves_tell_new_rows_from_updated_ones() {
        let Some(db) = syncline_testkit::postgres().await else { return };
        let settings = SqlSinkSettings { url: db.url.clone(), table: "people".into(), key: "id".into(), create_table: true };
        let mut sink = SqlSink::open(settings).await.unwrap();
        let person = |id: i64, version: i64| Record::new(id.to_string()).with("id", id).with("version", version);
        let stored: Vec<Record> = (0..700).filter(|id| id % 7 < 3).map(|id| person(id, 1)).collect();
        assert_eq!(stored.len(), 300);
        assert!(sink.write(&stored).await.unwrap().iter().all(|o| *o == Outcome::Created));

        let batch: Vec<Record> = (0..700).map(|id| person(id, 2)).collect();
        let outcomes = sink.write(&batch).await.unwrap();
        for (id, outcome) in (0..700).zip(&outcomes) {
            let expected = if id % 7 < 3 { Outcome::Updated } else { Outcome::Created };
            assert_eq!(*outcome, expected, "row {id}");
        }
        let rows = sink.pool().fetch("SELECT count(*), min(version), max(version) FROM people", &[]).await.unwrap().rows;
        assert_eq!(rows, vec![vec![Value::Int(700), Value::Int(2), Value::Int(2)]]);
        db.drop().await;
    }

    /// Into an empty PostgreSQL table the rows go by a plain insert, and are stored exactly as
    /// the upsert stores them (text with tabs, newlines and backslashes, nulls, decimals, times
    /// to the nanosecond given, floats); a batch holding a stored key is refused by the insert
    /// and written by upsert, which tells updated rows from new ones.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_inserts_into_an_empty_table_as_the_upsert_would() {
        let Some(db) = syncline_testkit::postgres().await else { return };
        let at = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap().and_hms_nano_opt(10, 20, 30, 123_456_789).unwrap();
        let row = |id: i64, version: i64| {
            Record::new(id.to_string())
                .with("id", id)
                .with("version", version)
                .with("note", if id % 3 == 0 { Value::Null } else { Value::Text(format!("a\tb\nc\\d \r {id}").into()) })
                .with("amount", Value::Decimal(format!("{id}.05").into()))
                .with("ratio", Value::Float(id as f64 / 7.0))
                .with("flag", Value::Bool(id % 2 == 0))
                .with("at", Value::Timestamp(at))
                .with("at_utc", Value::TimestampTz(at.and_utc()))
        };
        let columns = "id, version, note, amount, ratio, flag, at, at_utc";
        let mut stored = Vec::new();
        for (table, seeded) in [("by_insert", false), ("by_upsert", true)] {
            let settings = SqlSinkSettings { url: db.url.clone(), table: table.into(), key: "id".into(), create_table: true };
            if seeded {
                // a row already there, written by an earlier run: this sink upserts from its
                // first batch on
                let mut earlier = SqlSink::open(settings.clone()).await.unwrap();
                assert_eq!(earlier.write(&[row(1000, 0)]).await.unwrap(), vec![Outcome::Created]);
            }
            let mut sink = SqlSink::open(settings).await.unwrap();
            let batch: Vec<Record> = (0..300).map(|id| row(id, 1)).collect();
            assert!(sink.write(&batch).await.unwrap().iter().all(|o| *o == Outcome::Created), "{table}");
            assert_eq!(sink.all_new, Some(!seeded), "{table}");
            let sql = format!("SELECT {columns} FROM {table} WHERE id < 1000 ORDER BY id");
            stored.push(sink.pool().fetch(&sql, &[]).await.unwrap().rows);
            if !seeded {
                // 100 of these keys are stored: the insert is refused and the upsert tells them
                let next: Vec<Record> = (200..400).map(|id| row(id, 2)).collect();
                let outcomes = sink.write(&next).await.unwrap();
                for (id, outcome) in (200..400).zip(&outcomes) {
                    assert_eq!(*outcome, if id < 300 { Outcome::Updated } else { Outcome::Created }, "row {id}");
                }
                assert_eq!(sink.all_new, Some(false));
                let counts = sink.pool().fetch("SELECT count(*), sum(version)::bigint FROM by_insert", &[]).await.unwrap().rows;
                assert_eq!(counts, vec![vec![Value::Int(400), Value::Int(200 + 200 * 2)]]);
            }
        }
        assert_eq!(stored[0].len(), 300);
        assert_eq!(stored[0], stored[1], "the insert stores what the upsert stores");
        db.drop().await;
    }

    /// The pool does not ping a connection before each use, so each connection the server
    /// dropped fails one write, as a transient error (which the runner retries with backoff),
    /// and is replaced: with both of the sink's connections dropped, the third attempt writes.
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_connections_dropped_by_the_server_fail_once_each_as_transient() {
        let Some(db) = syncline_testkit::postgres().await else { return };
        let settings = SqlSinkSettings { url: db.url.clone(), table: "people".into(), key: "id".into(), create_table: true };
        let mut sink = SqlSink::open(settings).await.unwrap();
        let batch = |version: i64| -> Vec<Record> {
            (0..600).map(|id| Record::new(id.to_string()).with("id", id).with("version", version)).collect()
        };
        assert!(sink.write(&batch(1)).await.unwrap().iter().all(|o| *o == Outcome::Created));
        let killer = SqlPool::connect(&db.url, 1).await.unwrap();
        let killed = killer
            .fetch("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", &[])
            .await
            .unwrap()
            .rows;
        assert_eq!(killed, vec![vec![Value::Int(2)]], "the sink's two connections");
        let mut attempts = 0;
        let outcomes = loop {
            attempts += 1;
            match sink.write(&batch(2)).await {
                Ok(outcomes) => break outcomes,
                Err(e) => {
                    assert!(matches!(e.class, ErrorClass::Transient { .. }), "a dropped connection is transient: {e}");
                    assert!(attempts < 3, "a third failure, after both connections were replaced: {e}");
                }
            }
        };
        assert!(outcomes.iter().all(|o| *o == Outcome::Updated));
        let rows = killer.fetch("SELECT count(*), min(version) FROM people", &[]).await.unwrap().rows;
        assert_eq!(rows, vec![vec![Value::Int(600), Value::Int(2)]]);
        db.drop().await;
    }

    /// SQLite's sink tells new rows from updated ones by its change count (no query first):
    /// the counts and the stored values agree, a later record of a key supersedes an earlier
    /// one, and a value that does not fit rejects its record alone.
    #[tokio::test]
    async fn sqlite_tells_new_rows_from_updated_ones() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let settings = SqlSinkSettings { url, table: "people".into(), key: "id".into(), create_table: true };
        let mut sink = SqlSink::open(settings).await.unwrap();
        let person = |id: i64, name: &str, age: Value| Record::new(id.to_string()).with("id", id).with("name", name).with("age", age);
        let first = vec![person(1, "Ana", Value::Int(30)), person(2, "Bea", Value::Int(40))];
        assert_eq!(sink.write(&first).await.unwrap(), vec![Outcome::Created, Outcome::Created]);
        let second = vec![
            person(3, "Cai", Value::Int(1)),
            person(2, "Bea", Value::Int(41)),
            person(3, "Cai", Value::Int(2)),
            person(4, "Dov", Value::Text("old".into())),
        ];
        let outcomes = sink.write(&second).await.unwrap();
        assert_eq!(&outcomes[..3], [Outcome::Updated, Outcome::Updated, Outcome::Created], "the earlier 3 is superseded");
        assert!(matches!(&outcomes[3], Outcome::Rejected(e) if e.field == "age"), "{:?}", outcomes[3]);
        let rows = sink.pool().fetch("SELECT id, name, age FROM people ORDER BY id", &[]).await.unwrap().rows;
        let expected = [(1, "Ana", 30), (2, "Bea", 41), (3, "Cai", 2)];
        let expected: Vec<Vec<Value>> =
            expected.iter().map(|(id, name, age)| vec![Value::Int(*id), Value::Text((*name).into()), Value::Int(*age)]).collect();
        assert_eq!(rows, expected);
    }
}
