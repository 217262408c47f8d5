//! Dead letters: records that could not be written, kept with why until replayed or ignored.

use crate::{Store, StoreError, now, only_given, placeholders};
use serde::Serialize;
use syncline_core::Record;

/// One stored dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub pipeline: String,
    pub record_key: String,
    pub class: String,
    pub field: String,
    pub rule: String,
    pub message: String,
    pub payload: serde_json::Value,
    /// `open`, `resolved` (a later run wrote the record), `replayed` or `ignored`.
    pub status: String,
    pub attempts: i64,
    pub run_id: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub closed_at: Option<String>,
}

type Row = (i64, String, String, String, String, String, String, String, String, i64, Option<String>, String, String, Option<String>);

impl From<Row> for DeadLetterRow {
    fn from(r: Row) -> Self {
        DeadLetterRow {
            id: r.0,
            pipeline: r.1,
            record_key: r.2,
            class: r.3,
            field: r.4,
            rule: r.5,
            message: r.6,
            payload: serde_json::from_str(&r.7).unwrap_or_default(),
            status: r.8,
            attempts: r.9,
            run_id: r.10,
            first_seen_at: r.11,
            last_seen_at: r.12,
            closed_at: r.13,
        }
    }
}

impl DeadLetterRow {
    /// The stored payload as a record, ready to run through the transforms again.
    pub fn record(&self) -> Record {
        Record::from_json(self.record_key.clone(), &self.payload)
    }
}

/// Open dead letters of one pipeline failing one rule on one field (`syncline dlq summary`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterGroup {
    pub pipeline: String,
    pub rule: String,
    pub field: String,
    pub class: String,
    pub count: i64,
    /// One of their messages, as an example.
    pub example: String,
}

/// Which dead letters to list (`None`s and an empty `ids` match every one).
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub pipeline: Option<String>,
    /// `None`: every status.
    pub status: Option<String>,
    pub rule: Option<String>,
    pub field: Option<String>,
    pub class: Option<String>,
    /// The run that rejected them last.
    pub run_id: Option<String>,
    pub ids: Vec<i64>,
    /// Only ids below this one (the console's next page).
    pub before: Option<i64>,
    /// Newest first (the console) rather than oldest first (replay, `dlq list`).
    pub newest_first: bool,
    pub limit: Option<i64>,
}

const COLUMNS: &str =
    "id, pipeline, record_key, class, field, rule, message, payload, status, attempts, run_id, first_seen_at, last_seen_at, closed_at";

impl Store {
    pub async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterRow>, StoreError> {
        let equal = [
            ("pipeline", filter.pipeline.as_deref()),
            ("status", filter.status.as_deref()),
            ("rule", filter.rule.as_deref()),
            ("field", filter.field.as_deref()),
            ("class", filter.class.as_deref()),
            ("run_id", filter.run_id.as_deref()),
        ];
        let (mut conditions, texts) = only_given(&equal, filter.before);
        let mut numbers: Vec<i64> = filter.before.into_iter().collect();
        if !filter.ids.is_empty() {
            conditions.push(format!("id IN ({})", placeholders(texts.len() + numbers.len() + 1, filter.ids.len())));
            numbers.extend(&filter.ids);
        }
        numbers.push(filter.limit.unwrap_or(i64::MAX));
        let limit = texts.len() + numbers.len();
        let filters = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let order = if filter.newest_first { "DESC" } else { "" };
        let sql = format!("SELECT {COLUMNS} FROM dead_letters{filters} ORDER BY id {order} LIMIT ${limit}");
        let mut query = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
        for text in texts {
            query = query.bind(text);
        }
        for number in numbers {
            query = query.bind(number);
        }
        Ok(query.fetch_all(&self.pool).await?.into_iter().map(DeadLetterRow::from).collect())
    }

    pub async fn dead_letter(&self, id: i64) -> Result<DeadLetterRow, StoreError> {
        let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(DeadLetterRow::from).ok_or_else(|| StoreError::NotFound(format!("no dead letter with id {id}")))
    }

    /// Open dead letters grouped by pipeline, rule, field and class, largest group first.
    pub async fn dead_letter_summary(&self, pipeline: Option<&str>) -> Result<Vec<DeadLetterGroup>, StoreError> {
        let rows: Vec<(String, String, String, String, i64, String)> = sqlx::query_as(
            "SELECT pipeline, rule, field, class, COUNT(*), MIN(message) FROM dead_letters
             WHERE status = 'open' AND ($1 IS NULL OR pipeline = $1)
             GROUP BY pipeline, rule, field, class ORDER BY COUNT(*) DESC, pipeline, rule, field",
        )
        .bind(pipeline)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(pipeline, rule, field, class, count, example)| DeadLetterGroup { pipeline, rule, field, class, count, example })
            .collect())
    }

    /// Open dead letters of one pipeline, counted up to `cap` (a count that reaches it means
    /// "at least"): one index range however many there are.
    pub async fn open_dead_letters_up_to(&self, pipeline: &str, cap: i64) -> Result<i64, StoreError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM (SELECT 1 FROM dead_letters WHERE pipeline = $1 AND status = 'open' LIMIT $2) AS capped")
                .bind(pipeline)
                .bind(cap)
                .fetch_one(&self.pool)
                .await?;
        Ok(count)
    }

    /// Open dead letters per pipeline.
    pub async fn open_dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT pipeline, COUNT(*) FROM dead_letters WHERE status = 'open' GROUP BY pipeline ORDER BY pipeline")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Marks open dead letters `ignored`; returns how many changed. Their rows stay as history.
    pub async fn ignore_dead_letters(&self, ids: &[i64]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE dead_letters SET status = 'ignored', closed_at = $1 WHERE status = 'open' AND id IN ({})",
            placeholders(2, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now());
        for id in ids {
            query = query.bind(*id);
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }
}
