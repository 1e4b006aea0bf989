//! Message ids: `<epoch>-<seq>`, ordered within a room. The epoch is the room's creation time
//! on this shard (ms, base 36), so a restarted shard or node never continues an old sequence and
//! a client's `since` from before a restart is recognised as unrecoverable.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", base36(self.epoch), self.seq)
    }
}

impl MessageId {
    pub fn parse(value: &str) -> Option<MessageId> {
        let (epoch, seq) = value.split_once('-')?;
        if epoch.is_empty() || epoch.len() > 13 || seq.is_empty() || seq.len() > 20 {
            return None;
        }
        Some(MessageId { epoch: u64::from_str_radix(epoch, 36).ok()?, seq: seq.parse().ok()? })
    }
}

fn base36(mut value: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(13);
    loop {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_junk_is_refused() {
        let id = MessageId { epoch: 1_700_000_000_123, seq: 42 };
        assert_eq!(MessageId::parse(&id.to_string()), Some(id));
        for junk in ["", "-", "abc", "x-", "-1", "zzzzzzzzzzzzzzzzzz-1", "1-1-1", "1-x"] {
            assert_eq!(MessageId::parse(junk), None, "{junk}");
        }
    }
}
