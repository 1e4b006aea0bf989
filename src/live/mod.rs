//! The glue of the media core. For now the registry of live streams (channel -> status) that the
//! channel API reads for `live` and `viewers`; the live-ingest issue adds stream sessions, HLS
//! serving and the go-live / go-offline lifecycle that fill it.

use dashmap::DashMap;

use crate::channels::ChannelId;

/// What the rest of the server may know about a channel that is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveStatus {
    pub started_at: i64,
    pub viewers: u64,
}

#[derive(Debug, Default)]
pub struct LiveRegistry {
    streams: DashMap<ChannelId, LiveStatus>,
}

impl LiveRegistry {
    pub fn status(&self, channel: ChannelId) -> Option<LiveStatus> {
        self.streams.get(&channel).map(|entry| *entry)
    }

    pub fn live_channels(&self) -> Vec<ChannelId> {
        self.streams.iter().map(|entry| *entry.key()).collect()
    }

    pub fn set_live(&self, channel: ChannelId, status: LiveStatus) {
        self.streams.insert(channel, status);
    }

    pub fn set_offline(&self, channel: ChannelId) {
        self.streams.remove(&channel);
    }
}
