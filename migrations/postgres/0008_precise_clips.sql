-- Frame-precise clips: the first GOP re-encoded from the asked picture, the end cut by the edit list.
ALTER TABLE clips ADD COLUMN precise BIGINT NOT NULL DEFAULT 0;
