//! Stable, legal nftables names for Starling's objects.
//!
//! nft identifiers are `[A-Za-z_.][A-Za-z0-9/_.-]*` and the kernel limits names to 255 bytes.
//! Names stay readable when they can (`pi-knp/default/allow-web`, `tw-cali12ab34cd56e`): a raw
//! name made only of `[A-Za-z0-9./-]` and short enough is kept behind its prefix; anything else
//! becomes `<prefix>_<hash>`. A readable name never contains `_`, so the two forms never collide.
//! Sets are always hashed (selectors are long expressions). Named counters take their chain's
//! name plus a suffix (`.r<index>.<action>`, `.drop`) that reads back unambiguously from the
//! end, so two chains never share a counter name.

use sha2::{Digest, Sha256};

use crate::program::{Action, Direction, PolicyId, SetId};

/// The table's name in both families.
pub const TABLE: &str = "starling";
pub const FORWARD_EGRESS: &str = "forward-egress";
pub const FORWARD_INGRESS: &str = "forward-ingress";
pub const FROM_WL_DISPATCH: &str = "from-wl-dispatch";
pub const TO_WL_DISPATCH: &str = "to-wl-dispatch";
/// Verdict map from a workload's interface to its egress chain.
pub const FROM_WL_MAP: &str = "from-wl";
/// Verdict map from a workload's interface to its ingress chain.
pub const TO_WL_MAP: &str = "to-wl";
/// Starts the comment of every chain's trailer rule.
pub const SIGNATURE_PREFIX: &str = "starling h=";

/// Longest name we write; well below the kernel's limit so listings stay readable.
pub const MAX_NAME: usize = 96;

/// Lowercase hex of the first `bytes` bytes of SHA-256 over `parts` (each followed by NUL so
/// part boundaries count).
pub fn digest_hex(parts: &[&[u8]], bytes: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn readable(raw: &str) -> bool {
    !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./-".contains(&b))
}

/// `prefix + raw` when legal and short, else `prefix + "_" + hash(raw)`.
pub fn legal(prefix: &str, raw: &str) -> String {
    if readable(raw) && prefix.len() + raw.len() <= MAX_NAME {
        format!("{prefix}{raw}")
    } else {
        format!("{prefix}_{}", digest_hex(&[raw.as_bytes()], 12))
    }
}

/// Whether an interface name can be written as a quoted nft string and a chain name part.
pub fn legal_interface(interface: &str) -> bool {
    !interface.is_empty()
        && interface.len() < 16
        && interface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:".contains(&b))
}

/// The chain of an endpoint's pipeline: `tw-` (to workload, ingress) or `fw-` (from workload,
/// egress) plus the interface.
pub fn endpoint_chain(interface: &str, direction: Direction) -> String {
    let prefix = match direction {
        Direction::Ingress => "tw-",
        Direction::Egress => "fw-",
    };
    legal(prefix, interface)
}

/// What a policy-like chain holds: a policy's or a profile's rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Policy(PolicyId),
    Profile(String),
}

/// `pi-`/`po-<kind>/<namespace>/<name>` (Felix's policy ID) or `pri-`/`pro-<profile>`.
pub fn owner_chain(owner: &Owner, direction: Direction) -> String {
    match (owner, direction) {
        (Owner::Policy(id), Direction::Ingress) => legal("pi-", &id.to_string()),
        (Owner::Policy(id), Direction::Egress) => legal("po-", &id.to_string()),
        (Owner::Profile(name), Direction::Ingress) => legal("pri-", name),
        (Owner::Profile(name), Direction::Egress) => legal("pro-", name),
    }
}

/// Lowercase name of an action, as counters and metrics spell it.
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Pass => "pass",
        Action::Log => "log",
    }
}

/// The named counter of rule `index` (its action included: an edit changing the action starts
/// a new counter) in the policy or profile chain `chain`.
pub fn rule_counter(chain: &str, index: usize, action: Action) -> String {
    format!("{chain}.r{index}.{}", action_name(action))
}

/// The named counter of what an endpoint chain itself drops (tier default Deny, no profile
/// allowed).
pub fn denied_counter(chain: &str) -> String {
    format!("{chain}.drop")
}

/// `s-<hash of the selector>` or `n-<hash of selector, protocol and port name>`.
pub fn set_name(id: &SetId) -> String {
    match id {
        SetId::Selector(selector) => format!("s-{}", digest_hex(&[selector.as_bytes()], 12)),
        SetId::NamedPort {
            selector,
            protocol,
            name,
        } => format!(
            "n-{}",
            digest_hex(&[selector.as_bytes(), &[*protocol], name.as_bytes()], 12)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::PolicyKind;

    fn nft_identifier(name: &str) -> bool {
        let mut bytes = name.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'.');
        first_ok
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
            && name.len() <= MAX_NAME + 4
    }

    #[test]
    fn readable_names_stay_and_others_are_hashed() {
        let id = PolicyId {
            kind: PolicyKind::KubernetesNetworkPolicy,
            namespace: Some("default".into()),
            name: "allow-web".into(),
        };
        let owner = Owner::Policy(id);
        assert_eq!(
            owner_chain(&owner, Direction::Ingress),
            "pi-knp/default/allow-web"
        );
        assert_eq!(
            owner_chain(&Owner::Profile("kns.x".into()), Direction::Egress),
            "pro-kns.x"
        );
        assert_eq!(
            endpoint_chain("cali12ab34cd56e", Direction::Ingress),
            "tw-cali12ab34cd56e"
        );
        let long = Owner::Profile("k".repeat(200));
        let hashed = owner_chain(&long, Direction::Ingress);
        assert!(
            hashed.starts_with("pri-_") && hashed.len() == 5 + 24,
            "{hashed}"
        );
        let odd = owner_chain(&Owner::Profile("a b\"c".into()), Direction::Ingress);
        assert!(odd.starts_with("pri-_"), "{odd}");
        for name in [hashed, odd, set_name(&SetId::Selector("app == 'x'".into()))] {
            assert!(nft_identifier(&name), "{name}");
        }
    }

    #[test]
    fn names_are_stable_and_distinct() {
        let a = set_name(&SetId::Selector("a".into()));
        assert_eq!(a, set_name(&SetId::Selector("a".into())));
        assert_ne!(a, set_name(&SetId::Selector("b".into())));
        let port = |protocol, name: &str| {
            set_name(&SetId::NamedPort {
                selector: "a".into(),
                protocol,
                name: name.into(),
            })
        };
        assert_ne!(port(6, "http"), port(17, "http"));
        assert_ne!(port(6, "http"), port(6, "https"));
        assert!(port(6, "http").starts_with("n-"));
        // A hashed name cannot equal a readable one: readable names have no '_'.
        assert_ne!(legal("p-", "_x"), "p-_x");
    }
}
