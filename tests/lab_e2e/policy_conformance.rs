//! The NetworkPolicy conformance suite in the lab: on one 3-node lab with the model x,y,z x
//! a,b,c (policy_support), each step applies policy with `starling lab apply -f` (or changes
//! labels with `starling lab label`), compares the full TCP/UDP x 80/81 matrix with what a small
//! model of the step says, and removes its objects again, back to everything reachable.
//! Kubernetes NetworkPolicy here; Calico tiers, order, Deny, Pass and GlobalNetworkPolicy in
//! policy_calico.

use std::time::Instant;

use starling::lab::serve::Protocol::{Tcp, Udp};
use starling::lab::Mode;

use super::policy_calico;
use super::policy_support::{all, build_model, Conformance, Pod, Why};
use super::requirements::require_root;
use super::Lab;

/// One step: changes the policy state, checks the matrices, and leaves no policy behind.
type Step = fn(&mut Conformance);

#[test]
fn network_policy_conformance_matrix() {
    if !require_root("network_policy_conformance_matrix") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::up("e2econf", Mode::Vxlan, 3, 0);
    build_model(&lab);
    let mut c = Conformance::new(&lab);
    c.expect("no policy", all);
    let steps: &[(&str, Step)] = &[
        ("default-deny ingress", default_deny_ingress),
        ("default-deny egress", default_deny_egress),
        ("allow from the same namespace", same_namespace),
        ("namespaceSelector", namespace_selector),
        ("pod AND namespace selector vs two peers", and_versus_or),
        ("ipBlock with except", ip_block),
        ("named ports", named_ports),
        ("port ranges", port_ranges),
        ("egress to chosen pods", egress_to_chosen_pods),
        ("policies add up", policies_add_up),
        ("update then delete", update_then_delete),
        ("pod labels change", pod_labels_change),
        ("namespace labels change", namespace_labels_change),
        ("UDP", udp_only),
        ("Calico tiers", policy_calico::tiers_order_deny_pass),
    ];
    for (name, step) in steps {
        let step_started = Instant::now();
        step(&mut c);
        eprintln!("step {name}: {:.1?}", step_started.elapsed());
    }
    // Each of those cells also as `lab explain` tells it.
    assert!(c.explained >= 10, "only {} cells explained", c.explained);
    eprintln!("{}", c.report());
    eprintln!(
        "conformance suite: {} steps in {:.1?} (lab up included)",
        steps.len(),
        started.elapsed()
    );
}

fn in_ns(pod: &Pod, namespace: &str) -> bool {
    pod.ns == namespace
}

fn default_deny_ingress(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#;
    c.apply(yaml);
    c.expect("x denies all ingress", |_, to, _, _| !in_ns(to, "x"));
    let (profile_x, profile_y) = (Some(Why::Profile("kns.x")), Some(Why::Profile("kns.y")));
    let isolated = Some(Why::TierDefault("default"));
    c.assert_explained("y/a", "x/b", "TCP/80", profile_y, isolated);
    c.assert_explained("x/a", "y/a", "UDP/80", profile_x, profile_y);
    c.delete(yaml);
    c.expect("x's ingress deny removed", all);
}

fn default_deny_egress(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
"#;
    c.apply(yaml);
    // Replies to connections into x are not egress-policed.
    c.expect("x denies all egress", |from, _, _, _| !in_ns(from, "x"));
    let isolated = Some(Why::TierDefault("default"));
    c.assert_explained("x/c", "z/c", "UDP/80", isolated, None);
    c.delete(yaml);
    c.expect("x's egress deny removed", all);
}

fn same_namespace(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-same-namespace, namespace: y}
spec:
  podSelector: {}
  ingress:
  - from:
    - podSelector: {}
"#;
    c.apply(yaml);
    c.expect("y admits only y", |from, to, _, _| {
        !in_ns(to, "y") || in_ns(from, "y")
    });
    let rule = Why::Rule {
        tier: "default",
        policy: "knp/y/allow-same-namespace",
        rule: 0,
        action: "Allow",
    };
    c.assert_explained("y/a", "y/b", "UDP/81", None, Some(rule));
    let isolated = Some(Why::TierDefault("default"));
    c.assert_explained("z/a", "y/c", "TCP/81", None, isolated);
    c.delete(yaml);
    c.expect("y's same-namespace policy removed", all);
}

fn namespace_selector(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y, namespace: x}
spec:
  podSelector:
    matchLabels: {pod: a}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: y}
