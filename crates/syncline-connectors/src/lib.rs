//! Connectors. Each lives in its own folder with the same file set (config, wire/dialect code,
//! source, sink); a fixed set of connectors is a closed enum dispatched by `match`, not a plugin
//! registry.

mod http;
pub mod hubspot;
pub mod manychat;
pub mod sql;

use syncline_core::{ConnectorError, Outcome, Record, Sink};

/// Any configured sink.
pub enum AnySink {
    Sql(sql::SqlSink),
    HubSpot(hubspot::HubSpotSink),
}

impl AnySink {
    /// The identity of what this sink writes to, for keying cursors and fingerprints: a
    /// database without credentials and the table, or a HubSpot portal and object.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        match self {
            AnySink::Sql(sink) => Ok(sink.identity()),
            AnySink::HubSpot(sink) => sink.identity().await,
        }
    }
}

impl Sink for AnySink {
    async fn write(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, ConnectorError> {
        match self {
            AnySink::Sql(sink) => sink.write(batch).await,
            AnySink::HubSpot(sink) => sink.write(batch).await,
        }
    }

    fn retries_itself(&self) -> bool {
        match self {
            AnySink::Sql(sink) => sink.retries_itself(),
            AnySink::HubSpot(sink) => sink.retries_itself(),
        }
    }

    async fn current(&mut self, batch: &[Record]) -> Result<Option<Vec<Record>>, ConnectorError> {
        match self {
            AnySink::Sql(sink) => sink.current(batch).await,
            AnySink::HubSpot(sink) => sink.current(batch).await,
        }
    }
}
