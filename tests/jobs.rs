//! The durable job queue on both databases: the outbox (a rolled-back transaction queues
//! nothing), leases (a job whose worker died runs again; a stale worker cannot finish it), no job
//! claimed twice by concurrent workers, backoff and dead letters, dedup keys, and the runner.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use aether::jobs::{self, NewJob, Queue, lease};
use support::{Backend, TestApp};

on_both_backends!(
    a_job_enqueued_in_a_rolled_back_transaction_never_runs,
    a_job_whose_worker_died_runs_again_and_the_stale_worker_is_fenced,
    concurrent_workers_never_claim_one_job_twice,
    a_failing_job_backs_off_and_is_dead_after_its_tries,
    a_dedup_key_keeps_one_live_job,
    the_runner_runs_what_a_commit_queued_and_dead_letters_unknown_kinds,
);

async fn quiet_app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |config| config.jobs.run = false).await
}

/// A real kind whose handler has nothing to do for a clip row that does not exist.
fn harmless(n: i64) -> NewJob {
    NewJob::new(&aether::clips::MAKE, &serde_json::json!({ "clip": 1_000_000 + n }))
}

async fn a_job_enqueued_in_a_rolled_back_transaction_never_runs(backend: Backend) {
    let Some(app) = quiet_app(backend).await else { return };
    let db = app.state.db();
    let mut tx = db.write().await.unwrap();
    assert!(jobs::enqueue(&mut tx, harmless(1)).await.unwrap());
    tx.rollback().await.unwrap();
    assert!(lease::ids_of_kind(db, "clips.make").await.unwrap().is_empty(), "nothing was queued");
    assert_eq!(jobs::run_pending(&app.state).await, 0);

    let mut tx = db.write().await.unwrap();
    jobs::enqueue(&mut tx, harmless(2)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(jobs::run_pending(&app.state).await, 1, "the committed job runs");
    assert!(lease::ids_of_kind(db, "clips.make").await.unwrap().is_empty(), "and is gone once done");
    app.stop().await;
}

async fn enqueue_committed(app: &TestApp, job: NewJob) {
    let mut tx = app.state.db().write().await.unwrap();
    jobs::enqueue(&mut tx, job).await.unwrap();
    tx.commit().await.unwrap();
}

async fn a_job_whose_worker_died_runs_again_and_the_stale_worker_is_fenced(backend: Backend) {
    let Some(app) = quiet_app(backend).await else { return };
    let db = app.state.db();
    enqueue_committed(&app, harmless(1)).await;
    let first = lease::claim(db, Queue::Clips, "node-a", Duration::from_millis(300), 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        lease::claim(db, Queue::Clips, "node-b", Duration::from_secs(60), 10).await.unwrap().is_empty(),
        "a leased job is not claimed again while the lease holds"
    );
    // node-a "crashes": its lease runs out and node-b takes the job over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = lease::claim(db, Queue::Clips, "node-b", Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].attempts, 2, "the lost try counts");
    assert!(!lease::complete(db, first[0].id, "node-a").await.unwrap(), "the stale worker cannot finish it");
    assert!(lease::find(db, first[0].id).await.unwrap().is_some());
    assert!(lease::complete(db, second[0].id, "node-b").await.unwrap());
    assert!(lease::find(db, first[0].id).await.unwrap().is_none());
    app.stop().await;
}

async fn concurrent_workers_never_claim_one_job_twice(backend: Backend) {
    let Some(app) = quiet_app(backend).await else { return };
    let mut tx = app.state.db().write().await.unwrap();
    for n in 0..200 {
        jobs::enqueue(&mut tx, harmless(n)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let db = app.state.db().clone();
            tokio::spawn(async move {
                let node = format!("worker-{worker}");
                let mut mine = Vec::new();
                loop {
                    let jobs = lease::claim(&db, Queue::Clips, &node, Duration::from_secs(60), 7).await.unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.into_iter().map(|job| job.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let ids = worker.await.unwrap();
        per_worker.push(ids.len());
        for id in ids {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 200, "every job claimed once: {per_worker:?}");
    app.stop().await;
}

async fn a_failing_job_backs_off_and_is_dead_after_its_tries(backend: Backend) {
    let Some(app) = quiet_app(backend).await else { return };
    let db = app.state.db();
    let config = app.state.config().jobs.clone();
    enqueue_committed(&app, harmless(1).tries(3)).await;
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let claimed = lease::claim(db, Queue::Clips, "node", Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "try {attempt} is due");
        let job = &claimed[0];
        assert_eq!(job.attempts, attempt);
        let delay = config.retry_delay(job.attempts);
        let before = aether::db::now_ms();
        lease::fail(db, job, "node", "smtp down", delay, job.is_last_try()).await.unwrap();
        let row = lease::find(db, job.id).await.unwrap().unwrap();
        assert_eq!(row.last_error.as_deref(), Some("smtp down"));
        assert!(row.locked_by.is_none());
        delays.push(row.run_at - before);
        if attempt < 3 {
            assert!(row.dead_at.is_none());
            assert!(
                lease::claim(db, Queue::Clips, "node", Duration::from_secs(60), 10).await.unwrap().is_empty(),
                "not due before its backoff"
            );
            // Make it due now instead of waiting out the backoff.
            sqlx::query("UPDATE jobs SET run_at = 0 WHERE id = $1").bind(job.id).execute(db.pool()).await.unwrap();
        } else {
            assert!(row.dead_at.is_some(), "dead after its last try");
        }
    }
    let base = config.retry_base_ms as i64;
    assert!((base..=base * 5 / 4 + 50).contains(&delays[0]), "{delays:?}");
    assert!((2 * base..=2 * base * 5 / 4 + 50).contains(&delays[1]), "doubles: {delays:?}");
    assert!(
        lease::claim(db, Queue::Clips, "node", Duration::from_secs(60), 10).await.unwrap().is_empty(),
        "dead jobs are never claimed"
    );
    app.stop().await;
}

async fn a_dedup_key_keeps_one_live_job(backend: Backend) {
    let Some(app) = quiet_app(backend).await else { return };
    let db = app.state.db();
    let mut tx = db.write().await.unwrap();
    assert!(jobs::enqueue(&mut tx, harmless(1).dedup("once")).await.unwrap());
    assert!(!jobs::enqueue(&mut tx, harmless(2).dedup("once")).await.unwrap(), "a second copy is a no-op");
    assert!(jobs::enqueue(&mut tx, harmless(3)).await.unwrap(), "no key, no dedup");
    assert!(jobs::enqueue(&mut tx, harmless(4)).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(lease::ids_of_kind(db, "clips.make").await.unwrap().len(), 3);
    // Still live while it runs; once done the key is free again.
    assert_eq!(jobs::run_pending(&app.state).await, 3);
    enqueue_committed(&app, harmless(5).dedup("once")).await;
    assert_eq!(lease::ids_of_kind(db, "clips.make").await.unwrap().len(), 1);
    app.stop().await;
}

async fn the_runner_runs_what_a_commit_queued_and_dead_letters_unknown_kinds(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let db = app.state.db();
    enqueue_committed(&app, harmless(1)).await;
    app.state.jobs().wake();
    let done = support::eventually(Duration::from_secs(5), || async {
        lease::ids_of_kind(db, "clips.make").await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(done.is_some(), "the running server ran the job");

    // A row of a kind this build does not know (an older or newer node queued it) is kept dead,
    // with the reason, and counted.
    sqlx::query(
        "INSERT INTO jobs (queue, kind, payload, run_at, created_at) VALUES ('default', 'gone.kind', '{}', 0, 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    app.state.jobs().wake();
    let id = lease::ids_of_kind(db, "gone.kind").await.unwrap()[0];
    let dead = support::eventually(Duration::from_secs(5), || async {
        lease::find(db, id).await.unwrap().filter(|row| row.dead_at.is_some())
    })
    .await
    .expect("the unknown kind is dead-lettered");
    assert!(dead.last_error.unwrap().contains("no handler"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("aether_jobs_total{kind=\"gone.kind\",outcome=\"dead\"}"), "{metrics}");
    app.stop().await;
}