"#;
    c.apply(yaml);
    // x/a's own neighbours are not in a namespace labelled ns=y either.
    c.expect("x/a admits namespace y", |from, to, _, _| {
        !to.is("x/a") || in_ns(from, "y")
    });
    c.delete(yaml);
    c.expect("namespaceSelector policy removed", all);
}

fn and_versus_or(c: &mut Conformance) {
    let and = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: peers, namespace: x}
spec:
  podSelector:
    matchLabels: {pod: a}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: y}
      podSelector:
        matchLabels: {pod: b}
"#;
    c.apply(and);
    c.expect("one peer: pod b AND namespace y", |from, to, _, _| {
        !to.is("x/a") || from.is("y/b")
    });
    // The same policy with a `-` more: two peers, OR-ed; the update replaces the old rules.
    let or = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: peers, namespace: x}
spec:
  podSelector:
    matchLabels: {pod: a}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: y}
    - podSelector:
        matchLabels: {pod: b}
"#;
    c.apply(or);
    c.expect("two peers: namespace y, or pod b of x", |from, to, _, _| {
        !to.is("x/a") || in_ns(from, "y") || from.is("x/b")
    });
    c.delete(or);
    c.expect("peer policy removed", all);
}

fn ip_block(c: &mut Conformance) {
    let (yb, zc, xc) = (c.host_cidr("y/b"), c.host_cidr("z/c"), c.host_cidr("x/c"));
    let pool = starling::lab::resources::POD_POOL;
    let yaml = format!(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: pool-but-two, namespace: x}}
spec:
  podSelector:
    matchLabels: {{pod: a}}
  ingress:
  - from:
    - ipBlock:
        cidr: {pool}
        except: [{yb}, {zc}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: only-to-xc, namespace: z}}
spec:
  podSelector:
    matchLabels: {{pod: b}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: {xc}
"#
    );
    c.apply(&yaml);
    c.expect(
        "x/a admits the pool but y/b and z/c; z/b reaches only x/c's address",
        |from, to, _, _| {
            (!to.is("x/a") || !(from.is("y/b") || from.is("z/c")))
                && (!from.is("z/b") || to.is("x/c"))
        },
    );
    c.delete(&yaml);
    c.expect("ipBlock policies removed", all);
}

fn named_ports(c: &mut Conformance) {
    // serve-80-tcp is a TCP port on every pod: with protocol UDP the name matches nothing.
    let ingress = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named-in, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {}
    ports:
    - port: serve-80-tcp
    - {protocol: UDP, port: serve-81-udp}
    - {protocol: UDP, port: serve-80-tcp}
"#;
    c.apply(ingress);
    let x_admits = |to: &Pod, protocol, port| {
        !in_ns(to, "x") || (protocol, port) == (Tcp, 80) || (protocol, port) == (Udp, 81)
    };
    c.expect(
        "x admits TCP/80 and UDP/81 by name",
        |_, to, protocol, port| x_admits(to, protocol, port),
    );
    // Egress names resolve on the destination pod.
    let egress = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named-out, namespace: y}
spec:
  podSelector:
    matchLabels: {pod: c}
  policyTypes: [Egress]
  egress:
  - ports:
    - port: serve-81-tcp
"#;
    c.apply(egress);
    c.expect(
        "and y/c sends only to TCP/81 by name",
        |from, to, protocol, port| {
            x_admits(to, protocol, port) && (!from.is("y/c") || (protocol, port) == (Tcp, 81))
        },
    );
    c.delete(egress);
    c.delete(ingress);
    c.expect("named-port policies removed", all);
}

fn port_ranges(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ranges, namespace: y}
spec:
  podSelector: {}
  ingress:
  - ports:
    - {protocol: TCP, port: 79, endPort: 80}
    - {protocol: UDP, port: 81, endPort: 90}
"#;
    c.apply(yaml);
    c.expect(
        "y admits TCP 79-80 and UDP 81-90",
        |_, to, protocol, port| {
            !in_ns(to, "y")
                || (protocol == Tcp && (79..=80).contains(&port))
                || (protocol == Udp && (81..=90).contains(&port))
        },
    );
    c.delete(yaml);
    c.expect("port-range policy removed", all);
}

fn egress_to_chosen_pods(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: chosen, namespace: z}
spec:
  podSelector:
    matchLabels: {pod: a}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector:
        matchLabels: {ns: x}
      podSelector:
        matchLabels: {pod: b}
    - podSelector:
        matchLabels: {pod: c}
"#;
    c.apply(yaml);
    c.expect("z/a reaches only x/b and z/c", |from, to, _, _| {
        !from.is("z/a") || to.is("x/b") || to.is("z/c")
    });
    c.delete(yaml);
    c.expect("egress policy removed", all);
}

