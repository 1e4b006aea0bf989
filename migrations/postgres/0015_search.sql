-- Full-text search (SQLite: FTS5 external-content tables kept by triggers; PostgreSQL: a
-- generated tsvector column with a GIN index). Each index belongs to the module that owns the
-- table it indexes. Tokens: Unicode letters and digits, lowercased, accents kept, no stemming
-- (the 'simple' configuration).

ALTER TABLE channels ADD COLUMN search tsvector GENERATED ALWAYS AS
    (to_tsvector('simple', name || ' ' || title || ' ' || category || ' ' || tags)) STORED;
CREATE INDEX channels_search ON channels USING GIN (search);

ALTER TABLE vods ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED;
CREATE INDEX vods_search ON vods USING GIN (search);

ALTER TABLE clips ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', title)) STORED;
CREATE INDEX clips_search ON clips USING GIN (search);

ALTER TABLE profiles ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', display_name)) STORED;
CREATE INDEX profiles_search ON profiles USING GIN (search);

-- Channels by category (discovery).
CREATE INDEX channels_category ON channels(category);
