//! The notifications module's event subscribers.
//!
//! `notifications.go_live` (on `stream.started`): every follower who wants it gets a go-live
//! notification. The followers are read in batches by user id, each batch in its own short
//! transaction that also records how far the fan-out got (`go_live_fanouts.cursor`), so that a
//! channel with 100,000 followers is never held in memory, never holds the database for long,
//! and a crash resumes where it stopped. Debounced: a broadcast that starts within
//! `notifications.go_live_cooldown_seconds` of the channel's previous one notifies nobody (a
//! reconnect within the live reconnect grace is the same broadcast and publishes nothing).
//!
//! `notifications.new_follower` (on `user.followed`): the channel's owner is told.

use serde_json::json;

use super::{NotificationKind, push, store};
use crate::app::AppState;
use crate::auth::UserId;
use crate::channels::{self, ChannelId};
use crate::db::now_ms;
use crate::events::Event;
use crate::jobs::{ClaimedJob, JobError, Kind, Queue};
use crate::modules::profiles;

/// Followers per fan-out batch (one transaction each).
const BATCH: i64 = 1000;

pub const GO_LIVE: Kind = Kind {
    name: "notifications.go_live",
    queue: Queue::Default,
    max_attempts: 12,
    run: |state, job| Box::pin(go_live(state, job)),
};

pub const MENTION: Kind = Kind {
    name: "notifications.mention",
    queue: Queue::Default,
    max_attempts: 12,
    run: |state, job| Box::pin(mention(state, job)),
};

pub const NEW_FOLLOWER: Kind = Kind {
    name: "notifications.new_follower",
    queue: Queue::Default,
    max_attempts: 12,
    run: |state, job| Box::pin(new_follower(state, job)),
};

async fn go_live(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let Event::StreamStarted { channel, session_id } = job.payload()? else {
        return Err(JobError::Fail("not a stream.started event".into()));
    };
    let Some(channel) = channels::find(state.db(), &channel).await? else { return Ok(()) };
    let cooldown_ms = state.config().notifications.go_live_cooldown_seconds as i64 * 1000;
    let mut tx = state.db().write().await?;
    let previous = store::previous_fanout(&mut tx, channel.id, session_id).await?;
    let fanout = store::open_fanout(&mut tx, channel.id, session_id, now_ms()).await?;
    tx.commit().await?;
    if fanout.done_at.is_some() {
        return Ok(());
    }
    if let Some(previous) = previous
        && fanout.started_at - previous.started_at < cooldown_ms
    {
        tracing::info!(channel = %channel.name, session_id, "went live again within the cooldown: no go-live notifications");
        let mut conn = state.db().pool().acquire().await?;
        store::finish_fanout(&mut conn, session_id, now_ms()).await?;
        return Ok(());
    }
    let data = json!({ "channel": channel.name, "title": channel.title });
    let dedup = format!("go_live:{session_id}");
    let started = std::time::Instant::now();
    let (mut cursor, mut total, mut emailed) = (fanout.cursor, 0usize, 0usize);
    loop {
        let mut tx = state.db().write().await?;
        let batch = profiles::followers_after(&mut tx, channel.id, UserId(cursor), BATCH).await?;
        let Some(last) = batch.last().map(|follow| follow.user.0) else {
            store::finish_fanout(&mut tx, session_id, now_ms()).await?;
            tx.commit().await?;
            break;
        };
        let hearers: Vec<UserId> =
            batch.iter().filter(|follow| follow.notify.hears_go_live()).map(|follow| follow.user).collect();
        let prefs = super::prefs_for(&mut tx, &hearers, NotificationKind::GoLive).await?;
        let in_app: Vec<UserId> = hearers.iter().copied().filter(|user| prefs[user].in_app).collect();
        let made = store::insert_many(&mut tx, &in_app, NotificationKind::GoLive, &data, &dedup, now_ms()).await?;
        let by_email: Vec<UserId> = hearers.iter().copied().filter(|user| prefs[user].email).collect();
        emailed += queue_go_live_emails(&state, &mut tx, &channel, session_id, &by_email).await?;
        let skipped = (batch.len() - made.len()) as i64;
        store::advance_fanout(&mut tx, session_id, last, made.len() as i64, skipped).await?;
        tx.commit().await?;
        state.jobs().wake();
        total += made.len();
        push(&state, &made);
        cursor = last;
    }
    metrics::counter!("aether_notifications_total", "kind" => "go_live").increment(total as u64);
    tracing::info!(channel = %channel.name, session_id, notified = total, emailed,
        took_ms = started.elapsed().as_millis() as u64, "go-live notifications sent");
    Ok(())
}

