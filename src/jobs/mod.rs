//! The durable job queue: every side effect a module wants done after its write (an email, a
//! notification, a clip to cut, an event's subscribers) is a row of `jobs`, inserted with
//! [`enqueue`] in the same transaction as the write that causes it, so a rolled-back write never
//! runs one and a committed one always does, at least once (handlers are idempotent).
//!
//! Workers claim due jobs with a lease (`locked_by`, `locked_until`), never by holding a
//! transaction open while a job runs; a node that dies mid-job loses its lease and another node
//! runs the job again. A failed try is retried with exponential backoff; past `max_attempts` the
//! job is dead (kept, counted in `aether_jobs{state="dead"}`, for the admin panel). Job kinds
//! are declared by their modules ([`Kind`]) and listed once in `crate::modules::KINDS`.

mod runner;
mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use tokio::sync::Notify;

pub use runner::{run, run_pending};

use crate::app::AppState;
use crate::db::{Db, now_ms};

/// The queues, each with its own workers, so that slow work (cutting a clip) never holds up
/// quick work (a notification), and email goes out at a bounded rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Default,
    Clips,
    Email,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Default, Queue::Clips, Queue::Email];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Default => "default",
            Queue::Clips => "clips",
            Queue::Email => "email",
        }
    }
}

/// A job handler's future.
pub type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), JobError>> + Send>>;

/// A kind of job: its name (stored in the row: a contract), its queue, its tries and its handler.
pub struct Kind {
    pub name: &'static str,
    pub queue: Queue,
    pub max_attempts: i64,
    pub run: fn(AppState, ClaimedJob) -> JobFuture,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another try later (a service did not answer).
    #[error("{0}")]
    Retry(String),
    /// Will not get better: the job is dead at once.
    #[error("{0}")]
    Fail(String),
}

impl From<sqlx::Error> for JobError {
    fn from(error: sqlx::Error) -> Self {
        JobError::Retry(format!("database: {error}"))
    }
}

impl From<serde_json::Error> for JobError {
    fn from(error: serde_json::Error) -> Self {
        JobError::Fail(format!("payload: {error}"))
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    queue: &'static str,
    kind: &'static str,
    payload: String,
    dedup_key: Option<String>,
    run_at: Option<i64>,
    max_attempts: i64,
}

impl NewJob {
    pub fn new(kind: &Kind, payload: &impl Serialize) -> NewJob {
        NewJob {
            queue: kind.queue.name(),
            kind: kind.name,
            payload: serde_json::to_string(payload).expect("job payloads serialize"),
            dedup_key: None,
            run_at: None,
            max_attempts: kind.max_attempts,
        }
    }

    /// At most one live (not dead) job per key: a second enqueue with the same key is a no-op.
    pub fn dedup(mut self, key: impl Into<String>) -> NewJob {
        self.dedup_key = Some(key.into());
        self
    }

    /// Tries before the job is dead (the kind's number otherwise).
    pub fn tries(mut self, max_attempts: i64) -> NewJob {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Not before `at_ms` (unix ms).
    pub fn at(mut self, at_ms: i64) -> NewJob {
        self.run_at = Some(at_ms);
        self
    }
}

/// Adds `job` to the queue inside the caller's transaction; false when a live job has its dedup
/// key already. Call [`Jobs::wake`] after the commit.
pub async fn enqueue(conn: &mut AnyConnection, job: NewJob) -> Result<bool, sqlx::Error> {
    store::insert(conn, &job, now_ms()).await
}

/// A leased job, as its handler gets it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    /// This try's number, from 1.
    pub attempts: i64,
    pub max_attempts: i64,
}

impl ClaimedJob {
    pub fn payload<T: for<'de> Deserialize<'de>>(&self) -> Result<T, JobError> {
        Ok(serde_json::from_str(&self.payload)?)
    }

    /// This is the last try: a handler that keeps its own state (a clip row) records the failure.
    pub fn is_last_try(&self) -> bool {
        self.attempts >= self.max_attempts
    }
}

/// A job row as stored (tests, the admin panel).
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub dedup_key: Option<String>,
    pub run_at: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub dead_at: Option<i64>,
}

/// Tuning of the queue (`[jobs]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Run jobs in this process (a node may leave them to others).
    pub run: bool,
    /// Jobs of the default queue run at once; the clips queue has `clips.workers`, email
    /// `email.workers`.
    pub workers: usize,
    /// How long a claim holds before another node may take the job (renewed while it runs).
    pub lease_seconds: u64,
    /// Look for due jobs at least this often (a commit on this node wakes the runner at once).
    pub poll_ms: u64,
    /// The first retry waits this long, each next one twice as long, up to `max_retry_seconds`.
    pub retry_base_ms: u64,
    pub max_retry_seconds: u64,
}

impl JobsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 || self.lease_seconds < 2 || self.poll_ms == 0 || self.retry_base_ms == 0 {
            return Err(
                "jobs.workers, jobs.poll_ms and jobs.retry_base_ms must be at least 1, jobs.lease_seconds 2".into()
            );
        }
        Ok(())
    }

    /// When a job that failed its `attempts`-th try is due again: base x 2^(attempts-1), capped,
    /// plus up to a quarter of jitter so that a burst of failures does not retry in lockstep.
    pub fn retry_delay(&self, attempts: i64) -> Duration {
        let exponent = attempts.clamp(1, 30) as u32 - 1;
        let base = self.retry_base_ms.saturating_mul(1u64 << exponent).min(self.max_retry_seconds * 1000);
        let jitter = rand::random_range(0..=base / 4);
        Duration::from_millis(base + jitter)
    }
}

/// This node's handle on the queue: its name in leases, and the bell that wakes its runner.
#[derive(Clone)]
pub struct Jobs {
    node: Arc<str>,
    bell: Arc<Notify>,
}

impl Default for Jobs {
    fn default() -> Self {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        let node = format!("{host}:{}:{:08x}", std::process::id(), rand::random::<u32>());
        Jobs { node: node.into(), bell: Arc::new(Notify::new()) }
    }
}

impl Jobs {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Tells this node's runner that jobs were committed.
    pub fn wake(&self) {
        self.bell.notify_waiters();
        self.bell.notify_one();
    }
}

/// Lease and finish primitives, public for the queue's own tests and for tools; modules use
/// [`enqueue`] and their handlers.
pub mod lease {
    use super::*;

    pub async fn claim(
        db: &Db,
        queue: Queue,
        node: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let now = now_ms();
        store::claim(db, queue.name(), node, now, now + lease.as_millis() as i64, limit).await
    }

    pub async fn complete(db: &Db, id: i64, node: &str) -> Result<bool, sqlx::Error> {
        store::complete(db, id, node).await
    }

    /// Records a failed try: retried after `delay`, or dead when `job` used its last try.
    pub async fn fail(
        db: &Db,
        job: &ClaimedJob,
        node: &str,
        error: &str,
        delay: Duration,
        dead: bool,
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        store::fail(db, job.id, node, error, now + delay.as_millis() as i64, dead.then_some(now)).await
    }

    pub async fn find(db: &Db, id: i64) -> Result<Option<JobRow>, sqlx::Error> {
        store::find(db, id).await
    }

    pub async fn ids_of_kind(db: &Db, kind: &str) -> Result<Vec<i64>, sqlx::Error> {
        store::ids_of_kind(db, kind).await
    }
}
