-- When the channel's preview picture (its latest live thumbnail, kept in storage) was last
-- stored; NULL: it has none, so pages do not ask for it.
ALTER TABLE channels ADD COLUMN preview_at BIGINT;