/// Queues a go-live email for each of `users` with a verified address (bulk mail goes only to
/// proven addresses); with email off, only counts them. Returns how many.
async fn queue_go_live_emails(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    channel: &channels::Channel,
    session_id: i64,
    users: &[UserId],
) -> Result<usize, JobError> {
    if users.is_empty() {
        return Ok(0);
    }
    if !state.config().email.enabled {
        tracing::debug!(channel = %channel.name, users = users.len(), "go-live emails not sent (email.enabled = false)");
        return Ok(0);
    }
    let base = state.public_url();
    let (watch, settings) = (format!("{base}/{}", channel.name), format!("{base}/settings/notifications"));
    let mut queued = 0;
    for user in crate::auth::accounts::find_by_ids(state.db(), users).await? {
        if user.email_verified_at.is_none() {
            continue;
        }
        let email =
            crate::email::go_live(&user.email, &user.username, &channel.name, &channel.title, &watch, &settings);
        crate::email::queue(conn, &email, Some(format!("email.go_live:{session_id}:{}", user.id.0))).await?;
        queued += 1;
    }
    Ok(queued)
}

async fn new_follower(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let Event::UserFollowed { follower, channel_id } = job.payload()? else {
        return Err(JobError::Fail("not a user.followed event".into()));
    };
    let Some(channel) = channels::list_by_ids(state.db(), &[ChannelId(channel_id)]).await?.pop() else { return Ok(()) };
    let Some(follower) = crate::auth::accounts::find_by_id(state.db(), UserId(follower)).await? else { return Ok(()) };
    let owner = channel.owner_id;
    let mut tx = state.db().write().await?;
    let prefs = super::prefs_for(&mut tx, &[owner], NotificationKind::NewFollower).await?;
    let made = if prefs[&owner].in_app {
        let data = json!({ "follower": follower.username, "channel": channel.name });
        let dedup = format!("follow:{}:{}", follower.id.0, channel.id.0);
        store::insert_many(&mut tx, &[owner], NotificationKind::NewFollower, &data, &dedup, now_ms()).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    metrics::counter!("aether_notifications_total", "kind" => "new_follower").increment(made.len() as u64);
    push(&state, &made);
    Ok(())
}

/// `chat.mention`: each user named is told, unless they blocked the sender or turned it off.
async fn mention(state: AppState, job: ClaimedJob) -> Result<(), JobError> {
    let Event::ChatMention { room, from, message_id, text, users } = job.payload()? else {
        return Err(JobError::Fail("not a chat.mention event".into()));
    };
    let Some(sender) = crate::auth::accounts::find_by_username(state.db(), &from).await? else { return Ok(()) };
    let mut named = Vec::new();
    for username in users.iter().take(5) {
        if let Some(user) = crate::auth::accounts::find_by_username(state.db(), username).await? {
            named.push(user.id);
        }
    }
    let mut tx = state.db().write().await?;
    let prefs = super::prefs_for(&mut tx, &named, NotificationKind::Mention).await?;
    let mut told = Vec::new();
    for user in named {
        if prefs[&user].in_app && !profiles::is_blocked(&mut tx, user, sender.id).await? {
            told.push(user);
        }
    }
    let excerpt: String = text.chars().take(140).collect();
    let data = json!({ "from": from, "room": room, "text": excerpt, "message_id": message_id });
    let made = store::insert_many(
        &mut tx,
        &told,
        NotificationKind::Mention,
        &data,
        &format!("mention:{room}:{message_id}"),
        now_ms(),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("aether_notifications_total", "kind" => "mention").increment(made.len() as u64);
    push(&state, &made);
    Ok(())
}
