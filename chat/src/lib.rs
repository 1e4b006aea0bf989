//! The sharded WebSocket chat and presence hub: protocol, shards, presence, moderation and the
//! Redis bridge for several nodes. Filled in by the chat issue.
