-- Read-only views that a table's owner publishes for other modules' hot joins (ARCHITECTURE.md,
-- plain modules, rule 1): a module that lists one in its READS may join it; nobody writes it.
-- auth: who a user id is.
CREATE VIEW user_names AS SELECT id, username FROM users;
-- channels: a channel's name and owner.
CREATE VIEW channel_names AS SELECT id, name, owner_id FROM channels;
-- vod: a recording's public id.
CREATE VIEW vod_public_ids AS SELECT id, public_id FROM vods;
