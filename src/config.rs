//! Typed configuration: the embedded defaults (`config/default.toml`) <- an optional TOML file <-
//! `AETHER_*` environment variables <- command-line flags. Loaded and validated once at start;
//! each crate owns its own section type (`aether_ingest::RtmpConfig`, ...), composed here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

pub use aether_ingest::RtmpConfig;

/// The embedded defaults; also the documentation of every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub rtmp: RtmpConfig,
    pub webrtc: aether_ingest::webrtc::WebrtcConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub channels: ChannelsConfig,
    pub hls: crate::live::HlsConfig,
    pub live: crate::live::LiveConfig,
    pub transcode: aether_transcode::TranscodeConfig,
    pub chat: aether_chat::ChatConfig,
    pub storage: aether_vod::StorageConfig,
    pub recording: RecordingConfig,
    pub clips: ClipsConfig,
    pub jobs: crate::jobs::JobsConfig,
    pub notifications: NotificationsConfig,
    pub email: crate::email::EmailConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub public_url: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `None`: SQLite under the data dir.
    pub url: Option<String>,
    pub max_connections: u32,
}

// The URL may carry a password: never print it.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Option<String>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig").field("url", &self.url.as_ref().map(|_| "<redacted>")).finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub session_ttl_hours: u32,
    pub attempts_per_minute: u32,
    pub secure_cookies: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    pub max_per_user: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Record every broadcast as a VOD.
    pub enabled: bool,
    /// Bound of the local spool (`<data_dir>/spool`) that holds recorded objects while storage
    /// cannot be reached.
    pub spool_max_mb: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipsConfig {
    /// Shortest and longest clip, in seconds.
    pub min_seconds: u32,
    pub max_seconds: u32,
    /// Clips cut at the same time (on this node); more wait in the job queue.
    pub workers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// A channel that goes live again within this many seconds of its previous broadcast's
    /// start notifies nobody (a flapping connection is not news).
    pub go_live_cooldown_seconds: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Value(String),
}

/// Where the configuration comes from, lowest precedence first.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    /// Read `AETHER_*` variables from the process environment.
    pub env: bool,
}

impl Config {
    /// The embedded defaults alone.
    pub fn embedded() -> Config {
        Config::load(Sources::default()).expect("the embedded defaults are valid")
    }

    pub fn load(sources: Sources<'_>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = sources.file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            figment = figment.merge(Toml::file(file));
        }
        if sources.env {
            // AETHER_CONFIG names the file (a CLI option) and AETHER_TEST_* belong to the test
            // harness; every other AETHER_* variable must be a config key.
            let is_setting = |key: &figment::value::UncasedStr| {
                let key = key.as_str().to_ascii_lowercase();
                key != "config" && !key.starts_with("test_")
            };
            figment = figment.merge(Env::prefixed("AETHER_").filter(is_setting).split("__"));
        }
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Value(message.to_owned()));
        if self.http.body_limit_bytes < 1024 {
            return invalid("http.body_limit_bytes must be at least 1024");
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:"))
        {
            return invalid("database.url must be a postgres:// or sqlite: URL");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1");
        }
        if self.auth.session_ttl_hours == 0 || self.auth.attempts_per_minute == 0 {
            return invalid("auth.session_ttl_hours and auth.attempts_per_minute must be at least 1");
        }
        let clips = &self.clips;
        if clips.min_seconds == 0 || clips.min_seconds > clips.max_seconds || clips.max_seconds > 3600 {
            return invalid("clips.min_seconds must be 1 to clips.max_seconds, which is at most 3600");
        }
        if clips.workers == 0 {
            return invalid("clips.workers must be at least 1");
        }
        self.jobs.validate().map_err(ConfigError::Value)?;
        self.email.validate().map_err(ConfigError::Value)?;
        self.hls.validate().map_err(ConfigError::Value)?;
        if self.live.reconnect_grace_seconds > 600 {
            return Err(ConfigError::Value("live.reconnect_grace_seconds must be 0 to 600".into()));
        }
        self.transcode.validate().map_err(ConfigError::Value)?;
        self.webrtc.validate().map_err(ConfigError::Value)?;
        self.chat.validate().map_err(ConfigError::Value)?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid("log.level is not a valid filter");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_match_the_contract() {
        let config = Config::embedded();
        assert_eq!(config.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.rtmp.listen, "0.0.0.0:1935".parse().unwrap());
        assert_eq!(config.webrtc.udp_listen, "0.0.0.0:8189".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.database.url.is_none());
        assert!(config.redis.url.is_none());
        assert_eq!(config.log.format, LogFormat::Text);
    }

    #[test]
    fn a_file_overrides_the_defaults_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aether.toml");
        std::fs::write(&file, "data_dir = \"/srv/aether\"\n[http]\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        let config = Config::load(Sources { file: Some(&file), env: false }).unwrap();
        assert_eq!(config.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/srv/aether"));
        assert_eq!(config.http.body_limit_bytes, 65536);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aether.toml");
        std::fs::write(&file, "[http]\nlisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(Config::load(Sources { file: Some(&file), env: false }).is_err());
        std::fs::write(&file, "[database]\nurl = \"mysql://x\"\n").unwrap();
        assert!(Config::load(Sources { file: Some(&file), env: false }).is_err());
        let missing = dir.path().join("nope.toml");
        assert!(matches!(Config::load(Sources { file: Some(&missing), env: false }), Err(ConfigError::MissingFile(_))));
    }
}
