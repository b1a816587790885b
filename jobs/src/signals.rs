//! Wakes idle workers the moment a job is pushed.
//!
//! apalis-redis publishes `tasks:{namespace}:active:available` on every push. One pub/sub
//! connection per process listens and wakes the worker of that queue; workers also poll on
//! an interval, so a lost connection only costs latency. After a reconnect every worker is
//! woken once, for what was pushed while the listener was away.

use futures::{Stream, StreamExt, task::AtomicWaker};
use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use storage::redis_target::RedisTarget;

/// A stream that yields once after each signal (coalescing signals that arrive meanwhile).
#[derive(Debug, Clone, Default)]
pub struct Wakeup(Arc<WakeupInner>);

#[derive(Debug, Default)]
struct WakeupInner {
    waker: AtomicWaker,
    set: AtomicBool,
}

impl Wakeup {
    pub fn signal(&self) {
        self.0.set.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl Stream for Wakeup {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let inner = &self.0;
        if inner.set.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Some(()));
        }
        inner.waker.register(cx.waker());
        if inner.set.swap(false, Ordering::AcqRel) {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// Listens for pushes until the process ends, reconnecting after errors.
pub fn spawn_listener(
    redis_url: String,
    wakeups: HashMap<String, Wakeup>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match listen(&redis_url, &wakeups).await {
                Ok(()) => tracing::warn!("push notifications ended; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, "push notifications unavailable; workers poll meanwhile")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    })
}

async fn listen(redis_url: &str, wakeups: &HashMap<String, Wakeup>) -> redis::RedisResult<()> {
    let mut pubsub = RedisTarget::parse(redis_url)?.subscribe().await?;
    pubsub.psubscribe("tasks:*:available").await?;
    for wakeup in wakeups.values() {
        wakeup.signal();
    }
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let channel = message.get_channel_name();
        let namespace = channel
            .strip_prefix("tasks:")
            .and_then(|rest| rest.strip_suffix(":active:available"));
        if let Some(wakeup) = namespace.and_then(|ns| wakeups.get(ns)) {
            wakeup.signal();
        }
    }
    Ok(())
}