fn policies_add_up(c: &mut Conformance) {
    let first = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-x-tcp80, namespace: y}
spec:
  podSelector:
    matchLabels: {pod: b}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: x}
    ports:
    - {protocol: TCP, port: 80}
"#;
    c.apply(first);
    let from_x = |from: &Pod, to: &Pod, protocol, port| {
        to.is("y/b") && in_ns(from, "x") && (protocol, port) == (Tcp, 80)
    };
    c.expect("y/b admits x on TCP/80", |from, to, protocol, port| {
        !to.is("y/b") || from_x(from, to, protocol, port)
    });
    let second = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: all-from-z, namespace: y}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: z}
"#;
    c.apply(second);
    c.expect(
        "and all of y admits z: the union",
        |from, to, protocol, port| {
            !in_ns(to, "y") || in_ns(from, "z") || from_x(from, to, protocol, port)
        },
    );
    c.delete(first);
    c.expect("only the second left", |from, to, _, _| {
        !in_ns(to, "y") || in_ns(from, "z")
    });
    c.delete(second);
    c.expect("both removed", all);
}

fn update_then_delete(c: &mut Conformance) {
    let v1 = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: changing, namespace: z}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: x}
"#;
    c.apply(v1);
    c.expect("z admits x", |from, to, _, _| {
        !in_ns(to, "z") || in_ns(from, "x")
    });
    let v2 = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: changing, namespace: z}
spec:
  podSelector:
    matchLabels: {pod: a}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {ns: y}
    ports:
    - {protocol: UDP}
"#;
    c.apply(v2);
    c.expect(
        "updated: only z/a, and only UDP from y",
        |from, to, protocol, _| !to.is("z/a") || (in_ns(from, "y") && protocol == Udp),
    );
    c.delete(v2);
    c.expect("updated policy deleted", all);
}

fn pod_labels_change(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: clients-only, namespace: x}
spec:
  podSelector:
    matchLabels: {pod: a}
  ingress:
  - from:
    - namespaceSelector: {}
      podSelector:
        matchLabels: {role: client}
"#;
    c.apply(yaml);
    c.expect("x/a admits no one (no clients yet)", |_, to, _, _| {
        !to.is("x/a")
    });
    c.label("pod", "y/c", &["role=client"]);
    c.expect("y/c labelled a client reaches x/a", |from, to, _, _| {
        !to.is("x/a") || from.is("y/c")
    });
    // x/a leaves the policy's podSelector: nothing selects it any more.
    c.label("pod", "x/a", &["pod=z"]);
    c.expect("x/a relabelled out of the policy", all);
    c.label("pod", "x/a", &["pod=a"]);
    c.label("pod", "y/c", &["role-"]);
    c.expect("labels back: x/a admits no one again", |_, to, _, _| {
        !to.is("x/a")
    });
    c.delete(yaml);
    c.expect("client policy removed", all);
}

fn namespace_labels_change(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: team-blue, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: blue}
"#;
    c.apply(yaml);
    c.expect("x admits no namespace yet", |_, to, _, _| !in_ns(to, "x"));
    c.label("namespace", "z", &["team=blue"]);
    c.expect("z joins team blue and reaches x", |from, to, _, _| {
        !in_ns(to, "x") || in_ns(from, "z")
    });
    c.label("namespace", "z", &["team-"]);
    c.label("namespace", "x", &["team=blue"]);
    c.expect("x itself is team blue, z no longer", |from, to, _, _| {
        !in_ns(to, "x") || in_ns(from, "x")
    });
    c.label("namespace", "x", &["team-"]);
    c.expect("no team blue again", |_, to, _, _| !in_ns(to, "x"));
    c.delete(yaml);
    c.expect("team policy removed", all);
}

fn udp_only(c: &mut Conformance) {
    let yaml = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: udp-in, namespace: z}
spec:
  podSelector: {}
  ingress:
  - ports:
    - {protocol: UDP}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: udp80-out, namespace: x}
spec:
  podSelector:
    matchLabels: {pod: b}
  policyTypes: [Egress]
  egress:
  - ports:
    - {protocol: UDP, port: 80}
"#;
    c.apply(yaml);
    c.expect(
        "z admits only UDP; x/b sends only UDP/80",
        |from, to, protocol, port| {
            (!in_ns(to, "z") || protocol == Udp)
                && (!from.is("x/b") || (protocol, port) == (Udp, 80))
        },
    );
    c.delete(yaml);
    c.expect("UDP policies removed", all);
}
