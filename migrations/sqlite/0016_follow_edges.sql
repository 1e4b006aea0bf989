-- profiles: who follows which channel since when, read-only, for chat's followers-only mode
-- (a level-0 module that may not call the profiles facade).
CREATE VIEW follow_edges AS SELECT user_id, channel_id, created_at FROM follows;
