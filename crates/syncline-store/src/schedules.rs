//! Where each scheduled pipeline stands: the latest slot of its schedule that ran (or was passed
//! over), and the run that slot started. Slots are UTC times in one text format, so they
//! compare as text.

use crate::{Store, StoreError, format_time};

/// A scheduled pipeline's latest slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub pipeline: String,
    pub slot: chrono::DateTime<chrono::Utc>,
    /// The run the slot started; None for a slot passed over (the schedule's first sight).
    pub run_id: Option<String>,
}

impl Store {
    /// `pipeline`'s latest slot, if its schedule was ever seen.
    pub async fn schedule(&self, pipeline: &str) -> Result<Option<ScheduleRow>, StoreError> {
        let row: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT pipeline, slot, run_id FROM schedules WHERE pipeline = $1")
                .bind(pipeline)
                .fetch_optional(&self.pool)
                .await?;
        row.map(schedule_row).transpose()
    }

    /// Every scheduled pipeline's latest slot, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT pipeline, slot, run_id FROM schedules ORDER BY pipeline").fetch_all(&self.pool).await?;
        rows.into_iter().map(schedule_row).collect()
    }

    /// Records that `slot` ran as `run_id` (or was passed over); a slot never moves back.
    pub async fn mark_schedule(&self, pipeline: &str, slot: chrono::DateTime<chrono::Utc>, run_id: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO schedules (pipeline, slot, run_id) VALUES ($1, $2, $3) \
             ON CONFLICT (pipeline) DO UPDATE SET slot = excluded.slot, run_id = excluded.run_id WHERE schedules.slot < excluded.slot",
        )
        .bind(pipeline)
        .bind(format_time(slot))
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn schedule_row((pipeline, slot, run_id): (String, String, Option<String>)) -> Result<ScheduleRow, StoreError> {
    let slot = chrono::DateTime::parse_from_rfc3339(&slot)
        .map_err(|e| StoreError::Corrupt(format!("schedule of {pipeline}: slot {slot:?}: {e}")))?
        .with_timezone(&chrono::Utc);
    Ok(ScheduleRow { pipeline, slot, run_id })
}
