//! Chat: the sharded WebSocket chat and presence hub. Rooms (one per channel) are spread over
//! shard tasks by hash; each shard owns its rooms' members, history, presence and moderation
//! state. `Session` is the per-connection protocol core (parse, limits, routing) that the server's
//! WebSocket driver feeds; `Directory` is how the hub asks the server about rooms and records
//! moderation. With Redis, the bridge joins several nodes into one chat.

mod bridge;
pub mod config;
mod hub;
pub mod ids;
pub mod limits;
pub mod protocol;
mod room;
mod session;
mod shard;
pub mod wire;

pub use config::ChatConfig;
pub use hub::{
    BoxFuture, ChatUser, CloseReason, ConnId, Control, Directory, Hub, Member, Mention, ModerationAction,
    ModerationRecord, RoomSeed, mentioned_users,
};
pub use session::Session;
