//! What the policy tests share: the conformance model (namespaces x, y, z labelled `ns=<name>`;
//! pods a, b, c in each, pod a on node1, b on node2, c on node3, labelled `pod=<name>`, serving
//! TCP and UDP on 80 and 81 under the named ports `serve-<port>-<proto>`), and a harness that
//! compares the lab's full reachability matrix with one computed by a model of the step.
//!
//! Contract of [`Conformance::expect`]: the four probes (TCP/UDP x 80/81) run together and are
//! polled until they equal the expected matrix or [`CONVERGE`] passes (longer in the guest),
//! then the test fails with the differing cells. An expected matrix equal to the one seen last
//! is refused: such a step would pass before the daemon did anything.
//! [`Conformance::assert_explained`] checks one cell of the state just seen with `lab explain`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use starling::lab::serve::Protocol;
use starling::lab::workloads::{self, PodRequest};
use starling::lab::{serve, verbs};

use super::{logs, poll, Lab};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const SERVE: &str =
    "serve-80-tcp=tcp/80,serve-80-udp=udp/80,serve-81-tcp=tcp/81,serve-81-udp=udp/81";
pub const PROBES: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 81),
    (Protocol::Udp, 80),
    (Protocol::Udp, 81),
];
/// How long a change may take to show in every cell.
pub const CONVERGE: Duration = Duration::from_secs(20);
/// Per probe: short, so a denied cell costs little (a matrix takes about one timeout).
pub const PROBE_TIMEOUT_MS: u64 = 400;
/// Differing cells listed one a line at most (the matrices below show them all).
const DIFF_LINES: usize = 40;

/// The emulated guest (tests/lab_guest.rs) is several times slower than the host: more time to
/// converge there, and a longer probe timeout (an allowed probe must still answer in time).
fn in_guest() -> bool {
    super::vm::in_guest()
}

pub fn converge_limit() -> Duration {
    CONVERGE * if in_guest() { 4 } else { 1 }
}

pub fn probe_timeout_ms() -> u64 {
    PROBE_TIMEOUT_MS * if in_guest() { 2 } else { 1 }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Creates the model's namespaces and pods in `lab` (brought up with no pods).
pub fn build_model(lab: &Lab) {
    let options = &lab.options;
    for namespace in NAMESPACES {
        workloads::add_namespace(options, namespace, &labels(&[("ns", namespace)])).unwrap();
    }
    for namespace in NAMESPACES {
        for (index, pod) in PODS.into_iter().enumerate() {
            workloads::add_pod(
                options,
                &PodRequest {
                    namespace: namespace.to_string(),
                    name: pod.to_string(),
                    node: Some(index + 1),
                    labels: labels(&[("pod", pod)]),
                    serve: serve::parse_list(SERVE).unwrap(),
                    ..PodRequest::default()
                },
            )
            .unwrap_or_else(|error| panic!("pod {namespace}/{pod}: {error:#}"));
        }
    }
}

/// One pod of the model as `lab status --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub ns: String,
    pub name: String,
    pub node: String,
    pub address: IpAddr,
}

impl Pod {
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    /// Whether this is pod `qualified` (`"x/a"`).
    pub fn is(&self, qualified: &str) -> bool {
        self.qualified() == qualified
    }
}

/// One cell: (probe as `TCP/80`, from, to) -> reachable.
pub type Matrix = BTreeMap<(String, String, String), bool>;

fn probe_name(protocol: Protocol, port: u16) -> String {
    format!("{protocol}/{port}")
}

/// The lab under test, the model's pods and what was seen last.
pub struct Conformance<'l> {
    pub lab: &'l Lab,
    pub pods: Vec<Pod>,
    last: Option<Matrix>,
    manifests: PathBuf,
    written: usize,
    /// Cells checked with `lab explain`.
    pub explained: usize,
    /// Each state and how long it took to converge.
    pub timings: Vec<(String, Duration)>,
}

