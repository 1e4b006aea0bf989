//! The runner: one claimer per queue leases as many due jobs as it has free workers and runs
//! each on its own task, renewing the lease while it runs. It wakes on this node's commits
//! ([`super::Jobs::wake`]), when a worker frees up, and every `jobs.poll_ms` for what other nodes
//! committed. At shutdown it stops claiming and gives back the jobs it had started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ClaimedJob, JobError, Queue, lease, store};
use crate::app::AppState;
use crate::db::now_ms;

/// How often the queue's gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// Runs this node's share of the queue until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    if !state.config().jobs.run {
        tracing::info!("jobs are left to other nodes (jobs.run = false)");
        return;
    }
    let tracker = TaskTracker::new();
    for queue in Queue::ALL {
        let workers = match queue {
            Queue::Default => state.config().jobs.workers,
            Queue::Clips => state.config().clips.workers,
            Queue::Email => state.config().email.workers,
        };
        tracker.spawn(claimer(state.clone(), queue, workers, stop.clone()));
    }
    tracker.spawn(gauges(state.clone(), stop.clone()));
    tracker.close();
    tracker.wait().await;
}

async fn claimer(state: AppState, queue: Queue, workers: usize, stop: CancellationToken) {
    let config = &state.config().jobs;
    let (lease, poll) = (Duration::from_secs(config.lease_seconds), Duration::from_millis(config.poll_ms));
    let slots = Arc::new(Semaphore::new(workers));
    let running = TaskTracker::new();
    let node = state.jobs().node().to_owned();
    while !stop.is_cancelled() {
        // Listen before looking, so that a commit between the two is not missed.
        let bell = state.jobs().bell.clone();
        let rung = bell.notified();
        let free = slots.available_permits();
        if free > 0 {
            match lease::claim(state.db(), queue, &node, lease, free as i64).await {
                Ok(jobs) => {
                    let full = jobs.len() == free;
                    for job in jobs {
                        let permit = slots.clone().try_acquire_owned().expect("claimed no more than the free slots");
                        running.spawn(execute(state.clone(), job, permit, stop.clone()));
                    }
                    if full {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(queue = queue.name(), %error, "claiming jobs failed"),
            }
        }
        let slot_freed = async {
            if free == 0 {
                let _ = slots.acquire().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = rung => {}
            _ = slot_freed => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stop.cancelled() => {}
        }
    }
    running.close();
    running.wait().await;
}

/// Runs one leased job to its end, or gives it back at shutdown.
async fn execute(state: AppState, job: ClaimedJob, _slot: OwnedSemaphorePermit, stop: CancellationToken) {
    let node = state.jobs().node().to_owned();
    let lease = Duration::from_secs(state.config().jobs.lease_seconds);
    let heartbeats = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            match store::heartbeat(state.db(), job.id, &node, now_ms() + lease.as_millis() as i64).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => tracing::warn!(job = job.id, %error, "renewing a job's lease failed"),
            }
        }
    };
    tokio::select! {
        _ = run_to_end(&state, &job) => {}
        _ = heartbeats => {
            // Another node holds it now (this one stalled past its lease): it runs the job.
            tracing::warn!(job = job.id, kind = %job.kind, "lost a job's lease; left to its new holder");
        }
        _ = stop.cancelled() => {
            if let Err(error) = store::release(state.db(), job.id, &node).await {
                tracing::warn!(job = job.id, %error, "giving a job back at shutdown failed; its lease will expire");
            }
        }
    }
}

/// Runs `job`'s handler and records the outcome.
async fn run_to_end(state: &AppState, job: &ClaimedJob) {
    let node = state.jobs().node();
    let started = Instant::now();
    let result = match crate::modules::job_kind(&job.kind) {
        Some(kind) => (kind.run)(state.clone(), job.clone()).await,
        None => Err(JobError::Fail(format!("no handler for job kind {}", job.kind))),
    };
    let kind = job.kind.clone();
    let (recorded, outcome) = match &result {
        Ok(()) => {
            metrics::histogram!("aether_job_seconds", "kind" => kind.clone()).record(started.elapsed().as_secs_f64());
            (lease::complete(state.db(), job.id, node).await, "done")
        }
        Err(error) => {
            let dead = matches!(error, JobError::Fail(_)) || job.is_last_try();
            let delay = state.config().jobs.retry_delay(job.attempts);
            if dead {
                tracing::error!(job = job.id, kind = %job.kind, attempts = job.attempts, %error, "job failed for good");
            } else {
                tracing::warn!(job = job.id, kind = %job.kind, attempts = job.attempts, %error,
                    retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
            }
            let recorded = lease::fail(state.db(), job, node, &error.to_string(), delay, dead).await;
            (recorded, if dead { "dead" } else { "retry" })
        }
    };
    metrics::counter!("aether_jobs_total", "kind" => kind, "outcome" => outcome).increment(1);
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(job = job.id, "a job ended after its lease passed to another node"),
        Err(error) => tracing::error!(job = job.id, %error, "cannot record a job's outcome; it will run again"),
    }
}

/// Runs every due job of every queue here and now, one at a time, until none is left; returns
/// how many ran. For tests: no lease outlives the call.
pub async fn run_pending(state: &AppState) -> usize {
    let lease = Duration::from_secs(state.config().jobs.lease_seconds);
    let mut ran = 0;
    loop {
        let mut claimed = 0;
        for queue in Queue::ALL {
            let jobs = match lease::claim(state.db(), queue, state.jobs().node(), lease, 50).await {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::warn!(%error, "claiming jobs failed");
                    return ran;
                }
            };
            claimed += jobs.len();
            for job in jobs {
                run_to_end(state, &job).await;
                ran += 1;
            }
        }
        if claimed == 0 {
            return ran;
        }
    }
}

async fn gauges(state: AppState, stop: CancellationToken) {
    let mut every = tokio::time::interval(GAUGES_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        match store::counts(state.db(), now_ms()).await {
            Ok(counts) => {
                for (queue, waiting, running, dead) in counts {
                    for (kind, value) in [("waiting", waiting), ("running", running), ("dead", dead)] {
                        metrics::gauge!("aether_jobs", "queue" => queue.clone(), "state" => kind).set(value as f64);
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "counting jobs failed"),
        }
    }
}
