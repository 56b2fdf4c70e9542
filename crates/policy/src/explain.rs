//! Why a connection is allowed or denied, from the compiled program: the evaluation the
//! dataplane performs for a new flow, step by step, with the tier, policy and rule (or tier
//! default, or profile) that decided. Backs `starling policy explain`.
//!
//! Contract: [`evaluate`] runs one local endpoint's pipeline in one direction over a
//! [`Flow`] exactly as `program` describes it (tiers, first terminal rule, Pass, tier default,
//! profiles, final drop); sets are looked up in `program.sets`. [`explain`] resolves the two
//! peers (an endpoint key `<ns>/<name>` or an IP address, of any node) through the compiler
//! and evaluates the egress of the source and the ingress of the destination when they are
//! local endpoints; a side that is not a local endpoint is not policed here (another node's
//! program, or no endpoint at all). The verdict allows when every evaluated side allows.
//! A rule with source-port criteria matches only when the flow names a source port.

use std::fmt;
use std::net::IpAddr;

use crate::compile::Compiler;
use crate::program::{
    Action, Direction, EndpointProgram, Family, Icmp, PolicyId, Program, Rule, SetId, SetMembers,
    Side, TierDefault,
};
use crate::validate::{protocol_name, protocol_number, PROTOCOL_ICMP, PROTOCOL_ICMPV6};

/// The first packet of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: u8,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    pub icmp: Option<Icmp>,
}

/// What a flow is, without its addresses: protocol and port (or ICMP type and code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub protocol: u8,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    pub icmp: Option<Icmp>,
}