impl<'l> Conformance<'l> {
    /// Reads the pods from `lab status --json`.
    pub fn new(lab: &'l Lab) -> Conformance<'l> {
        let status = verbs::status_json(&lab.options).unwrap();
        let pods = status["pods"]
            .as_array()
            .unwrap_or_else(|| panic!("no pods in {status:#}"))
            .iter()
            .map(|pod| Pod {
                ns: pod["namespace"].as_str().unwrap().to_string(),
                name: pod["name"].as_str().unwrap().to_string(),
                node: pod["node"].as_str().unwrap().to_string(),
                address: pod["addresses"][0]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("pod without an address: {pod}")),
            })
            .collect();
        let manifests = lab.options.state_dir().join("conformance");
        std::fs::create_dir_all(&manifests).unwrap();
        Conformance {
            lab,
            pods,
            last: None,
            manifests,
            written: 0,
            explained: 0,
            timings: Vec::new(),
        }
    }

    pub fn pod(&self, qualified: &str) -> &Pod {
        self.pods
            .iter()
            .find(|pod| pod.is(qualified))
            .unwrap_or_else(|| panic!("no pod {qualified} in the model"))
    }

    /// `<address>/32` of pod `qualified`, for ipBlocks.
    pub fn host_cidr(&self, qualified: &str) -> String {
        let address = self.pod(qualified).address;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        format!("{address}/{bits}")
    }

    /// The matrix `model(from, to, protocol, port)` describes, over every probe.
    pub fn expected(&self, model: impl Fn(&Pod, &Pod, Protocol, u16) -> bool) -> Matrix {
        let mut matrix = Matrix::new();
        for (protocol, port) in PROBES {
            for from in &self.pods {
                for to in self.pods.iter().filter(|to| *to != from) {
                    let key = (probe_name(protocol, port), from.qualified(), to.qualified());
                    matrix.insert(key, model(from, to, protocol, port));
                }
            }
        }
        matrix
    }

