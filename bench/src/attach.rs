//! What the apiserver's service proxy adds to a streamed answer: the time from sending a
//! prompt to its first streamed character, through the proxy (as `agent attach` talks) and
//! straight at the server pod's address, in turn, on one real Agent with the stub model.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{Stream, StreamExt as _};
use kubeoc::opencode::client::ServerProxy;
use kubeoc::opencode::events::{Event, StreamError};

use crate::report::{Goal, Row, median};

/// Milliseconds from `prompt_async` to the first text delta of the answer.
async fn first_character<S>(server: &ServerProxy, events: &mut S) -> anyhow::Result<f64>
where
    S: Stream<Item = Result<Event, StreamError>> + Unpin,
{
    let session = server.create_session("kubeoc bench").await?;
    let started = Instant::now();
    server.prompt_async(&session.id, "[[reply:ok]]").await?;
    let mut first = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("no answer within 60 s")?
            .context("the event stream ended")?
            .map_err(|e| anyhow::anyhow!("event stream: {e}"))?;
        match event {
            Event::PartDelta {
                session_id, delta, ..
            } if session_id == session.id && !delta.is_empty() => {
                first.get_or_insert(started.elapsed());
            }
            Event::SessionIdle { session_id } if session_id == session.id => break,
            Event::SessionError { session_id, error }
                if session_id.as_deref() == Some(session.id.as_str()) =>
            {
                bail!("the turn failed: {error:?}");
            }
            _ => {}
        }
    }
    server.delete_session(&session.id).await?;
    Ok(first
        .context("the answer had no streamed text")?
        .as_secs_f64()
        * 1e3)
}

/// Median first-character time through the proxy minus straight at the pod, over `samples`
/// prompts each in turn.
pub async fn run(
    proxied: &ServerProxy,
    direct: &ServerProxy,
    samples: usize,
) -> anyhow::Result<Row> {
    let mut proxied_events = Box::pin(proxied.events().await?);
    let mut direct_events = Box::pin(direct.events().await?);
    // One untimed turn each: OpenCode loads the provider on the first prompt.
    first_character(proxied, &mut proxied_events).await?;
    first_character(direct, &mut direct_events).await?;
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        through.push(first_character(proxied, &mut proxied_events).await?);
        straight.push(first_character(direct, &mut direct_events).await?);
    }
    let differences: Vec<f64> = through.iter().zip(&straight).map(|(a, b)| a - b).collect();
    let (a, b) = (median(through), median(straight));
    Ok(Row::new(
        "attach",
        samples,
        "ms",
        Goal::AtMost(10.0),
        median(differences),
        format!(
            "first streamed character through the service proxy {a:.1} ms, straight to the pod {b:.1} ms (medians of {samples} prompts each, in turn)"
        ),
    ))
}
