-- What each recorded rendition is, for the VOD's multivariant playlist (bandwidth comes from the
-- segment index), and the per-channel switch for recording.
CREATE TABLE vod_renditions (
    vod_id      BIGINT NOT NULL REFERENCES vods(id) ON DELETE CASCADE,
    rendition   TEXT   NOT NULL,
    codecs      TEXT   NOT NULL,
    width       BIGINT,
    height      BIGINT,
    frame_rate_millis BIGINT,
    PRIMARY KEY (vod_id, rendition)
);

ALTER TABLE channels ADD COLUMN record BIGINT NOT NULL DEFAULT 1;

-- VODs (and later clips) are addressed by a random public id, so that an unlisted VOD is reachable
-- by its link but cannot be found by counting.
ALTER TABLE vods ADD COLUMN public_id TEXT;
UPDATE vods SET public_id = lower(hex(randomblob(8))) WHERE public_id IS NULL;
CREATE UNIQUE INDEX vods_public_id ON vods(public_id);
