-- profiles: who follows which channel (and how much they want to hear of it), who blocked whom.
CREATE TABLE follows (
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    channel_id  BIGINT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    -- all: every notification of the channel; live: go-live only; off: none.
    notify      TEXT   NOT NULL DEFAULT 'all' CHECK (notify IN ('all', 'live', 'off')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id)
);
-- The go-live fan-out pages through a channel's followers by user id; the creator's list by date.
CREATE INDEX follows_channel_user ON follows(channel_id, user_id);
CREATE INDEX follows_channel_created ON follows(channel_id, created_at);

CREATE TABLE blocks (
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks(blocked_id);

-- notifications: one row per user and thing to tell them; data is what the UI shows (JSON).
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT   NOT NULL,
    data        TEXT   NOT NULL,
    dedup_key   TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    read_at     BIGINT
);
CREATE UNIQUE INDEX notifications_dedup ON notifications(user_id, dedup_key);
CREATE INDEX notifications_user ON notifications(user_id, id);
CREATE INDEX notifications_unread ON notifications(user_id, id) WHERE read_at IS NULL;

-- Per user and kind: in the app, by email. No row: the kind's default.
CREATE TABLE notification_prefs (
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind     TEXT   NOT NULL,
    in_app   BIGINT NOT NULL,
    email    BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- One go-live fan-out per broadcast: how far it got (resumable), and when, for the debounce.
CREATE TABLE go_live_fanouts (
    session_id  BIGINT PRIMARY KEY,
    channel_id  BIGINT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    started_at  BIGINT NOT NULL,
    -- Followers with a user id up to this one are done.
    cursor      BIGINT NOT NULL DEFAULT 0,
    notified    BIGINT NOT NULL DEFAULT 0,
    skipped     BIGINT NOT NULL DEFAULT 0,
    done_at     BIGINT
);
CREATE INDEX go_live_fanouts_channel ON go_live_fanouts(channel_id, started_at);
