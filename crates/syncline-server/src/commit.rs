//! Group commit for the intake. A durable commit costs an fsync whatever it holds; committing
//! each delivery on its own makes concurrent deliveries queue behind one another's fsyncs (the
//! p99 time to 2xx grows with the arrival rate). One task takes every delivery waiting when it
//! is free and stores them in one transaction, then answers each with its own counts, so the
//! fsyncs per second stay bounded as the rate grows. Nothing is acknowledged before its commit.

use syncline_store::{Accepted, NewEvent, Store};
use tokio::sync::{mpsc, oneshot};

/// Deliveries one commit takes at most (HubSpot sends ≤ 100 events in one).
const MAX_GROUP: usize = 64;

type Request = (Vec<NewEvent>, oneshot::Sender<Result<Accepted, String>>);

/// A handle to the committing task; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    requests: mpsc::Sender<Request>,
}

impl GroupCommit {
    /// Starts the task that commits into `store` (it ends when the last handle is dropped).
    pub fn start(store: Store) -> GroupCommit {
        let (requests, mut queue) = mpsc::channel::<Request>(4 * MAX_GROUP);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
                let deliveries: Vec<&[NewEvent]> = group.iter().map(|(events, _)| events.as_slice()).collect();
                match store.inbox_accept_many(&deliveries).await {
                    Ok(accepted) => {
                        for ((_, reply), accepted) in group.drain(..).zip(accepted) {
                            let _ = reply.send(Ok(accepted));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for (_, reply) in group.drain(..) {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        GroupCommit { requests }
    }

    /// Stores one delivery's events durably (with whatever else is waiting), or says why not.
    pub async fn accept(&self, events: Vec<NewEvent>) -> Result<Accepted, String> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((events, reply)).await.map_err(|_| "the inbox committer has stopped".to_owned())?;
        answer.await.map_err(|_| "the inbox committer has stopped".to_owned())?
    }
}
