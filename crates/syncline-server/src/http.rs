//! Serving HTTP with the limits a public endpoint needs, so one slow or greedy client cannot
//! hold the server: time to send the request line and headers (which is also how long a kept-
//! alive connection may idle before its next request), time to send a body (per chunk and in
//! all, enforced where the body is read), and connections per client address and in all. Past a
//! limit a client gets 408 or 503, or its connection is closed; it never hangs.
//!
//! hyper does the HTTP; this is the accept loop around it, because `axum::serve` has no header
//! timeout and no connection caps.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Limits on what one client may hold. The defaults suit HubSpot (at most 10 deliveries in
/// flight per app) and Stripe, with room for several apps and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// To send the request line and headers; also the longest a kept-alive connection idles.
    pub header_timeout: Duration,
    /// Between two chunks of a body.
    pub body_chunk_timeout: Duration,
    /// To send a whole body.
    pub body_timeout: Duration,
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_chunk_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_client: 64,
        }
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { clients: self.clone(), ip })
    }
}

/// One connection of a client; leaving frees its place.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets requests in progress finish, and returns once every connection has closed.
pub async fn serve(listener: TcpListener, router: Router, limits: HttpLimits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Arc::new(PerClient::default());
    let (stop, stopping) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // out of file descriptors and the like: wait a moment rather than spin
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = total.clone().try_acquire_owned().ok();
        let slot = clients.enter(peer.ip(), limits.max_connections_per_client);
        let (Some(permit), Some(slot)) = (permit, slot) else {
            tracing::warn!(client = %peer, "too many connections; answered 503");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let (_permit, _slot) = (permit, slot);
            tokio::pin!(connection);
            let stopped = tokio::select! {
                result = connection.as_mut() => {
                    finished(result);
                    false
                }
                changed = stopping.wait_for(|stop| *stop) => changed.is_ok(),
            };
            if stopped {
                // the request in progress is answered; the connection then closes
                connection.as_mut().graceful_shutdown();
                finished(connection.await);
            }
        });
    }
    let _ = stop.send(true);
    // every connection holds a permit: all of them back means all closed
    let _ = total.acquire_many(limits.max_connections as u32).await;
    Ok(())
}

fn finished(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // a client that was too slow, or went away: its business, not a server fault
        tracing::debug!(error = %e, "connection closed");
    }
}

/// A connection over the caps: told 503 and closed, without reading its request.
async fn refuse(mut stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(ANSWER)).await;
    let _ = stream.shutdown().await;
}
