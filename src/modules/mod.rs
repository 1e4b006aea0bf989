//! The module map: every module's level, tables, job kinds and event subscriptions, listed once.
//! The rules of ARCHITECTURE.md ("Plain modules") are checked against this list by the tests in
//! `rules.rs`: every table has one owner, a module's SQL names only its own tables (and the views
//! it declares it reads), and imports go down the levels.

pub mod notifications;
pub mod profiles;
#[cfg(test)]
mod rules;
pub mod search;

use crate::events::EventName;
use crate::jobs::Kind;

/// A module: where its code lives, its level, what it owns and what it reads of others.
pub struct Module {
    pub name: &'static str,
    /// Its folder under `src/`.
    pub dir: &'static str,
    /// It may call the facades of modules of a lower level (level 0: of level 0 too).
    pub level: u8,
    /// The tables only its SQL names.
    pub tables: &'static [&'static str],
    /// The read-only views it publishes for others' hot joins.
    pub views: &'static [&'static str],
    /// Other modules' views its SQL joins.
    pub reads: &'static [&'static str],
}

pub const MODULES: &[Module] = &[
    Module { name: "jobs", dir: "jobs", level: 0, tables: &["jobs"], views: &[], reads: &[] },
    Module { name: "email", dir: "email", level: 0, tables: &[], views: &[], reads: &[] },
    Module {
        name: "auth",
        dir: "auth",
        level: 0,
        tables: &["users", "sessions", "auth_tokens"],
        views: &["user_names"],
        reads: &[],
    },
    Module {
        name: "channels",
        dir: "channels",
        level: 0,
        tables: &["channels"],
        views: &["channel_names"],
        reads: &["user_names"],
    },
    Module { name: "live", dir: "live", level: 0, tables: &["stream_sessions"], views: &[], reads: &[] },
    Module {
        name: "chat",
        dir: "chat",
        level: 0,
        tables: &["channel_moderators", "channel_bans", "moderation_log"],
        views: &[],
        reads: &["user_names", "channel_names", "follow_edges", "block_edges"],
    },
    Module {
        name: "vod",
        dir: "vod",
        level: 0,
        tables: &["vods", "vod_segments", "vod_renditions"],
        views: &["vod_public_ids"],
        reads: &["channel_names"],
    },
    Module {
        name: "clips",
        dir: "clips",
        level: 0,
        tables: &["clips"],
        views: &[],
        reads: &["user_names", "channel_names", "vod_public_ids"],
    },
    Module {
        name: "profiles",
        dir: "modules/profiles",
        level: 1,
        tables: &["follows", "blocks", "profiles", "data_exports"],
        views: &["follow_edges", "block_edges"],
        reads: &[],
    },
    Module {
        name: "notifications",
        dir: "modules/notifications",
        level: 3,
        tables: &["notifications", "notification_prefs", "go_live_fanouts"],
        views: &[],
        reads: &[],
    },
    Module { name: "search", dir: "modules/search", level: 3, tables: &[], views: &[], reads: &[] },
];

/// Every job kind, for the runner to find a row's handler by name.
pub const KINDS: &[&Kind] = &[
    &crate::clips::MAKE,
    &crate::email::SEND,
    &profiles::PURGE,
    &profiles::EXPORT,
    &notifications::GO_LIVE,
    &notifications::NEW_FOLLOWER,
    &notifications::MENTION,
];

/// Who subscribes to which durable event: one job of the kind per event, in the publisher's
/// transaction.
pub const SUBSCRIPTIONS: &[(EventName, &Kind)] = &[
    ("stream.started", &notifications::GO_LIVE),
    ("user.followed", &notifications::NEW_FOLLOWER),
    ("chat.mention", &notifications::MENTION),
];

pub fn job_kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|kind| kind.name == name)
}

/// The job kinds that handle `event`.
pub fn subscribers(event: EventName) -> impl Iterator<Item = &'static Kind> {
    SUBSCRIPTIONS.iter().filter(move |(name, _)| *name == event).map(|(_, kind)| *kind)
}
