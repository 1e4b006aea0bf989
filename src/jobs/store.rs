//! Every SQL statement on the `jobs` table. One text for both backends but the claim, which
//! takes `FOR UPDATE SKIP LOCKED` on PostgreSQL (several nodes claim at once without waiting on
//! each other's rows); on SQLite the `UPDATE ... RETURNING` holds the one write lock, so two
//! claimers serialize.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{ClaimedJob, NewJob};
use crate::db::{Backend, Db};

macro_rules! claim_sql {
    () => {
        "UPDATE jobs SET locked_by = $1, locked_until = $2, attempts = attempts + 1 WHERE id IN (\
         SELECT id FROM jobs WHERE queue = $3 AND dead_at IS NULL AND run_at <= $4 \
         AND (locked_until IS NULL OR locked_until < $4) ORDER BY run_at, id LIMIT $5"
    };
}

macro_rules! claimed_columns {
    () => {
        "id, kind, payload, attempts, max_attempts"
    };
}

pub(super) async fn insert(conn: &mut AnyConnection, job: &NewJob, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO jobs (queue, kind, payload, dedup_key, run_at, max_attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) WHERE dead_at IS NULL DO NOTHING",
    )
    .bind(job.queue)
    .bind(job.kind)
    .bind(&job.payload)
    .bind(job.dedup_key.as_deref())
    .bind(job.run_at.unwrap_or(now))
    .bind(job.max_attempts)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Leases up to `limit` due jobs of `queue` to `node` until `until`.
pub(super) async fn claim(
    db: &Db,
    queue: &str,
    node: &str,
    now: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let sql = match db.backend() {
        Backend::Postgres => concat!(claim_sql!(), " FOR UPDATE SKIP LOCKED) RETURNING ", claimed_columns!()),
        Backend::Sqlite => concat!(claim_sql!(), ") RETURNING ", claimed_columns!()),
    };
    let rows = sqlx::query(sql).bind(node).bind(until).bind(queue).bind(now).bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(claimed_from_row).collect()
}

fn claimed_from_row(row: &AnyRow) -> Result<ClaimedJob, sqlx::Error> {
    Ok(ClaimedJob {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
    })
}

/// Extends a lease; false when `node` no longer holds it.
pub(super) async fn heartbeat(db: &Db, id: i64, node: &str, until: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE jobs SET locked_until = $3 WHERE id = $1 AND locked_by = $2")
        .bind(id)
        .bind(node)
        .bind(until)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a finished job; false when the lease had passed to another node (fenced).
pub(super) async fn complete(db: &Db, id: i64, node: &str) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2").bind(id).bind(node).execute(db.pool()).await?;
    Ok(done.rows_affected() == 1)
}

/// Releases a failed try: due again at `retry_at`, or dead at `now` when it has used its tries
/// (`dead`).
pub(super) async fn fail(
    db: &Db,
    id: i64,
    node: &str,
    error: &str,
    retry_at: i64,
    dead: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET locked_by = NULL, locked_until = NULL, run_at = $3, last_error = $4, dead_at = $5 \
         WHERE id = $1 AND locked_by = $2",
    )
    .bind(id)
    .bind(node)
    .bind(retry_at)
    .bind(error)
    .bind(dead)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives back a job that was stopped before it ended (shutdown): due now, the try not counted.
pub(super) async fn release(db: &Db, id: i64, node: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET locked_by = NULL, locked_until = NULL, attempts = attempts - 1 \
         WHERE id = $1 AND locked_by = $2",
    )
    .bind(id)
    .bind(node)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// (queue, waiting, running, dead) for the metrics.
pub(super) async fn counts(db: &Db, now: i64) -> Result<Vec<(String, i64, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT queue, \
         SUM(CASE WHEN dead_at IS NULL AND (locked_until IS NULL OR locked_until < $1) THEN 1 ELSE 0 END) AS waiting, \
         SUM(CASE WHEN dead_at IS NULL AND locked_until >= $1 THEN 1 ELSE 0 END) AS running, \
         SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END) AS dead FROM jobs GROUP BY queue",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("queue")?, row.try_get("waiting")?, row.try_get("running")?, row.try_get("dead")?)))
        .collect()
}

/// What the queue holds about one job, for tests and the admin panel.
pub(super) async fn find(db: &Db, id: i64) -> Result<Option<super::JobRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, queue, kind, payload, dedup_key, run_at, attempts, max_attempts, locked_by, last_error, dead_at \
         FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok(super::JobRow {
            id: row.try_get("id")?,
            queue: row.try_get("queue")?,
            kind: row.try_get("kind")?,
            payload: row.try_get("payload")?,
            dedup_key: row.try_get("dedup_key")?,
            run_at: row.try_get("run_at")?,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            locked_by: row.try_get("locked_by")?,
            last_error: row.try_get("last_error")?,
            dead_at: row.try_get("dead_at")?,
        })
    })
    .transpose()
}

/// Ids of the jobs of `kind`, oldest first (tests, admin).
pub(super) async fn ids_of_kind(db: &Db, kind: &str) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query("SELECT id FROM jobs WHERE kind = $1 ORDER BY id").bind(kind).fetch_all(db.pool()).await?;
    rows.iter().map(|row| row.try_get("id")).collect()
}