impl Packet {
    /// `PROTO[/PORT]` (e.g. `TCP/80`, `udp/53`, `132/9`), or for ICMP `ICMP[/TYPE[/CODE]]`.
    pub fn parse(text: &str) -> Result<Packet, String> {
        let mut parts = text.split('/');
        let name = parts.next().unwrap_or_default();
        let protocol = protocol_number(name)
            .or_else(|| name.parse::<u8>().ok().filter(|number| *number > 0))
            .ok_or_else(|| format!("{name:?} is not a protocol"))?;
        let mut number = |what: &str| -> Result<Option<u16>, String> {
            parts
                .next()
                .map(|part| {
                    part.parse::<u16>()
                        .map_err(|_| format!("{part:?} is not a {what}"))
                })
                .transpose()
        };
        let mut packet = Packet {
            protocol,
            source_port: None,
            destination_port: None,
            icmp: None,
        };
        if matches!(protocol, PROTOCOL_ICMP | PROTOCOL_ICMPV6) {
            let icmp_type = number("ICMP type")?;
            let code = number("ICMP code")?;
            packet.icmp = match icmp_type {
                Some(icmp_type) => Some(Icmp {
                    icmp_type: u8::try_from(icmp_type).map_err(|_| "ICMP type above 255")?,
                    code: code
                        .map(u8::try_from)
                        .transpose()
                        .map_err(|_| "ICMP code above 255")?,
                }),
                None => None,
            };
        } else {
            packet.destination_port = number("port")?;
        }
        if parts.next().is_some() {
            return Err(format!("{text:?} has too many parts (PROTO/PORT)"));
        }
        Ok(packet)
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", protocol_name(self.protocol))?;
        if let Some(port) = self.destination_port {
            write!(f, "/{port}")?;
        }
        if let Some(icmp) = self.icmp {
            write!(f, "/{}", icmp.icmp_type)?;
            if let Some(code) = icmp.code {
                write!(f, "/{code}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// What decided one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A policy rule with a terminal action.
    Rule {
        tier: String,
        policy: PolicyId,
        index: usize,
        action: Action,
    },
    /// The tier's policies applied but none of their rules matched: its default (Deny).
    TierDefault { tier: String },
    /// A profile rule.
    Profile { profile: String, index: usize },
    /// Through every tier and profile without an allow.
    NoProfileAllowed,
}

/// A non-terminal step on the way (a Log rule, a Pass rule, a tier whose default is Pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Logged {
        tier: String,
        policy: PolicyId,
        index: usize,
    },
    Passed {
        tier: String,
        policy: PolicyId,
        index: usize,
    },
    TierDefaultPass {
        tier: String,
    },
}

/// The decision of one local endpoint in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub endpoint: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub reason: Reason,
    pub steps: Vec<Step>,
}

fn in_set(
    program: &Program,
    id: &SetId,
    family: Family,
    address: IpAddr,
    port: Option<(u8, u16)>,
) -> bool {
    match program.sets.get(&(id.clone(), family)) {
        Some(SetMembers::Nets(nets)) => nets.iter().any(|net| net.contains(&address)),
        Some(SetMembers::AddressPorts(items)) => {
            port.is_some_and(|(protocol, port)| items.contains(&(address, protocol, port)))
        }
        Some(SetMembers::Empty) | None => false,
    }
}

fn side_matches(
    program: &Program,
    side: &Side,
    family: Family,
    address: IpAddr,
    port: Option<u16>,
    protocol: u8,
) -> bool {
    let set = |id: &SetId| {
        in_set(
            program,
            id,
            family,
            address,
            port.map(|port| (protocol, port)),
        )
    };
    let in_ports = |ranges: &[crate::program::PortRange], named: &[SetId]| {
        port.is_some_and(|port| ranges.iter().any(|r| (r.first..=r.last).contains(&port)))
            || named.iter().any(&set)
    };
    (side.nets.is_empty() || side.nets.iter().any(|net| net.contains(&address)))
        && !side.not_nets.iter().any(|net| net.contains(&address))
        && side.set.as_ref().is_none_or(&set)
        && !side.not_set.as_ref().is_some_and(&set)
        && ((side.ports.is_empty() && side.named_ports.is_empty())
            || in_ports(&side.ports, &side.named_ports))
        && !in_ports(&side.not_ports, &side.not_named_ports)
}

fn icmp_matches(icmp: &Icmp, flow: &Flow) -> bool {
    flow.icmp.is_some_and(|actual| {
        actual.icmp_type == icmp.icmp_type && icmp.code.is_none_or(|code| actual.code == Some(code))
    })
}

/// Whether `rule` matches the flow (in the family of its addresses).
pub fn rule_matches(program: &Program, rule: &Rule, flow: &Flow) -> bool {
    let family = Family::of(&flow.source);
    rule.protocol
        .is_none_or(|protocol| protocol == flow.protocol)
        && rule
            .not_protocol
            .is_none_or(|protocol| protocol != flow.protocol)
        && rule
            .icmp
            .as_ref()
            .is_none_or(|icmp| icmp_matches(icmp, flow))
        && !rule
            .not_icmp
            .as_ref()
            .is_some_and(|icmp| icmp_matches(icmp, flow))
        && side_matches(
            program,
            &rule.source,
            family,
            flow.source,
            flow.source_port,
            flow.protocol,
        )
        && side_matches(
            program,
            &rule.destination,
            family,
            flow.destination,
            flow.destination_port,
            flow.protocol,
        )
}

/// Runs `endpoint`'s pipeline for `direction` over `flow`.
pub fn evaluate(
    program: &Program,
    endpoint: &EndpointProgram,
    direction: Direction,
    flow: &Flow,
) -> Decision {
    let family = Family::of(&flow.source);
    let mut steps = Vec::new();
    let decision = |verdict, reason, steps| Decision {
        endpoint: endpoint.key.clone(),
        direction,
        verdict,
        reason,
        steps,
    };
    let pipeline = endpoint.pipeline(direction);
    'tiers: for tier in &pipeline.tiers {
        for id in &tier.policies {
            let Some(policy) = program.policies.get(id) else {
                continue;
            };
            for rule in policy.direction(direction).family(family) {
                if !rule_matches(program, rule, flow) {
                    continue;
                }
                let at = |action| Reason::Rule {
                    tier: tier.tier.clone(),
                    policy: id.clone(),
                    index: rule.index,
                    action,
                };
                match rule.action {
                    Action::Allow => return decision(Verdict::Allow, at(Action::Allow), steps),
                    Action::Deny => return decision(Verdict::Deny, at(Action::Deny), steps),
                    Action::Pass => {
                        steps.push(Step::Passed {
                            tier: tier.tier.clone(),
                            policy: id.clone(),
                            index: rule.index,
                        });
                        continue 'tiers;
                    }
                    Action::Log => steps.push(Step::Logged {
                        tier: tier.tier.clone(),
                        policy: id.clone(),
                        index: rule.index,
                    }),
                }
            }
        }
        match tier.default_action {
            TierDefault::Deny => {
                return decision(
                    Verdict::Deny,
                    Reason::TierDefault {
                        tier: tier.tier.clone(),
                    },
                    steps,
                )
            }
            TierDefault::Pass => steps.push(Step::TierDefaultPass {
                tier: tier.tier.clone(),
            }),
        }
    }
    for name in &pipeline.profiles {
        let Some(profile) = program.profiles.get(name) else {
            continue;
        };
        for rule in profile.direction(direction).family(family) {
            if !rule_matches(program, rule, flow) {
                continue;
            }
            let reason = Reason::Profile {
                profile: name.clone(),
                index: rule.index,
            };
            match rule.action {
                Action::Allow => return decision(Verdict::Allow, reason, steps),
                Action::Deny => return decision(Verdict::Deny, reason, steps),
                // A Pass in a profile ends that profile.
                Action::Pass => break,
                Action::Log => {}
            }
        }
    }
    decision(Verdict::Deny, Reason::NoProfileAllowed, steps)
}

/// One side of the question, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// What the caller named.
    pub name: String,
    pub address: IpAddr,
    /// The endpoint key, when the address is an endpoint's.
    pub endpoint: Option<String>,
    /// True when that endpoint is on this node (so its side was evaluated here).
    pub local: bool,
}

/// The answer: the verdict and the decision of each local side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub source: Peer,
    pub destination: Peer,
    pub packet: Packet,
    pub verdict: Verdict,
    /// Egress of the source, when it is a local endpoint.
    pub egress: Option<Decision>,
    /// Ingress of the destination, when it is a local endpoint.
    pub ingress: Option<Decision>,
}

