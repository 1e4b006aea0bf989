//! Stream keys: `<channel name>_<40 hex digits>` (160 random bits). Shown once when created or
//! rotated; the database keeps only a SHA-256 hash. Verification finds the channel by the name part
//! and compares hashes in constant time, so timing says nothing about the secret.

use rand::RngCore;
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::ChannelId;
use crate::auth::session::sha256_hex;
use crate::db::Db;

const SECRET_BYTES: usize = 20;

/// A stream key in the clear. Never logged, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey(String);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

impl StreamKey {
    pub fn generate(channel: &str) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        StreamKey(format!("{channel}_{}", hex::encode(secret)))
    }

    pub fn from_publisher(value: &str) -> Self {
        StreamKey(value.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }

    /// The channel name the key claims to belong to.
    fn channel_name(&self) -> Option<&str> {
        let (name, secret) = self.0.rsplit_once('_')?;
        (secret.len() == SECRET_BYTES * 2).then_some(name)
    }
}

/// The channel a publisher's stream key opens, or `None` for a wrong key.
pub async fn verify(db: &Db, key: &StreamKey) -> Result<Option<(ChannelId, String)>, sqlx::Error> {
    let Some(name) = key.channel_name() else { return Ok(None) };
    let row = sqlx::query("SELECT id, name, stream_key_hash FROM channels WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.try_get("stream_key_hash")?;
    if bool::from(stored.as_bytes().ct_eq(key.hash().as_bytes())) {
        Ok(Some((ChannelId(row.try_get("id")?), row.try_get("name")?)))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_name_their_channel() {
        let a = StreamKey::generate("my_channel");
        let b = StreamKey::generate("my_channel");
        assert_ne!(a, b);
        assert_eq!(a.channel_name(), Some("my_channel"));
        assert_eq!(a.as_str().len(), "my_channel_".len() + 40);
        assert_ne!(a.hash(), a.as_str());
        assert_eq!(StreamKey::from_publisher("my_channel_short").channel_name(), None);
        assert_eq!(format!("{a:?}"), "StreamKey(<redacted>)");
    }
}
