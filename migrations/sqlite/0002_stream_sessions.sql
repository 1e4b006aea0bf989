-- One row per broadcast: from publish to the publisher leaving.
CREATE TABLE stream_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id    BIGINT  NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    started_at    BIGINT  NOT NULL,
    ended_at      BIGINT,
    peak_viewers  BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX stream_sessions_channel ON stream_sessions(channel_id, started_at);
