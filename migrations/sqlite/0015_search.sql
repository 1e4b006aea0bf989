-- Full-text search (SQLite: FTS5 external-content tables kept by triggers; PostgreSQL: a
-- generated tsvector column with a GIN index). Each index belongs to the module that owns the
-- table it indexes. Tokens: Unicode letters and digits, lowercased, accents kept (as
-- PostgreSQL's 'simple' configuration does), no stemming.

-- channels
CREATE VIRTUAL TABLE channels_fts USING fts5(name, title, category, tags, content='channels', content_rowid='id', tokenize='unicode61 remove_diacritics 0');
INSERT INTO channels_fts(rowid, name, title, category, tags) SELECT id, name, title, category, tags FROM channels;
CREATE TRIGGER channels_fts_insert AFTER INSERT ON channels BEGIN
    INSERT INTO channels_fts(rowid, name, title, category, tags) VALUES (new.id, new.name, new.title, new.category, new.tags);
END;
CREATE TRIGGER channels_fts_delete AFTER DELETE ON channels BEGIN
    INSERT INTO channels_fts(channels_fts, rowid, name, title, category, tags) VALUES ('delete', old.id, old.name, old.title, old.category, old.tags);
END;
CREATE TRIGGER channels_fts_update AFTER UPDATE OF name, title, category, tags ON channels BEGIN
    INSERT INTO channels_fts(channels_fts, rowid, name, title, category, tags) VALUES ('delete', old.id, old.name, old.title, old.category, old.tags);
    INSERT INTO channels_fts(rowid, name, title, category, tags) VALUES (new.id, new.name, new.title, new.category, new.tags);
END;

-- vods
CREATE VIRTUAL TABLE vods_fts USING fts5(title, content='vods', content_rowid='id', tokenize='unicode61 remove_diacritics 0');
INSERT INTO vods_fts(rowid, title) SELECT id, title FROM vods;
CREATE TRIGGER vods_fts_insert AFTER INSERT ON vods BEGIN
    INSERT INTO vods_fts(rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER vods_fts_delete AFTER DELETE ON vods BEGIN
    INSERT INTO vods_fts(vods_fts, rowid, title) VALUES ('delete', old.id, old.title);
END;
CREATE TRIGGER vods_fts_update AFTER UPDATE OF title ON vods BEGIN
    INSERT INTO vods_fts(vods_fts, rowid, title) VALUES ('delete', old.id, old.title);
    INSERT INTO vods_fts(rowid, title) VALUES (new.id, new.title);
END;

-- clips
CREATE VIRTUAL TABLE clips_fts USING fts5(title, content='clips', content_rowid='id', tokenize='unicode61 remove_diacritics 0');
INSERT INTO clips_fts(rowid, title) SELECT id, title FROM clips;
CREATE TRIGGER clips_fts_insert AFTER INSERT ON clips BEGIN
    INSERT INTO clips_fts(rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER clips_fts_delete AFTER DELETE ON clips BEGIN
    INSERT INTO clips_fts(clips_fts, rowid, title) VALUES ('delete', old.id, old.title);
END;
CREATE TRIGGER clips_fts_update AFTER UPDATE OF title ON clips BEGIN
    INSERT INTO clips_fts(clips_fts, rowid, title) VALUES ('delete', old.id, old.title);
    INSERT INTO clips_fts(rowid, title) VALUES (new.id, new.title);
END;

-- users: their display names (usernames are matched by prefix on their unique index).
CREATE VIRTUAL TABLE profiles_fts USING fts5(display_name, content='profiles', content_rowid='user_id', tokenize='unicode61 remove_diacritics 0');
INSERT INTO profiles_fts(rowid, display_name) SELECT user_id, display_name FROM profiles;
CREATE TRIGGER profiles_fts_insert AFTER INSERT ON profiles BEGIN
    INSERT INTO profiles_fts(rowid, display_name) VALUES (new.user_id, new.display_name);
END;
CREATE TRIGGER profiles_fts_delete AFTER DELETE ON profiles BEGIN
    INSERT INTO profiles_fts(profiles_fts, rowid, display_name) VALUES ('delete', old.user_id, old.display_name);
END;
CREATE TRIGGER profiles_fts_update AFTER UPDATE OF display_name ON profiles BEGIN
    INSERT INTO profiles_fts(profiles_fts, rowid, display_name) VALUES ('delete', old.user_id, old.display_name);
    INSERT INTO profiles_fts(rowid, display_name) VALUES (new.user_id, new.display_name);
END;

-- Channels by category (discovery).
CREATE INDEX channels_category ON channels(category);