    /// Every probe once, in parallel (each matrix probes its pairs in parallel too).
    pub fn observe(&self) -> Matrix {
        let options = &self.lab.options;
        let timeout_ms = probe_timeout_ms();
        let matrices: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = PROBES
                .iter()
                .map(|&(protocol, port)| {
                    scope.spawn(move || {
                        verbs::probe_matrix(options, protocol, port, timeout_ms).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut matrix = Matrix::new();
        for probed in matrices {
            for (from, row) in &probed.reachable {
                for (to, ok) in row {
                    matrix.insert((probed.probe.clone(), from.clone(), to.clone()), *ok);
                }
            }
        }
        matrix
    }

    /// Polls until the lab's matrix is what `model` says (see the module's contract).
    pub fn expect(&mut self, state: &str, model: impl Fn(&Pod, &Pod, Protocol, u16) -> bool) {
        let expected = self.expected(model);
        if let Some(last) = &self.last {
            assert_ne!(
                last, &expected,
                "state {state:?} expects what was already seen: it would prove nothing"
            );
        }
        let started = Instant::now();
        let mut seen = Matrix::new();
        let converged = poll(converge_limit(), || {
            seen = self.observe();
            seen == expected
        });
        let took = started.elapsed();
        if !converged {
            panic!(
                "state {state:?}: the lab's matrix is not the model's after {took:.1?}\n{}\n{}",
                self.diff(&expected, &seen),
                logs(&self.lab.options, self.lab.state.nodes)
            );
        }
        let denied = expected.values().filter(|ok| !**ok).count();
        eprintln!(
            "{state}: {} cells ({denied} denied) as the model says after {took:.1?}",
            expected.len()
        );
        self.timings.push((state.to_string(), took));
        self.last = Some(seen);
    }

    /// The differing cells, one a line, then each differing probe's matrix as seen, with `!`
    /// on the cells the model disagrees with.
    pub fn diff(&self, expected: &Matrix, seen: &Matrix) -> String {
        let word = |ok: Option<&bool>| match ok {
            Some(true) => "allowed",
            Some(false) => "denied",
            None => "missing",
        };
        let node = |qualified: &str| {
            self.pods
                .iter()
                .find(|pod| pod.is(qualified))
                .map(|pod| pod.node.clone())
                .unwrap_or_default()
        };
        let mut out = String::new();
        let mut probes = Vec::new();
        let keys: std::collections::BTreeSet<_> = expected.keys().chain(seen.keys()).collect();
        let differing: Vec<_> = keys
            .into_iter()
            .filter(|key| expected.get(*key) != seen.get(*key))
            .collect();
        let _ = writeln!(
            out,
            "{} of {} cells differ:",
            differing.len(),
            expected.len()
        );
        for (index, key) in differing.iter().enumerate() {
            let (probe, from, to) = key;
            if !probes.contains(probe) {
                probes.push(probe.clone());
            }
            if index == DIFF_LINES {
                let _ = writeln!(out, "  ... and {} more", differing.len() - DIFF_LINES);
            }
            if index >= DIFF_LINES {
                continue;
            }
            let _ = writeln!(
                out,
                "  {probe:<6} {from} ({}) -> {to} ({}): model {}, lab {}",
                node(from),
                node(to),
                word(expected.get(*key)),
                word(seen.get(*key))
            );
        }
        let names: Vec<String> = self.pods.iter().map(Pod::qualified).collect();
        for probe in probes {
            let _ = write!(
                out,
                "{probe} as seen (! = not what the model says)\nfrom\\to"
            );
            for to in &names {
                let _ = write!(out, " {to:>5}");
            }
            out.push('\n');
            for from in &names {
                let _ = write!(out, "{from:<7}");
                for to in &names {
                    let key = (probe.clone(), from.clone(), to.clone());
                    let cell = match seen.get(&key) {
                        None if from == to => "-".to_string(),
                        None => "?!".to_string(),
                        Some(ok) => {
                            let mark = if expected.get(&key) == Some(ok) {
                                ""
                            } else {
                                "!"
                            };
                            format!("{}{mark}", if *ok { "ok" } else { "X" })
                        }
                    };
                    let _ = write!(out, " {cell:>5}");
                }
                out.push('\n');
            }
        }
        out
    }

    /// `starling lab ARGS --name LAB --state-dir DIR`: stdout, or the test fails with both
    /// streams.
    pub fn lab_command(&self, args: &[&str]) -> String {
        let options = &self.lab.options;
        let output = Command::new(env!("CARGO_BIN_EXE_starling"))
            .arg("lab")
            .args(args)
            .arg("--name")
            .arg(&options.name)
            .arg("--state-dir")
            .arg(options.state_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "starling lab {}: {}\n{stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn write_manifest(&mut self, yaml: &str) -> String {
        self.written += 1;
        let path = self.manifests.join(format!("{:02}.yaml", self.written));
        std::fs::write(&path, yaml).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// `lab apply -f` of `yaml`; every object must be created or configured.
    pub fn apply(&mut self, yaml: &str) {
        let file = self.write_manifest(yaml);
        let out = self.lab_command(&["apply", "-f", &file]);
        assert!(
            !out.is_empty()
                && out
                    .lines()
                    .all(|line| line.ends_with(" created") || line.ends_with(" configured")),
            "apply of\n{yaml}\nsaid:\n{out}"
        );
    }

    /// `lab delete -f` of `yaml`'s documents in reverse order (policies before their tiers);
    /// every object must have existed.
    pub fn delete(&mut self, yaml: &str) {
        let mut documents: Vec<&str> = yaml
            .split("\n---\n")
            .filter(|d| !d.trim().is_empty())
            .collect();
        documents.reverse();
        let file = self.write_manifest(&documents.join("\n---\n"));
        let out = self.lab_command(&["delete", "-f", &file]);
        assert!(
            out.lines().all(|line| line.ends_with(" deleted")),
            "delete said:\n{out}"
        );
    }

    /// `lab label pod|namespace TARGET CHANGES... --overwrite`.
    pub fn label(&self, kind: &str, target: &str, changes: &[&str]) {
        let mut args = vec!["label", kind, target];
        args.extend_from_slice(changes);
        args.push("--overwrite");
        self.lab_command(&args);
    }

    /// `lab explain --json FROM TO PROBE` for a cell of the state just converged: its verdict
    /// is the one probed, and each side listed is decided where and as `egress` / `ingress` say
    /// (a side not listed is not checked).
    pub fn assert_explained(
        &mut self,
        from: &str,
        to: &str,
        probe: &str,
        egress: Option<Why>,
        ingress: Option<Why>,
    ) {
        let seen = self
            .last
            .as_ref()
            .and_then(|last| last.get(&(probe.to_string(), from.to_string(), to.to_string())))
            .copied()
            .unwrap_or_else(|| panic!("no probed cell {probe} {from} -> {to}"));
        let out = self.lab_command(&["explain", "--json", from, to, probe]);
        let explained: Value = serde_json::from_str(&out)
            .unwrap_or_else(|error| panic!("explain {from} {to} {probe}: {error}: {out}"));
        let context = format!("explain {from} -> {to} {probe}: {explained:#}");
        let verdict = if seen { "allow" } else { "deny" };
        assert_eq!(explained["verdict"], verdict, "probed {verdict}; {context}");
        for (side, why, pod) in [("egress", egress, from), ("ingress", ingress, to)] {
            let Some(why) = why else { continue };
            let decision = &explained[side];
            assert_eq!(decision["endpoint"], pod, "{side}: {context}");
            assert_eq!(decision["node"], self.pod(pod).node, "{side}: {context}");
            assert_eq!(decision["verdict"], why.verdict(), "{side}: {context}");
            assert!(
                why.matches(&decision["reason"]),
                "{side} is not {why:?}: {context}"
            );
        }
        if self.explained == 0 {
            eprintln!("for example {context}");
        }
        self.explained += 1;
    }

    /// The convergence times, slowest first.
    pub fn report(&self) -> String {
        let mut timings = self.timings.clone();
        timings.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
        let total: Duration = timings.iter().map(|(_, took)| *took).sum();
        let mut out = format!(
            "{} states converged in {total:.1?} in all; slowest:\n",
            timings.len()
        );
        for (state, took) in timings.iter().take(5) {
            let _ = writeln!(out, "  {took:>8.1?}  {state}");
        }
        out
    }
}

/// What decided one side of a connection, as `lab explain` must say.
#[derive(Debug, Clone, Copy)]
pub enum Why {
    /// Rule `rule` (0-based) of `policy` (`<kind>/[<namespace>/]<name>`: `np/x/...`, `gnp/...`,
    /// and `knp/x/<name>` for a converted Kubernetes policy) in `tier`, action `Allow`/`Deny`.
    Rule {
        tier: &'static str,
        policy: &'static str,
        rule: u64,
        action: &'static str,
    },
    /// Policies of the tier applied and none matched.
    TierDefault(&'static str),
    /// The first rule of the namespace's profile (`kns.<ns>`) allowed.
    Profile(&'static str),
}

impl Why {
    fn verdict(self) -> &'static str {
        match self {
            Why::Rule {
                action: "Allow", ..
            }
            | Why::Profile(_) => "allow",
            _ => "deny",
        }
    }

    fn matches(self, reason: &Value) -> bool {
        let text = |field: &str| reason[field].as_str().unwrap_or_default().to_string();
        match self {
            Why::Rule {
                tier,
                policy,
                rule,
                action,
            } => {
                reason["kind"] == "rule"
                    && text("tier") == tier
                    && text("policy") == policy
                    && reason["rule"] == rule
                    && text("action") == action
            }
            Why::TierDefault(tier) => reason["kind"] == "tier_default" && text("tier") == tier,
            Why::Profile(profile) => {
                reason["kind"] == "profile" && text("profile") == profile && reason["rule"] == 0
            }
        }
    }
}

/// The state without policy: everything reaches everything.
pub fn all(_: &Pod, _: &Pod, _: Protocol, _: u16) -> bool {
    true
}
