-- Recordings: every broadcast is recorded as a VOD ('recording' while live, then 'ready'), its
-- segments indexed as they are written to object storage, so that a crash loses at most the
-- segment in flight and the recording can be finalized at the next start.
CREATE TABLE vods (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id    BIGINT  NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    session_id    BIGINT  NOT NULL UNIQUE REFERENCES stream_sessions(id) ON DELETE CASCADE,
    title         TEXT    NOT NULL DEFAULT '',
    status        TEXT    NOT NULL DEFAULT 'recording' CHECK (status IN ('recording', 'ready')),
    visibility    TEXT    NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'unlisted', 'public')),
    duration_ms   BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    finalized_at  BIGINT
);
CREATE INDEX vods_channel ON vods(channel_id, created_at);

CREATE TABLE vod_segments (
    vod_id                BIGINT NOT NULL REFERENCES vods(id) ON DELETE CASCADE,
    rendition             TEXT   NOT NULL,
    msn                   BIGINT NOT NULL,
    init_id               BIGINT NOT NULL,
    start_ms              BIGINT NOT NULL,
    duration_ms           BIGINT NOT NULL,
    bytes                 BIGINT NOT NULL,
    program_date_time_ms  BIGINT NOT NULL,
    discontinuity         BIGINT NOT NULL DEFAULT 0,
    object_key            TEXT   NOT NULL,
    PRIMARY KEY (vod_id, rendition, msn)
);
