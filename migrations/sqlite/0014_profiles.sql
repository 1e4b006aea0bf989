-- profiles: what a user shows of themselves. The pictures are stored re-encoded under
-- profiles/{user_id}/ (avatar.jpg, banner.jpg); *_at is when the current one was stored (its
-- version in URLs), NULL when there is none.
CREATE TABLE profiles (
    user_id       BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    display_name  TEXT   NOT NULL DEFAULT '',
    bio           TEXT   NOT NULL DEFAULT '',
    -- JSON: [{"title": "...", "url": "https://..."}]
    links         TEXT   NOT NULL DEFAULT '[]',
    avatar_at     BIGINT,
    banner_at     BIGINT,
    updated_at    BIGINT NOT NULL
);

-- A user's data exports (made by a job): the JSON document is stored under exports/.
CREATE TABLE data_exports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status       TEXT   NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    object_key   TEXT,
    bytes        BIGINT,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX data_exports_user ON data_exports(user_id, created_at);
