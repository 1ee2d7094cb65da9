//! A server's event stream kept open: a network task reads `/event`, passes typed events on a
//! channel, and when the stream breaks or its heartbeats stop (a dead connection can stay
//! silent forever, so there is no read timeout, only the heartbeat deadline) it says so,
//! reconnects with backoff and announces the new connection, after which readers resync the
//! messages they show.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;

use super::client::{ProxyError, ServerProxy};
use super::events::{Event, StreamError};
use crate::controller::backoff::Backoff;

/// OpenCode 1.18 sends a heartbeat every 10 s: three missed ones mean the stream is dead.
pub const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(30);

/// What the feed passes on.
// Most items are events; boxing them would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    Event(Event),
    /// The stream is (again) open; `resync` is set after a break, when events may be lost.
    Connected {
        resync: bool,
    },
    /// The stream broke; the next attempt comes in `retry_in`.
    Reconnecting {
        error: String,
        retry_in: Duration,
    },
}

/// Starts the feed of `proxy`'s events; it ends when the receiver is dropped.
pub fn spawn(proxy: ServerProxy) -> mpsc::Receiver<Feed> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(run(
        move || {
            let proxy = proxy.clone();
            async move { proxy.events().await }
        },
        tx,
        HEARTBEAT_DEADLINE,
    ));
    rx
}

/// The feed's loop over any way of opening the stream (tests pass their own).
pub async fn run<C, F, S>(connect: C, tx: mpsc::Sender<Feed>, deadline: Duration)
where
    C: Fn() -> F,
    F: Future<Output = Result<S, ProxyError>>,
    S: Stream<Item = Result<Event, StreamError>>,
{
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut broke = false;
    loop {
        let error = match connect().await {
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                loop {
                    match tokio::time::timeout(deadline, stream.next()).await {
                        Err(_) => {
                            break format!(
                                "no heartbeat from the server for {}s",
                                deadline.as_secs()
                            );
                        }
                        Ok(None) => break "the server closed the event stream".to_string(),
                        Ok(Some(Err(e))) => break e.to_string(),
                        Ok(Some(Ok(Event::Connected))) => {
                            backoff.reset("events");
                            if tx.send(Feed::Connected { resync: broke }).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(Ok(event))) => {
                            if tx.send(Feed::Event(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        broke = true;
        let retry_in = backoff.next("events");
        if tx
            .send(Feed::Reconnecting { error, retry_in })
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(retry_in) => {}
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Script = Vec<Result<Vec<Result<Event, StreamError>>, ProxyError>>;

    /// A connect function that plays `script`, one entry per attempt; after the script, a
    /// stream that never yields (a silent dead connection).
    fn scripted(
        script: Script,
    ) -> impl Fn() -> futures::future::Ready<
        Result<futures::stream::BoxStream<'static, Result<Event, StreamError>>, ProxyError>,
    > {
        let script = Arc::new(std::sync::Mutex::new(script.into_iter()));
        let attempts = Arc::new(AtomicUsize::new(0));
        move || {
            attempts.fetch_add(1, Ordering::SeqCst);
            let next = script.lock().expect("script").next();
            futures::future::ready(match next {
                Some(Ok(events)) => Ok(futures::stream::iter(events)
                    .chain(futures::stream::pending())
                    .boxed()),
                Some(Err(e)) => Err(e),
                None => Ok(futures::stream::pending().boxed()),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_deadline_reconnects_and_asks_for_a_resync() {
        let (tx, mut rx) = mpsc::channel(16);
        let script: Script = vec![
            Ok(vec![Ok(Event::Connected), Ok(Event::Heartbeat)]),
            Err(ProxyError::Timeout(Duration::from_secs(10))),
            Ok(vec![Ok(Event::Connected)]),
        ];
        tokio::spawn(run(scripted(script), tx, HEARTBEAT_DEADLINE));
        let mut seen = Vec::new();
        while seen.len() < 6 {
            seen.push(rx.recv().await.expect("feed"));
        }
        assert_eq!(seen[0], Feed::Connected { resync: false });
        assert_eq!(seen[1], Feed::Event(Event::Heartbeat));
        assert!(
            matches!(&seen[2], Feed::Reconnecting { error, retry_in }
                if error.contains("no heartbeat") && *retry_in == Duration::from_millis(500)),
            "{seen:?}"
        );
        assert!(
            matches!(&seen[3], Feed::Reconnecting { retry_in, .. } if *retry_in == Duration::from_secs(1)),
            "a failed attempt doubles the wait: {seen:?}"
        );
        assert_eq!(seen[4], Feed::Connected { resync: true });
        assert!(
            matches!(&seen[5], Feed::Reconnecting { retry_in, .. } if *retry_in == Duration::from_millis(500)),
            "a connection resets the backoff: {seen:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_stream_is_reported_and_the_feed_stops_with_its_reader() {
        let (tx, mut rx) = mpsc::channel(16);
        let script: Script = vec![Ok(vec![
            Ok(Event::Connected),
            Err(StreamError("connection reset".to_string())),
        ])];
        let task = tokio::spawn(run(scripted(script), tx, HEARTBEAT_DEADLINE));
        assert_eq!(rx.recv().await, Some(Feed::Connected { resync: false }));
        assert!(
            matches!(rx.recv().await, Some(Feed::Reconnecting { error, .. }) if error.contains("connection reset"))
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the feed ends once nobody reads it")
            .expect("no panic");
    }
}
