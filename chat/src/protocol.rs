//! The chat wire protocol (CONTRACT.md, docs/chat-protocol.md): JSON text frames with a `type`.
//! Client frames are parsed into `ClientFrame`; server frames are serialized here, once, into
//! `Bytes` that every recipient shares.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Join {
        room: String,
        #[serde(default)]
        since: Option<String>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        text: String,
        #[serde(default)]
        nonce: Option<String>,
    },
    Ping,
    Delete {
        room: String,
        id: String,
    },
    Timeout {
        room: String,
        user: String,
        seconds: u64,
    },
    Ban {
        room: String,
        user: String,
    },
    Unban {
        room: String,
        user: String,
    },
    Slow {
        room: String,
        seconds: u64,
    },
    /// Only followers of at least `minutes` may chat; `null` turns it off.
    FollowersOnly {
        room: String,
        minutes: Option<u64>,
    },
}

/// Every error code a client can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, an unknown `type`, a missing or mistyped field, a binary frame.
    BadRequest,
    /// A frame larger than `chat.max_frame_bytes`.
    FrameTooLarge,
    /// Sending needs a signed-in user.
    Unauthorized,
    /// Moderation needs the channel's owner, a moderator or an admin.
    Forbidden,
    /// No such room (channel).
    NotFound,
    /// The action names a room this connection has not joined.
    NotJoined,
    RateLimited,
    /// The sender is banned from the room.
    Banned,
    /// The sender is timed out in the room.
    TimedOut,
    /// Slow mode: wait before sending again.
    SlowMode,
    /// Followers-only mode: follow the channel (for long enough) to chat.
    FollowersOnly,
    /// Empty after trimming, or longer than `chat.max_message_chars`.
    InvalidMessage,
    TooManyRooms,
    /// The server cannot serve the request right now (overloaded, shutting down).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatUserView<'a> {
    pub name: &'a str,
    pub badges: &'a [&'a str],
}

#[derive(Serialize)]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    id: String,
    user: ChatUserView<'a>,
    text: &'a str,
    ts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("protocol frames serialize"))
}

pub struct MessageFields<'a> {
    pub room: &'a str,
    pub id: String,
    pub user: ChatUserView<'a>,
    pub text: &'a str,
    pub ts: i64,
}

/// `msg` as everyone sees it, and with the sender's nonce for the sender.
pub fn msg(fields: MessageFields<'_>, nonce: Option<&str>) -> (Bytes, Option<Bytes>) {
    let mut frame = Msg {
        kind: "msg",
        room: fields.room,
        id: fields.id,
        user: fields.user,
        text: fields.text,
        ts: fields.ts,
        nonce: None,
    };
    let shared = to_bytes(&frame);
    let own = nonce.map(|nonce| {
        frame.nonce = Some(nonce);
        to_bytes(&frame)
    });
    (shared, own)
}

/// The joining user as the room sees them (in `joined`, for signed-in members).
#[derive(Debug, Serialize)]
pub struct You<'a> {
    pub name: &'a str,
    pub badges: &'a [&'a str],
    /// May delete, time out, ban and set slow mode here.
    pub moderator: bool,
}

/// `joined` with the history (already serialized `msg` frames) spliced in as they are.
pub fn joined(room: &str, history: &[Bytes], count: usize, recovered: Option<bool>, you: Option<You<'_>>) -> Bytes {
    let room = serde_json::to_string(room).expect("strings serialize");
    let mut out = Vec::with_capacity(64 + room.len() + history.iter().map(|m| m.len() + 1).sum::<usize>());
    out.extend_from_slice(b"{\"type\":\"joined\",\"room\":");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b",\"history\":[");
    for (i, message) in history.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(message);
    }
    out.extend_from_slice(format!("],\"presence\":{{\"count\":{count}}}").as_bytes());
    if let Some(recovered) = recovered {
        out.extend_from_slice(format!(",\"recovered\":{recovered}").as_bytes());
    }
    if let Some(you) = you {
        out.extend_from_slice(b",\"you\":");
        out.extend_from_slice(&serde_json::to_vec(&you).expect("plain fields serialize"));
    }
    out.push(b'}');
    Bytes::from(out)
}

