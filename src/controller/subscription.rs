//! A watch's changes, fanned out to the controllers' triggers.
//!
//! kube-runtime's shared reflector hands its subscribers references and looks each up in the
//! store only when the subscriber is polled. A reference whose object was deleted meanwhile
//! makes `ReflectHandle::poll_next` (kube-runtime 5.0) return `Pending` with no waker set, and
//! every change queued behind it waits until something else wakes the controller. A Task
//! whose predecessor's pod had just been deleted never saw its own pod become Ready, and
//! hung. Here subscribers are sent the cached objects themselves, so nothing can go missing
//! between the send and the poll.

use std::sync::Arc;

use async_broadcast::{InactiveReceiver, Sender};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

/// The objects a watch applied (and all of them after each full list), in order; a clone
/// sees what is sent after it was made. The watch waits for the slowest subscriber once
/// `buffer` changes are unread, as kube-runtime's shared stores do.
pub type Subscription<K> = async_broadcast::Receiver<Arc<K>>;

/// A fan-out of `buffer` changes and its first subscription.
pub fn channel<K>(buffer: usize) -> (Publisher<K>, Subscription<K>) {
    let (mut sender, subscription) = async_broadcast::broadcast(buffer);
    // Changes go out whether or not a controller has started reading.
    sender.set_await_active(false);
    let publisher = Publisher {
        sender,
        // Keeps the channel open while no subscription exists, without holding changes.
        _open: subscription.clone().deactivate(),
    };
    (publisher, subscription)
}

/// The sending side of [`channel`].
pub struct Publisher<K> {
    sender: Sender<Arc<K>>,
    _open: InactiveReceiver<Arc<K>>,
}

impl<K> Publisher<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    /// Applies each of `events` to `writer`'s store, then sends what it touched: the object
    /// of an `Apply` as the store now holds it, and every object once a full list is in.
    /// Deletions are not sent (the object is no longer cached; as with kube-runtime's).
    pub async fn run(
        mut self,
        events: impl Stream<Item = watcher::Event<K>>,
        mut writer: Writer<K>,
    ) {
        let store = writer.as_reader();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            writer.apply_watcher_event(&event);
            match &event {
                watcher::Event::Apply(object) => {
                    if let Some(cached) = store.get(&ObjectRef::from_obj(object)) {
                        self.send(cached).await;
                    }
                }
                watcher::Event::InitDone => {
                    for cached in store.state() {
                        self.send(cached).await;
                    }
                }
                watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitApply(_) => {
                }
            }
        }
    }

    async fn send(&mut self, object: Arc<K>) {
        // An error means every subscription is gone: the controllers stopped.
        let _ = self.sender.broadcast_direct(object).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;

    fn pod(name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some("ns".into());
        pod
    }

    fn names(objects: &[Arc<Pod>]) -> Vec<String> {
        objects.iter().map(|p| p.name_any()).collect()
    }

    /// The case that stalled kube-runtime's subscribers: a change to an object deleted before
    /// the subscriber read it, followed by changes to others.
    #[tokio::test]
    async fn a_change_to_an_object_deleted_since_does_not_hold_back_the_next() {
        let (publisher, subscription) = channel(16);
        let writer = Writer::<Pod>::default();
        let store = writer.as_reader();
        let events = stream::iter([
            watcher::Event::Init,
            watcher::Event::InitApply(pod("listed")),
            watcher::Event::InitDone,
            watcher::Event::Apply(pod("old-task-pod")),
            watcher::Event::Delete(pod("old-task-pod")),
            watcher::Event::Apply(pod("new-task-pod")),
        ]);
        publisher.run(events, writer).await;
        let seen: Vec<Arc<Pod>> = subscription.collect().await;
        assert_eq!(names(&seen), ["listed", "old-task-pod", "new-task-pod"]);
        assert_eq!(
            names(&store.state()).len(),
            2,
            "the store dropped the deleted pod"
        );
    }

    #[tokio::test]
    async fn a_subscription_cloned_later_sees_what_follows() {
        let (publisher, first) = channel::<Pod>(16);
        let second = first.clone();
        let writer = Writer::<Pod>::default();
        let events = stream::iter([watcher::Event::Apply(pod("a"))]);
        publisher.run(events, writer).await;
        let (first, second): (Vec<_>, Vec<_>) = futures::join!(first.collect(), second.collect());
        assert_eq!(
            (names(&first), names(&second)),
            (vec!["a".to_string()], vec!["a".to_string()])
        );
    }
}
