//! A room's flushing: frames go to each group of members at most once per window, in turns
//! spread over the window for a big room; presence is broadcast on change.

use std::time::Instant;

use dashmap::DashMap;

use super::{Joined, Pace, Room, frames_for, is_hidden};
use crate::hub::{CloseReason, ConnId};
use crate::{protocol, wire};

impl Room {
    /// Writes what is outgoing to the groups whose turn has come: to all at once if the room has
    /// not written for a window (a quiet room adds no delay), else to each group whose window has
    /// passed. A room of up to `pace.turn_members` members writes in one turn per window; a bigger
    /// one in as many turns as that takes (at most one per group), staggered evenly over the
    /// window. Returns when the next group is due (now, for groups left for the next pass), if
    /// any still owes frames.
    pub(crate) fn flush_due(&mut self, now: tokio::time::Instant, pace: Pace) -> Option<tokio::time::Instant> {
        if self.outgoing.is_empty() {
            return None;
        }
        if self.last_write.is_none_or(|at| at + pace.window <= now) {
            // Quiet: every group is due now.
            self.origin = now;
            for group in &mut self.groups {
                group.next = now;
            }
        }
        let groups = self.groups.len();
        let turns = self.member_count().div_ceil(pace.turn_members.max(1)).clamp(1, groups);
        let end = self.outgoing_base + self.outgoing.len() as u64;
        let mut wrote = false;
        // About a turn's worth of members per pass: due groups beyond that (all of a big room's
        // after a quiet window) are left for the next pass, due at once, so that the shard serves
        // its other rooms and commands in between.
        let mut budget = pace.turn_members;
        for index in 0..groups {
            let group = &mut self.groups[index];
            if group.members.is_empty() {
                group.cursor = end;
                continue;
            }
            if group.next > now || budget == 0 {
                continue;
            }
            budget = budget.saturating_sub(group.members.len());
            self.write_group(index);
            wrote = true;
            // The group's next turn: its place among the turns, one window apart from then on.
            let turn = (index * turns / groups) as u32 + 1;
            let mut next = self.origin + pace.window * turn / turns as u32;
            if next <= now && !pace.window.is_zero() {
                let behind = (now - next).as_nanos() / pace.window.as_nanos();
                next += pace.window * (behind as u32 + 1);
            }
            self.groups[index].next = next;
        }
        if wrote {
            self.last_write = Some(now);
        }
        // Drop what every group has written.
        let written = self.groups.iter().map(|group| group.cursor).min().unwrap_or(end);
        self.outgoing.drain(..(written - self.outgoing_base) as usize);
        self.outgoing_base = written;
        self.groups.iter().filter(|group| group.cursor < end).map(|group| group.next).min()
    }

    /// Hands one group what it has not had of what is outgoing: the same bytes (framed once,
    /// joined once) to all but the senders and the newly joined among them; members that cannot
    /// take it are closed.
    pub(crate) fn write_group(&mut self, index: usize) {
        let base = self.outgoing_base;
        let end = base + self.outgoing.len() as u64;
        let group = &mut self.groups[index];
        let start = group.cursor;
        group.cursor = end;
        if start >= end {
            return;
        }
        let outgoing = self.outgoing.range((start - base) as usize..);
        let everyone = wire::joined(outgoing.clone().map(|out| &out.frame));
        // Frames some members must not get (their author blocked them): those members get
        // their own batch.
        let restricted = outgoing.clone().any(|out| out.hidden_from.is_some());
        // Sorted, so that each member is told apart from the senders in log time: a busy room
        // has many members and a window may hold many senders.
        let mut senders: Vec<ConnId> =
            outgoing.clone().filter_map(|out| out.sender.as_ref().map(|(conn, _)| *conn)).collect();
        senders.sort_unstable();
        senders.dedup();
        let mut slow = Vec::new();
        let mut delivered = 0u64;
        for (conn, Joined { member, owed_from }) in &group.members {
            let from = start.max(*owed_from);
            if from >= end {
                continue;
            }
            let user = member.user.as_ref().map(|user| user.id);
            let kept_from = restricted && outgoing.clone().any(|out| is_hidden(&out.hidden_from, user));
            let batch = if from > start || kept_from {
                frames_for(self.outgoing.range((from - base) as usize..), *conn, user)
            } else if senders.binary_search(conn).is_ok() {
                frames_for(outgoing.clone(), *conn, user)
            } else {
                everyone.clone()
            };
            if batch.is_empty() {
                continue;
            }
            if member.control.push(batch) {
                delivered += end - from;
            } else {
                member.control.close(CloseReason::SlowConsumer);
                slow.push(*conn);
            }
        }
        metrics::counter!("aether_chat_deliveries_total").increment(delivered);
        // How long each frame took from its stamping to this group's sockets (its turn's writes
        // included).
        let now = Instant::now();
        let waited = metrics::histogram!("aether_chat_delivery_seconds");
        for out in outgoing {
            waited.record(now.saturating_duration_since(out.at).as_secs_f64());
        }
        if !slow.is_empty() {
            metrics::counter!("aether_chat_slow_consumers_total").increment(slow.len() as u64);
            for conn in slow {
                self.remove(conn);
            }
        }
    }

    pub(crate) fn broadcast_presence(&mut self, presence: &DashMap<String, usize>) {
        let now = (self.member_count() + self.remote_presence.0, self.users.len() + self.remote_presence.1);
        if now == self.presence_sent {
            return;
        }
        self.presence_sent = now;
        presence.insert(self.name.clone(), now.0);
        let frame = protocol::presence(&self.name, now.0, now.1);
        self.broadcast(&frame);
    }
}
