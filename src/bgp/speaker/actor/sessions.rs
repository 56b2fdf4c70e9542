//! The actor's sessions by name, remembering which ones were changed since the last event and
//! when each one next has something due (a timer of either slot, a stale-route sweep).
//!
//! With a full mesh every daemon holds one session per other node, and the actor handles an
//! event (a frame, a connect, a timer) for one of them at a time. Walking every session after
//! each event, to tidy slots and to find the next deadline, made a 200-node mesh's start cost
//! each daemon O(sessions²); with this table the work after an event is O(sessions it changed).
//! Every mutable access goes through [`Sessions::get_mut`] (or `get_mut_tidying`), `insert`,
//! `remove` or `clear`, so a change cannot bypass the bookkeeping; reads go through `Deref`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::time::Instant;

use super::SessionState;
use crate::bgp::session::Slot;

/// What the table needs of a session: when it next has something due.
pub(super) trait Deadline {
    fn deadline(&self) -> Option<Instant>;
}

pub(super) struct Sessions<S = SessionState> {
    map: BTreeMap<String, S>,
    /// Changed since the actor last looked (see [`Sessions::take_changed`]).
    changed: BTreeSet<String>,
    /// Changed since their deadline was last indexed.
    unindexed: BTreeSet<String>,
    deadline_of: HashMap<String, Instant>,
    by_deadline: BTreeSet<(Instant, String)>,
}

impl<S> Default for Sessions<S> {
    fn default() -> Self {
        Sessions {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
            unindexed: BTreeSet::new(),
            deadline_of: HashMap::new(),
            by_deadline: BTreeSet::new(),
        }
    }
}

impl<S> Deref for Sessions<S> {
    type Target = BTreeMap<String, S>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<S: Deadline> Sessions<S> {
    pub fn get_mut(&mut self, name: &str) -> Option<&mut S> {
        let state = self.map.get_mut(name)?;
        if !self.changed.contains(name) {
            self.changed.insert(name.to_string());
        }
        if !self.unindexed.contains(name) {
            self.unindexed.insert(name.to_string());
        }
        Some(state)
    }

    /// For the housekeeping of a changed session: its deadline is indexed again, but it does
    /// not count as changed once more (else it would be tidied after every event from then on).
    pub fn get_mut_tidying(&mut self, name: &str) -> Option<&mut S> {
        let state = self.map.get_mut(name)?;
        if !self.unindexed.contains(name) {
            self.unindexed.insert(name.to_string());
        }
        Some(state)
    }

    pub fn insert(&mut self, name: String, state: S) {
        self.changed.insert(name.clone());
        self.unindexed.insert(name.clone());
        self.map.insert(name, state);
    }

    pub fn remove(&mut self, name: &str) -> Option<S> {
        self.changed.remove(name);
        self.unindexed.remove(name);
        self.unindex(name);
        self.map.remove(name)
    }

    pub fn clear(&mut self) {
        *self = Sessions::default();
    }

    /// The sessions changed since the last call.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// The earliest deadline of any session.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.index_changed();
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Sessions with something due at `now`, earliest first.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        self.index_changed();
        self.by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, name)| name.clone())
            .collect()
    }

    fn index_changed(&mut self) {
        for name in std::mem::take(&mut self.unindexed) {
            self.unindex(&name);
            let Some(deadline) = self.map.get(&name).and_then(S::deadline) else {
                continue;
            };
            self.by_deadline.insert((deadline, name.clone()));
            self.deadline_of.insert(name, deadline);
        }
    }

    fn unindex(&mut self, name: &str) {
        if let Some(old) = self.deadline_of.remove(name) {
            self.by_deadline.remove(&(old, name.to_string()));
        }
    }
}

impl Deadline for SessionState {
    fn deadline(&self) -> Option<Instant> {
        [
            self.primary.next_deadline(),
            self.secondary.as_ref().and_then(Slot::next_deadline),
            self.stale_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Timed(Option<Instant>);

    impl Deadline for Timed {
        fn deadline(&self) -> Option<Instant> {
            self.0
        }
    }

    #[test]
    fn the_index_follows_every_change_and_only_changed_sessions_are_reported() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let mut sessions: Sessions<Timed> = Sessions::default();
        sessions.insert("a".into(), Timed(Some(now + 3 * second)));
        sessions.insert("b".into(), Timed(Some(now + second)));
        sessions.insert("c".into(), Timed(None));
        assert_eq!(sessions.next_deadline(), Some(now + second));
        assert_eq!(sessions.take_changed().len(), 3);
        assert!(sessions.take_changed().is_empty(), "nothing changed since");

        // Moving b's timer later makes a the next one; only b counts as changed.
        if let Some(b) = sessions.get_mut("b") {
            b.0 = Some(now + 5 * second);
        }
        assert_eq!(sessions.next_deadline(), Some(now + 3 * second));
        assert_eq!(sessions.take_changed(), BTreeSet::from(["b".to_string()]));
        assert_eq!(sessions.due(now + 4 * second), vec!["a".to_string()]);
        assert_eq!(
            sessions.due(now + 6 * second),
            vec!["a".to_string(), "b".to_string()]
        );

        // Tidying re-indexes without counting as a change.
        if let Some(a) = sessions.get_mut_tidying("a") {
            a.0 = None;
        }
        assert!(sessions.take_changed().is_empty());
        assert_eq!(sessions.next_deadline(), Some(now + 5 * second));

        assert!(sessions.remove("b").is_some());
        assert_eq!(sessions.next_deadline(), None);
        assert!(sessions.due(now + 60 * second).is_empty());
        assert_eq!(sessions.len(), 2, "a and c remain");
    }
}
