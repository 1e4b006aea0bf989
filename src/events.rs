//! The in-process event bus: modules announce what happened (`stream.started`, `stream.ended`,
//! later `order.paid`, ...) and others subscribe, instead of reaching into each other's tables.
//! A bounded broadcast: a subscriber that falls behind misses events and is told how many.

use tokio::sync::broadcast;

const CAPACITY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `stream.started`
    StreamStarted { channel: String, session_id: i64 },
    /// `stream.ended`
    StreamEnded { channel: String, session_id: i64 },
}

impl Event {
    /// The event's name on the bus and in webhooks.
    pub fn name(&self) -> &'static str {
        match self {
            Event::StreamStarted { .. } => "stream.started",
            Event::StreamEnded { .. } => "stream.ended",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { sender: broadcast::channel(CAPACITY).0 }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        tracing::debug!(event = event.name(), "event");
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
