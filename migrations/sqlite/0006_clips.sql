-- Clips: a span of a recording (a live stream's or a VOD's), cut without re-encoding into an MP4
-- and an HLS rendition of their own. The row is also the job: 'processing' rows are resumed at
-- start-up (attempts counts the tries), and a failed clip says why.
CREATE TABLE clips (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id           TEXT    NOT NULL UNIQUE,
    channel_id          BIGINT  NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    creator_id          BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    vod_id              BIGINT  REFERENCES vods(id) ON DELETE SET NULL,
    title               TEXT    NOT NULL DEFAULT '',
    requested_start_ms  BIGINT  NOT NULL,
    requested_end_ms    BIGINT  NOT NULL,
    status              TEXT    NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'failed')),
    failure             TEXT,
    attempts            BIGINT  NOT NULL DEFAULT 0,
    start_ms            BIGINT,
    duration_ms         BIGINT,
    bytes               BIGINT,
    fragments           TEXT    NOT NULL DEFAULT '[]',
    created_at          BIGINT  NOT NULL,
    finished_at         BIGINT
);
CREATE INDEX clips_channel ON clips(channel_id, created_at);
CREATE INDEX clips_status ON clips(status);