fn resolve(compiler: &Compiler, name: &str, family: Option<Family>) -> Result<Peer, String> {
    let (address, key) = match name.parse::<IpAddr>() {
        Ok(address) => {
            let key = compiler
                .endpoints()
                .find(|endpoint| endpoint.addresses.contains(&address))
                .map(|endpoint| endpoint.key.clone());
            (address, key)
        }
        Err(_) => {
            let endpoint = compiler
                .endpoint(name)
                .ok_or_else(|| format!("no endpoint {name:?}"))?;
            let address = endpoint
                .addresses
                .iter()
                .find(|address| family.is_none_or(|family| Family::of(address) == family))
                .ok_or_else(|| {
                    format!("endpoint {name:?} has no address of the other side's family")
                })?;
            (*address, Some(name.to_string()))
        }
    };
    let local = key
        .as_deref()
        .and_then(|key| compiler.endpoint(key))
        .is_some_and(|endpoint| endpoint.node == compiler.node());
    Ok(Peer {
        name: name.to_string(),
        address,
        endpoint: key,
        local,
    })
}

fn local_program<'a>(compiler: &'a Compiler, peer: &Peer) -> Option<&'a EndpointProgram> {
    let endpoint = compiler.endpoint(peer.endpoint.as_deref()?)?;
    let program = compiler.program().endpoints.get(&endpoint.interface)?;
    (peer.local && program.key == endpoint.key).then_some(program)
}

/// Explains `source` → `destination` (endpoint keys or addresses) for `packet`.
pub fn explain(
    compiler: &Compiler,
    source: &str,
    destination: &str,
    packet: Packet,
) -> Result<Explanation, String> {
    // An IP literal fixes the family; the other side takes an address of the same one.
    let family_of = |name: &str| {
        name.parse::<IpAddr>()
            .ok()
            .map(|address| Family::of(&address))
    };
    let source_family = family_of(source).or(family_of(destination));
    let source = resolve(compiler, source, source_family)?;
    let destination = resolve(compiler, destination, Some(Family::of(&source.address)))?;
    if Family::of(&source.address) != Family::of(&destination.address) {
        return Err("source and destination are of different IP families".to_string());
    }
    let flow = Flow {
        source: source.address,
        destination: destination.address,
        protocol: packet.protocol,
        source_port: packet.source_port,
        destination_port: packet.destination_port,
        icmp: packet.icmp,
    };
    let program = compiler.program();
    let egress =
        local_program(compiler, &source).map(|e| evaluate(program, e, Direction::Egress, &flow));
    let ingress = local_program(compiler, &destination)
        .map(|e| evaluate(program, e, Direction::Ingress, &flow));
    let denied = [&egress, &ingress]
        .into_iter()
        .flatten()
        .any(|decision| decision.verdict == Verdict::Deny);
    Ok(Explanation {
        source,
        destination,
        packet,
        verdict: if denied {
            Verdict::Deny
        } else {
            Verdict::Allow
        },
        egress,
        ingress,
    })
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allowed",
            Verdict::Deny => "denied",
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule {
                tier,
                policy,
                index,
                action,
            } => {
                write!(f, "tier {tier}, policy {policy}, rule {index} ({action:?})")
            }
            Reason::TierDefault { tier } => {
                write!(f, "tier {tier}: no rule matched (tier default Deny)")
            }
            Reason::Profile { profile, index } => write!(f, "profile {profile}, rule {index}"),
            Reason::NoProfileAllowed => f.write_str("no profile allowed"),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}) -> {} ({}) {}: {}",
            self.source.name,
            self.source.address,
            self.destination.name,
            self.destination.address,
            self.packet,
            self.verdict
        )?;
        let sides = [
            ("egress", &self.source, &self.egress),
            ("ingress", &self.destination, &self.ingress),
        ];
        for (direction, peer, decision) in sides {
            let who = peer.endpoint.as_deref().unwrap_or(&peer.name);
            match decision {
                Some(decision) => {
                    writeln!(
                        f,
                        "  {direction} of {who}: {} by {}",
                        decision.verdict, decision.reason
                    )?;
                    for step in &decision.steps {
                        match step {
                            Step::Logged {
                                tier,
                                policy,
                                index,
                            } => writeln!(
                                f,
                                "    logged: tier {tier}, policy {policy}, rule {index}"
                            )?,
                            Step::Passed {
                                tier,
                                policy,
                                index,
                            } => writeln!(
                                f,
                                "    passed: tier {tier}, policy {policy}, rule {index}"
                            )?,
                            Step::TierDefaultPass { tier } => {
                                writeln!(f, "    passed: tier {tier} (default Pass)")?
                            }
                        }
                    }
                }
                None if peer.endpoint.is_some() => {
                    writeln!(f, "  {direction} of {who}: not on this node")?
                }
                None => writeln!(f, "  {direction} of {who}: not an endpoint, not policed")?,
            }
        }
        Ok(())
    }
}
