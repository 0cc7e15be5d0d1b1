//! Knowing when Kafka holds every message sent before a checkpoint, without a
//! future (and a task wake-up) per message.
//!
//! Messages are sent in epochs: each checkpoint closes one. The producer's
//! delivery callback, on librdkafka's polling thread, counts the epoch's
//! outstanding messages down and wakes the acknowledger only when one reaches
//! zero, or when a delivery failed. At a million events per second a future
//! per message costed more in wake-ups than the encoding itself.
//!
//! Epoch counters live in a ring. It is large enough because the publisher
//! can be at most [`MAX_CHECKPOINTS`] checkpoints ahead of the acknowledger's
//! queue, plus the batch the acknowledger is working on, plus the open epoch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tokio::sync::Notify;

use crate::publish::MAX_CHECKPOINTS;

const RING: usize = 2 * MAX_CHECKPOINTS + 4;

/// A failed delivery: the topic and librdkafka's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub topic: String,
    pub reason: String,
}

/// Outstanding messages per epoch, and the first failure.
#[derive(Debug)]
pub struct Deliveries {
    outstanding: Vec<AtomicU64>,
    failure: Mutex<Option<Failed>>,
    progress: Notify,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self {
            outstanding: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            failure: Mutex::new(None),
            progress: Notify::new(),
        }
    }
}

impl Deliveries {
    fn slot(&self, epoch: u64) -> &AtomicU64 {
        &self.outstanding[(epoch % RING as u64) as usize]
    }

    /// Counts `messages` messages of `epoch` about to be sent.
    pub fn sending(&self, epoch: u64, messages: u64) {
        self.slot(epoch).fetch_add(messages, Ordering::AcqRel);
    }

    /// Takes back [`Deliveries::sending`] for `messages` messages the
    /// producer refused.
    pub fn refused(&self, epoch: u64, messages: u64) {
        self.settled(epoch, messages);
    }

    fn delivered(&self, epoch: u64) {
        self.settled(epoch, 1);
    }

    /// `messages` of `epoch` are no longer outstanding.
    fn settled(&self, epoch: u64, messages: u64) {
        if messages > 0 && self.slot(epoch).fetch_sub(messages, Ordering::AcqRel) == messages {
            self.progress.notify_waiters();
        }
    }

    fn fail(&self, failed: Failed) {
        if let Ok(mut first) = self.failure.lock() {
            first.get_or_insert(failed);
        }
        self.progress.notify_waiters();
    }

    /// Waits until every message of `epoch` is delivered, or one failed.
    pub async fn wait(&self, epoch: u64) -> Result<(), Failed> {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if let Some(failed) = self.failure.lock().ok().and_then(|f| f.clone()) {
                return Err(failed);
            }
            if self.slot(epoch).load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            progress.await;
        }
    }
}

/// The producer's context: delivery reports go to [`Deliveries`]; the opaque
/// value of each message is its epoch.
#[derive(Debug, Clone, Default)]
pub struct Tracking(pub Arc<Deliveries>);

impl ClientContext for Tracking {}

impl ProducerContext for Tracking {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        if let Err((e, message)) = result {
            self.0.fail(Failed {
                topic: message.topic().to_owned(),
                reason: e.to_string(),
            });
        }
        self.0.delivered(epoch as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_epoch_completes_when_its_last_message_is_delivered() {
        let d = Arc::new(Deliveries::default());
        d.sending(0, 2);
        d.sending(1, 1);
        let waiter = tokio::spawn({
            let d = Arc::clone(&d);
            async move { d.wait(0).await }
        });
        d.delivered(1);
        d.delivered(0);
        assert!(!waiter.is_finished());
        d.delivered(0);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        // A ring slot is reused by a later epoch once its count is back to zero.
        assert_eq!(d.wait(RING as u64).await, Ok(()));
    }

    #[tokio::test]
    async fn refusing_the_rest_of_a_batch_leaves_what_was_queued_outstanding() {
        let d = Arc::new(Deliveries::default());
        d.sending(5, 1000);
        // The producer took 400 of them; the queue was full for the rest.
        d.refused(5, 600);
        let waiter = tokio::spawn({
            let d = Arc::clone(&d);
            async move { d.wait(5).await }
        });
        for _ in 0..399 {
            d.delivered(5);
        }
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        d.delivered(5);
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await;
        assert_eq!(done.expect("the epoch completes").unwrap(), Ok(()));
        // Refusing none changes nothing.
        d.refused(5, 0);
        assert_eq!(d.wait(5).await, Ok(()));
    }

    #[tokio::test]
    async fn a_failure_ends_every_wait() {
        let d = Deliveries::default();
        d.sending(3, 1);
        d.fail(Failed {
            topic: "t".into(),
            reason: "broker down".into(),
        });
        assert_eq!(d.wait(3).await.unwrap_err().reason, "broker down");
        assert_eq!(d.wait(4).await.unwrap_err().topic, "t");
    }
}
