-- profiles: who blocked whom, read-only, for chat (a level-0 module that may not call the
-- profiles facade): a user's messages are not delivered to the users they blocked.
CREATE VIEW block_edges AS SELECT user_id, blocked_id FROM blocks;
