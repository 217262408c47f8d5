//! A pipeline as a flow's `pipeline` step runs it: one record at a time, by key — read again
//! from the source (so the latest state is written, in whatever order webhooks arrive), through
//! the transforms, to the sink — keeping the fingerprint and closing the dead letter a run
//! would, so the pipeline's next run compares with what the flow wrote.

use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use syncline_connectors::{AnySink, AnySource};
use syncline_core::runner::{BatchCommit, Counts, Scope, destination_key, fingerprint};
use syncline_core::transform::Chain;
use syncline_core::{ConnectorError, ErrorClass, Outcome, Sink, Transform};
use syncline_server::flow::RecordPipeline;
use syncline_store::Store;

use crate::config::Pipeline;
use crate::exit::CliError;
use crate::pipeline::{Portals, sink_in, sink_key, source_in, transforms};

pub struct FlowPipeline {
    source: AnySource,
    transforms: Chain,
    /// One write at a time: the sink keeps one picture of its target (the items it read, whose
    /// names are taken), which two writes at once would each see without the other's.
    sink: tokio::sync::Mutex<AnySink>,
    /// The sink's health after its last write, for while it writes.
    sink_health: std::sync::Mutex<Vec<syncline_resilience::Health>>,
    sink_key: Arc<str>,
    change_detection: bool,
    scope: Arc<Scope>,
    store: Store,
}

impl FlowPipeline {
    /// Opens the pipeline's source and sink (no call yet: a service down at start only delays
    /// the events, which wait in the inbox).
    pub async fn open(pipeline: &Pipeline, base_dir: &Path, store: &Store) -> Result<FlowPipeline, CliError> {
        let portals = Portals::with_store(store.clone());
        let source = source_in(&portals, pipeline, base_dir, None).await?;
        let sink = sink_in(&portals, pipeline, base_dir, 1).await?;
        let target = sink.identity().await.map_err(|e| CliError::connector(&e, format!("pipeline {}: sink", pipeline.name)))?;
        Ok(FlowPipeline {
            source,
            transforms: transforms(pipeline, base_dir)?,
            sink_health: std::sync::Mutex::new(sink.health()),
            sink: tokio::sync::Mutex::new(sink),
            sink_key: sink_key(pipeline),
            change_detection: pipeline.change_detection,
            // fingerprints belong to the pipeline and its target, whatever read the record
            scope: Arc::new(Scope { pipeline: pipeline.name.clone(), source: String::new(), target }),
            store: store.clone(),
        })
    }

    async fn write(&self, key: &str) -> Result<Outcome, ConnectorError> {
        let read = self.source.read_keys(&[key]).await?;
        let record =
            read.into_iter().next().ok_or_else(|| ConnectorError::new(ErrorClass::Data, format!("{key}: the source returned nothing")))?;
        let mut mapped = match self.transforms.apply(record) {
            Ok(mapped) => mapped,
            Err(why) => return Ok(Outcome::Rejected(why)),
        };
        let dest_key = match destination_key(&mapped, &self.sink_key) {
            Ok(key) => key,
            Err(why) => return Ok(Outcome::Rejected(why)),
        };
        mapped.key = dest_key.clone();
        let mut sink = self.sink.lock().await;
        let written = sink.write(std::slice::from_ref(&mapped)).await;
        *self.sink_health.lock().expect("sink health") = sink.health();
        drop(sink);
        let outcome = written?.pop().unwrap_or(Outcome::Unchanged);
        if matches!(outcome, Outcome::Created | Outcome::Updated | Outcome::Unchanged) {
            let fingerprints = if self.change_detection { vec![(dest_key, fingerprint(&mapped))] } else { Vec::new() };
            let commit = std::sync::Arc::new(BatchCommit {
                run_id: String::new(),
                scope: self.scope.clone(),
                cursor: None,
                dead_letters: Vec::new(),
                fingerprints,
                passed_keys: vec![key.to_owned()],
                passed_status: "resolved",
                counts: Counts::default(),
            });
            self.store.commit_batch(&commit).await.map_err(|e| e.into_connector_error())?;
        }
        Ok(outcome)
    }
}

impl RecordPipeline for FlowPipeline {
    fn sync<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Outcome, ConnectorError>> {
        Box::pin(self.write(key))
    }

    fn health(&self) -> Vec<syncline_resilience::Health> {
        // a sink busy writing is asked after its write
        let sink = self.sink.try_lock().map(|sink| sink.health()).ok();
        let sink = sink.unwrap_or_else(|| self.sink_health.lock().expect("sink health").clone());
        self.source.health().into_iter().chain(sink).collect()
    }
}
