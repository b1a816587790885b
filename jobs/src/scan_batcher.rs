//! Gathers the `qr_scan` jobs of one worker process into batches (group commit): scans it
//! holds at the same moment are processed together, so a burst costs a few commits rather
//! than one per scan. Alone, a scan is a batch of one and waits for nothing. Each job still
//! succeeds or fails on its own: a batch that fails is run again scan by scan.
//!
//! What a batch does is the `qr_scan` handler's (`handlers::scan`), which passes it in: `Env`
//! owns the batcher, and a batcher that named the handler would tie `Env` to the handlers.

use crate::queue::JobError;
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// At most this many scans in one transaction.
const MAX_BATCH: usize = 64;
/// Batches in flight at once per worker process: one gathers while another commits.
const RUNNERS: usize = 2;

type Reply = oneshot::Sender<Result<(), JobError>>;
type Waiting = Arc<Mutex<mpsc::UnboundedReceiver<(Uuid, Reply)>>>;

/// The scans of one worker process waiting for a batch (see the module's comment).
#[derive(Default)]
pub struct ScanBatcher {
    sender: OnceLock<mpsc::UnboundedSender<(Uuid, Reply)>>,
}

impl std::fmt::Debug for ScanBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScanBatcher")
    }
}

impl ScanBatcher {
    /// Processes scan `scan_id` with whichever others are waiting, and says how this one went.
    /// The first call starts the runners, which call `process_batch` with `owner` (the `Env`
    /// that holds this batcher) for every batch.
    pub async fn process<O, F, Fut>(
        &self,
        owner: &Arc<O>,
        scan_id: Uuid,
        process_batch: F,
    ) -> Result<(), JobError>
    where
        O: Send + Sync + 'static,
        F: Fn(Arc<O>, Vec<Uuid>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..RUNNERS {
                // A weak handle: the runners end with the environment that owns them.
                tokio::spawn(run_batches(
                    Arc::downgrade(owner),
                    receiver.clone(),
                    process_batch.clone(),
                ));
            }
            sender
        });
        let (reply, outcome) = oneshot::channel();
        if sender.send((scan_id, reply)).is_err() {
            return Err(JobError::Retry(anyhow::anyhow!(
                "the scan batcher has stopped"
            )));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(JobError::Retry(anyhow::anyhow!(
                "the scan batcher has stopped"
            )))
        })
    }
}

async fn run_batches<O, F, Fut>(owner: Weak<O>, receiver: Waiting, process_batch: F)
where
    F: Fn(Arc<O>, Vec<Uuid>) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let Some(owner) = owner.upgrade() else {
            return;
        };
        let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
        match process_batch(owner.clone(), ids).await {
            Ok(()) => {
                for (_, reply) in batch {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                let (_, reply) = batch.into_iter().next().expect("one scan");
                let _ = reply.send(Err(e));
            }
            Err(e) => {
                // One scan's trouble must not hold the others back: each goes alone.
                tracing::warn!(error = %e, scans = batch.len(), "scan batch failed; running its scans one by one");
                for (id, reply) in batch {
                    let _ = reply.send(process_batch(owner.clone(), vec![id]).await);
                }
            }
        }
    }
}
