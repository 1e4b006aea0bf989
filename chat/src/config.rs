//! `[chat]` settings: shards, history, presence cadence and every limit a client can hit.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// Shard tasks; 0 = 4 x the number of cores.
    pub shards: usize,
    /// Recent messages kept per room (history on join, recovery after a reconnect).
    pub history: usize,
    /// Presence broadcasts per room at most this often, and only on change.
    pub presence_interval_ms: u64,
    /// Longest message, in characters.
    pub max_message_chars: usize,
    /// Largest WebSocket frame or message a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Messages a connection may send per second (burst of twice that).
    pub messages_per_second: f64,
    /// Messages one signed-in user may send per second over all their connections.
    pub user_messages_per_second: f64,
    /// Joins a connection may make per second.
    pub joins_per_second: f64,
    pub max_rooms_per_connection: usize,
    pub max_connections_per_ip: usize,
    /// Writes queued for one connection (what its socket did not take at once, and after) before it
    /// counts as a slow consumer and is closed.
    pub outbox_frames: usize,
    /// Limit violations within a minute after which the socket is closed.
    pub max_violations_per_minute: u32,
    /// A connection gets a room's frames at most once per this window (0: no limit): the first
    /// after a quiet window at once, what comes within the window together when it ends. So a
    /// busy room costs each connection one write per window instead of one per message, and a
    /// quiet room adds no delay.
    pub coalesce_ms: u64,
    /// A room bigger than `coalesce_turn_members` gets its writes in turns, staggered evenly over
    /// the window, as many as its size takes (at most this many): a big room's writes spread over
    /// the window instead of one burst, so a frame waits about one window for any member. Members
    /// take turns in groups by connection id; this many groups.
    pub coalesce_groups: usize,
    /// Members a room writes to in one turn per window (see `coalesce_groups`).
    pub coalesce_turn_members: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            shards: 0,
            history: 100,
            presence_interval_ms: 1000,
            max_message_chars: 500,
            max_frame_bytes: 4096,
            messages_per_second: 5.0,
            user_messages_per_second: 5.0,
            joins_per_second: 10.0,
            max_rooms_per_connection: 20,
            max_connections_per_ip: 200,
            outbox_frames: 512,
            max_violations_per_minute: 30,
            coalesce_ms: 80,
            coalesce_groups: 8,
            coalesce_turn_members: 1000,
        }
    }
}

impl ChatConfig {
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 { self.shards } else { 4 * std::thread::available_parallelism().map_or(1, usize::from) }
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [self.messages_per_second, self.user_messages_per_second, self.joins_per_second];
        if positive.iter().any(|rate| !(rate.is_finite() && *rate > 0.0)) {
            return Err("chat rates must be positive".into());
        }
        if self.max_message_chars == 0 || self.max_frame_bytes < 256 || self.outbox_frames < 8 {
            return Err("chat.max_message_chars >= 1, chat.max_frame_bytes >= 256, chat.outbox_frames >= 8".into());
        }
        if self.coalesce_ms > 1000 || !(1..=64).contains(&self.coalesce_groups) || self.coalesce_turn_members == 0 {
            return Err(
                "chat.coalesce_ms is at most 1000, chat.coalesce_groups from 1 to 64, chat.coalesce_turn_members >= 1"
                    .into(),
            );
        }
        if self.history > 10_000 || self.presence_interval_ms < 100 {
            return Err("chat.history <= 10000 and chat.presence_interval_ms >= 100".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ChatConfig;

    #[test]
    fn the_pacing_settings_are_checked() {
        assert!(ChatConfig::default().validate().is_ok());
        for bad in [
            ChatConfig { coalesce_ms: 1001, ..ChatConfig::default() },
            ChatConfig { coalesce_groups: 0, ..ChatConfig::default() },
            ChatConfig { coalesce_groups: 65, ..ChatConfig::default() },
            ChatConfig { coalesce_turn_members: 0, ..ChatConfig::default() },
        ] {
            let error = bad.validate().unwrap_err();
            assert!(error.contains("chat.coalesce"), "{error}");
        }
        let fine = ChatConfig { coalesce_ms: 0, coalesce_groups: 1, coalesce_turn_members: 1, ..ChatConfig::default() };
        assert!(fine.validate().is_ok());
    }
}
