//! Calico's own policy in the conformance suite: two Tier objects (security at order 100 before
//! platform at 200, both before the default tier), GlobalNetworkPolicies in security whose
//! `order` decides between Allow and Deny, `Pass` on to the next tier, a namespaced Calico
//! NetworkPolicy in platform, and platform's `defaultAction`.

use starling::lab::serve::Protocol::{Tcp, Udp};

use super::policy_support::{all, Conformance, Why};

const TIERS: &str = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200}
"#;

/// Ingress of namespace z: x/b allowed (if this policy comes before DENY_X)...
fn allow_xb(order: u32) -> String {
    format!(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.allow-xb}}
spec:
  tier: security
  order: {order}
  selector: "projectcalico.org/namespace == 'z'"
  types: [Ingress]
  ingress:
  - action: Allow
    source:
      selector: "pod == 'b'"
      namespaceSelector: "ns == 'x'"
"#
    )
}

/// ... the rest of x denied, everyone else passed on to platform, where only TCP is allowed.
const DENY_X: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.deny-x}
spec:
  tier: security
  order: 10
  selector: "projectcalico.org/namespace == 'z'"
  types: [Ingress]
  ingress:
  - action: Deny
    source:
      namespaceSelector: "ns == 'x'"
  - action: Pass
"#;

const PLATFORM: &str = r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: platform.tcp-only, namespace: z}
spec:
  tier: platform
  order: 1
  selector: all()
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
"#;

/// Egress of every pod: UDP/81 denied, the rest passed (no later tier has egress policy, so the
/// namespace profiles allow it).
const NO_UDP_81: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.no-udp-81-out}
spec:
  tier: security
  order: 1
  selector: all()
  types: [Egress]
  egress:
  - action: Deny
    protocol: UDP
    destination:
      ports: [81]
  - action: Pass
"#;

const PLATFORM_PASSES: &str = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200, defaultAction: Pass}
"#;

pub fn tiers_order_deny_pass(c: &mut Conformance) {
    c.apply(TIERS);
    c.apply(&allow_xb(5));
    c.apply(DENY_X);
    c.apply(PLATFORM);
    c.expect(
        "security: x/b allowed before x denied, rest passed to platform's TCP only",
        |from, to, protocol, _| {
            to.ns != "z" || from.is("x/b") || (from.ns != "x" && protocol == Tcp)
        },
    );
    let rule = |tier, policy, action| {
        Some(Why::Rule {
            tier,
            policy,
            rule: 0,
            action,
        })
    };
    let allow_xb_rule = rule("security", "gnp/security.allow-xb", "Allow");
    let deny_x_rule = rule("security", "gnp/security.deny-x", "Deny");
    let profile_x = Some(Why::Profile("kns.x"));
    c.assert_explained("x/b", "z/a", "TCP/80", profile_x, allow_xb_rule);
    c.assert_explained("x/a", "z/b", "UDP/81", None, deny_x_rule);
    let tcp_rule = rule("platform", "np/z/platform.tcp-only", "Allow");
    c.assert_explained("y/a", "z/c", "TCP/81", None, tcp_rule);
    let platform_end = Some(Why::TierDefault("platform"));
    c.assert_explained("y/b", "z/a", "UDP/80", None, platform_end);
    // Allow after Deny: x/b is denied with the rest of x.
    c.apply(&allow_xb(20));
    c.expect(
        "security's allow ordered after its deny",
        |from, to, protocol, _| to.ns != "z" || (from.ns != "x" && protocol == Tcp),
    );
    c.assert_explained("x/b", "z/a", "TCP/80", None, deny_x_rule);
    c.apply(NO_UDP_81);
    let no_udp_81 = |protocol, port| (protocol, port) != (Udp, 81);
    c.expect(
        "and a global egress deny of UDP/81",
        |from, to, protocol, port| {
            no_udp_81(protocol, port) && (to.ns != "z" || (from.ns != "x" && protocol == Tcp))
        },
    );
    let no_udp_81_rule = rule("security", "gnp/security.no-udp-81-out", "Deny");
    c.assert_explained("y/c", "x/a", "UDP/81", no_udp_81_rule, None);
    // Passed out of security, no later tier has egress policy: the profile allows.
    let profile_y = Some(Why::Profile("kns.y"));
    c.assert_explained("y/c", "x/a", "TCP/81", profile_y, profile_x);
    // platform's end passes on to the default tier, which has no policy: profiles allow.
    c.apply(PLATFORM_PASSES);
    c.expect(
        "platform's default action Pass",
        |from, to, protocol, port| no_udp_81(protocol, port) && (to.ns != "z" || from.ns != "x"),
    );
    c.assert_explained("y/b", "z/a", "UDP/80", None, Some(Why::Profile("kns.z")));
    c.delete(NO_UDP_81);
    c.delete(PLATFORM);
    c.delete(DENY_X);
    c.delete(&allow_xb(20));
    c.delete(TIERS);
    c.expect("Calico policies and tiers removed", all);
}
