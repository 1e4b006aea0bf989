//! Aether, the server: CLI-facing configuration, application state and lifecycle, the HTTP
//! router, accounts and channels, the live glue and the plain HTTP modules. The media crates
//! (`aether-ingest`, `-transcode`, `-vod`) and chat (`aether-chat`) are wired in here.

pub mod app;
pub mod auth;
pub mod channels;
pub mod chat;
pub mod clips;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod live;
pub mod modules;
pub mod ops;
pub mod telemetry;
pub mod vod;
pub mod web;