pub fn presence(room: &str, count: usize, users: usize) -> Bytes {
    to_bytes(&serde_json::json!({ "type": "presence", "room": room, "count": count, "users": users }))
}

pub fn deleted(room: &str, id: &str) -> Bytes {
    to_bytes(&serde_json::json!({ "type": "deleted", "room": room, "id": id }))
}

pub fn notice(room: &str, text: &str) -> Bytes {
    to_bytes(&serde_json::json!({ "type": "notice", "room": room, "text": text }))
}

pub fn left(room: &str) -> Bytes {
    to_bytes(&serde_json::json!({ "type": "left", "room": room }))
}

pub fn pong() -> Bytes {
    Bytes::from_static(br#"{"type":"pong"}"#)
}

pub fn error(code: ErrorCode, message: &str) -> Bytes {
    to_bytes(&serde_json::json!({ "type": "error", "code": code, "message": message }))
}

/// Strips control characters (newlines and tabs become spaces) and trims.
pub fn clean_text(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            // Bidirectional overrides can make a message display differently from what it says.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => None,
            c => Some(c),
        })
        .collect();
    cleaned.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_unknown_ones_do_not() {
        let join: ClientFrame = serde_json::from_str(r#"{"type":"join","room":"abc","since":"x-1"}"#).unwrap();
        assert_eq!(join, ClientFrame::Join { room: "abc".into(), since: Some("x-1".into()) });
        let send: ClientFrame = serde_json::from_str(r#"{"type":"send","room":"abc","text":"hi"}"#).unwrap();
        assert_eq!(send, ClientFrame::Send { room: "abc".into(), text: "hi".into(), nonce: None });
        for bad in [
            r#"{"type":"fly"}"#,
            r#"{"room":"abc"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"timeout","room":"a","user":"b","seconds":-1}"#,
            "[]",
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joined_splices_history_into_valid_json() {
        let (one, _) = msg(
            MessageFields {
                room: "r",
                id: "a-1".into(),
                user: ChatUserView { name: "u", badges: &[] },
                text: "hi \"there\"",
                ts: 5,
            },
            None,
        );
        let frame = joined("r", &[one.clone(), one], 3, Some(true), None);
        let value: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(value["history"].as_array().unwrap().len(), 2);
        assert_eq!(value["history"][0]["text"], "hi \"there\"");
        assert_eq!(value["presence"]["count"], 3);
        assert_eq!(value["recovered"], true);
        assert!(value.get("you").is_none());
        let you = You { name: "mod", badges: &["moderator"], moderator: true };
        let frame = joined("r", &[], 1, None, Some(you));
        let value: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(value["you"], serde_json::json!({"name": "mod", "badges": ["moderator"], "moderator": true}));
        assert!(value.get("recovered").is_none());
    }

    #[test]
    fn the_nonce_goes_only_into_the_senders_copy() {
        let fields = MessageFields {
            room: "r",
            id: "a-1".into(),
            user: ChatUserView { name: "u", badges: &["moderator"] },
            text: "x",
            ts: 1,
        };
        let (shared, own) = msg(fields, Some("n1"));
        assert!(!String::from_utf8_lossy(&shared).contains("n1"));
        let own: serde_json::Value = serde_json::from_slice(&own.unwrap()).unwrap();
        assert_eq!(own["nonce"], "n1");
        assert_eq!(own["user"]["badges"][0], "moderator");
    }

    #[test]
    fn control_characters_are_stripped() {
        assert_eq!(clean_text("  a\u{0}b\nc\u{202e}d\u{7} "), "ab cd");
    }
}
