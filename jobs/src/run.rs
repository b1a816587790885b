//! What a job does when a worker runs it: the `RunJob` trait every job type implements, and the
//! `JobCtx` it runs with. It stands above `Env`, which the queues below know nothing of.

use crate::{
    env::Env,
    queue::{Job, JobError},
};
use std::sync::Arc;
use uuid::Uuid;

/// What a running job knows about itself and the world.
#[derive(Clone)]
pub struct JobCtx {
    pub env: Arc<Env>,
    pub job_id: Uuid,
    /// 1 on the first run.
    pub attempt: usize,
}

/// A job type's work.
pub trait RunJob: Job {
    fn run(self, ctx: JobCtx) -> impl Future<Output = Result<(), JobError>> + Send;
}
