-- Whether a clip has a thumbnail (a JPEG of its first picture, when GStreamer is present).
ALTER TABLE clips ADD COLUMN has_thumbnail BIGINT NOT NULL DEFAULT 0;
