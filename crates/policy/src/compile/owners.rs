//! Active policies and profiles ("owners" of sets): compiling them, putting their programs
//! and sets into the program when they become active, and out when they stop being so.

use super::rules::{self, set_selector, Compiled};
use super::{Compiler, Owner};

impl Compiler {
    pub(super) fn compile_owner(&self, owner: &Owner) -> Option<Compiled> {
        match owner {
            Owner::Policy(id) => {
                let policy = self.policies.get(id)?;
                Some(rules::compile(
                    policy.ingress_type.then_some(policy.ingress.as_slice()),
                    policy.egress_type.then_some(policy.egress.as_slice()),
                ))
            }
            Owner::Profile(name) => {
                let profile = self.profiles.get(name)?;
                Some(rules::compile(
                    Some(&profile.ingress),
                    Some(&profile.egress),
                ))
            }
        }
    }

    pub(super) fn should_be_active(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Policy(id) => {
                self.policies.contains_key(id) && self.policy_locals.contains_key(id)
            }
            Owner::Profile(name) => {
                self.profiles.contains_key(name) && self.profile_locals.contains_key(name)
            }
        }
    }

    /// Puts an owner's program and sets in or takes them out, as its activity now says.
    pub(super) fn sync_activity(&mut self, owner: &Owner) {
        let active = self.compiled.contains_key(owner);
        let wanted = self.should_be_active(owner);
        if wanted && !active {
            if let Some(compiled) = self.compile_owner(owner) {
                self.install(owner, None, compiled);
            }
        } else if !wanted && active {
            if let Some(compiled) = self.compiled.remove(owner) {
                for key in &compiled.sets {
                    self.sets
                        .release(key, owner, &mut self.program, &mut self.changes);
                }
                match owner {
                    Owner::Policy(id) => {
                        self.program.policies.remove(id);
                        self.changes.policies.insert(id.clone());
                    }
                    Owner::Profile(name) => {
                        self.program.profiles.remove(name);
                        self.changes.profiles.insert(name.clone());
                    }
                }
            }
        }
    }

    /// Recompiles an active owner whose definition changed.
    pub(super) fn recompile_owner(&mut self, owner: &Owner) {
        if !self.compiled.contains_key(owner) || !self.should_be_active(owner) {
            return;
        }
        let Some(compiled) = self.compile_owner(owner) else {
            return;
        };
        let old = self.compiled.remove(owner);
        if old.as_ref() == Some(&compiled) {
            self.compiled.insert(owner.clone(), compiled);
            return;
        }
        self.install(owner, old, compiled);
    }

    /// Makes `compiled` the owner's program: new sets taken before old ones are let go, so a
    /// set both use is never rebuilt.
    pub(super) fn install(&mut self, owner: &Owner, old: Option<Compiled>, compiled: Compiled) {
        for key in &compiled.sets {
            if let Some(selector) = compiled.selectors.get(set_selector(&key.0)) {
                self.sets.acquire(
                    key,
                    selector,
                    owner,
                    &self.endpoints,
                    &mut self.program,
                    &mut self.changes,
                );
            }
        }
        if let Some(old) = &old {
            for key in old.sets.difference(&compiled.sets) {
                self.sets
                    .release(key, owner, &mut self.program, &mut self.changes);
            }
        }
        let changed = old.as_ref().map(|old| &old.program) != Some(&compiled.program);
        if changed {
            match owner {
                Owner::Policy(id) => {
                    self.program
                        .policies
                        .insert(id.clone(), compiled.program.clone());
                    self.changes.policies.insert(id.clone());
                }
                Owner::Profile(name) => {
                    self.program
                        .profiles
                        .insert(name.clone(), compiled.program.clone());
                    self.changes.profiles.insert(name.clone());
                }
            }
        }
        self.compiled.insert(owner.clone(), compiled);
    }
}
