//! The two datastore paths of the policy engine compile the same cluster to the same program.
//! One cluster (two labelled namespaces, service accounts, pods on this node and another, with
//! labels and named ports; Kubernetes NetworkPolicies using every peer and port form; a Calico
//! NetworkPolicy; a GlobalNetworkPolicy passing out of its own tier) is written to the
//! Kubernetes API test server and, as the Calico objects Calico's components store for it, to
//! a real etcd; each is read by the real watchers into an `Engine`. After the first sync and
//! after every change (pod label, namespace label, policy and tier edit, policy deletions, pod
//! deletions) both programs, their inputs and a few verdicts must be the same; engines started
//! afresh from the final datastores (the list path) must agree with the running ones.

#[path = "support/kube_api.rs"]
mod kube_api;
#[path = "support/requirements.rs"]
mod requirements;

mod ipam_support;
#[path = "policy_datastores_support/mod.rs"]
mod policy_datastores_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use starling::policy::engine::Engine;
use starling::policy::inputs::{InputKind, InputUpdate};
use starling::policy::watch;
use starling_policy::explain::{explain, Packet, Verdict};
use starling_policy::program::{PolicyId, PolicyKind, TierDefault};
use starling_policy::validate::Rule;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use ipam_support::etcd::{EtcdServer, ETCD_BINARY};
use kube_api::KubeApiServer;
use policy_datastores_support::scenario::*;
use policy_datastores_support::*;
use requirements::require_program;

const SETTLE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Kube,
    Etcd,
}

/// An engine fed by one datastore's watchers.
struct Watched {
    side: Side,
    engine: Arc<Mutex<Engine>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watched {
    fn start(side: Side, stores: &Datastores) -> Watched {
        let (sink, mut updates) = mpsc::channel::<InputUpdate>(256);
        let (kinds, watchers): (&[InputKind], _) = match side {
            Side::Kube => (
                &InputKind::KUBE,
                watch::spawn_kube(&stores.kube.client(), sink),
            ),
            Side::Etcd => (&InputKind::ETCD, watch::spawn_etcd(&stores.etcd, sink)),
        };
        let engine = Arc::new(Mutex::new(Engine::new(LOCAL_NODE, kinds, INTERFACE_PREFIX)));
        let fed = engine.clone();
        let mut tasks = watchers;
        tasks.push(tokio::spawn(async move {
            while let Some(update) = updates.recv().await {
                fed.lock().unwrap().handle(update);
            }
        }));
        Watched {
            side,
            engine,
            tasks,
        }
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The ID both sides give the Kubernetes policy `namespace/name`: etcd holds it as the Calico
/// NetworkPolicy `knp.default.<name>` (kube-controllers v3.28–v3.31, reference §2.7), which the
/// engine recognises as the converted Kubernetes policy it is.
fn knp(_side: Side, namespace: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::KubernetesNetworkPolicy,
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}

fn calico_np(namespace: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::NetworkPolicy,
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}

/// Both engines' inputs and programs are the same, and each program is
/// what a compilation from scratch gives.
fn assert_same(step: &str, kube: &Engine, etcd: &Engine) {
    for (side, engine) in [("Kubernetes", kube), ("etcd", etcd)] {
        let rejected: Vec<_> = engine.rejected().collect();
        assert!(
            rejected.is_empty(),
            "{step}: the {side} engine rejected {rejected:?}"
        );
        assert_eq!(
            *engine.compiler().program(),
            engine.compiler().recompile(),
            "{step}: the {side} engine's incremental program is not its full compilation"
        );
    }
    let (expected, got) = (kube.compiler().program(), etcd.compiler().program());
    // Part by part, so that a failure names what differs.
    assert_eq!(
        got.endpoints, expected.endpoints,
        "{step}: endpoint programs"
    );
    assert_eq!(got.policies, expected.policies, "{step}: policy programs");
    assert_eq!(got.profiles, expected.profiles, "{step}: profile programs");
    assert_eq!(got.sets, expected.sets, "{step}: sets");
    assert_eq!(got, expected, "{step}: programs");
    // Every endpoint of the cluster (remote ones fill the sets), with its inherited labels.
    let endpoints = |engine: &Engine| {
        let compiler = engine.compiler();
        compiler
            .endpoints()
            .map(|e| (e.clone(), compiler.endpoint_labels(&e.key).cloned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(endpoints(etcd), endpoints(kube), "{step}: endpoints");
    let policies = |engine: &Engine| {
        let mut policies: Vec<_> = engine.compiler().policies().cloned().collect();
        policies.sort_by(|a, b| a.id.cmp(&b.id));
        policies
    };
    assert_eq!(policies(etcd), policies(kube), "{step}: policies");
    let tiers = |e: &Engine| e.compiler().tiers().cloned().collect::<Vec<_>>();
    assert_eq!(tiers(etcd), tiers(kube), "{step}: tiers");
    let profiles = |e: &Engine| e.compiler().profiles().cloned().collect::<Vec<_>>();
    assert_eq!(profiles(etcd), profiles(kube), "{step}: profiles");
}

/// What an engine holds, for a failure message.
fn summary(engine: &Engine) -> String {
    let compiler = engine.compiler();
    let endpoints: Vec<&str> = compiler.endpoints().map(|e| e.key.as_str()).collect();
    let policies: Vec<String> = compiler.policies().map(|p| p.id.to_string()).collect();
    let profiles: Vec<&str> = compiler.profiles().map(|p| p.name.as_str()).collect();
    let tiers: Vec<&str> = compiler.tiers().map(|t| t.name.as_str()).collect();
    let rejected: Vec<_> = engine.rejected().collect();
    format!(
        "in sync {}, endpoints {endpoints:?}, policies {policies:?}, profiles {profiles:?}, \
         tiers {tiers:?}, rejected {rejected:?}",
        engine.in_sync()
    )
}

/// Polls until both engines are in sync and `ready` holds for each, then compares them.
async fn settle(step: &str, kube: &Watched, etcd: &Watched, ready: impl Fn(&Engine, Side) -> bool) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let done = |watched: &Watched| {
            let engine = watched.engine();
            engine.in_sync() && ready(&engine, watched.side)
        };
        let (kube_done, etcd_done) = (done(kube), done(etcd));
        if kube_done && etcd_done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{step}: not settled within {SETTLE:?}\nKubernetes (ready: {kube_done}): {}\n\
             etcd (ready: {etcd_done}): {}",
            summary(&kube.engine()),
            summary(&etcd.engine()),
        );
        // Poll interval while the watchers catch up (not a synchronisation sleep).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_same(step, &kube.engine(), &etcd.engine());
}

/// `(from, to, packet, verdict)` on both engines.
fn assert_verdicts(
    step: &str,
    kube: &Watched,
    etcd: &Watched,
    cases: &[(&str, &str, &str, Verdict)],
) {
    for watched in [kube, etcd] {
        let engine = watched.engine();
        for (from, to, packet, expected) in cases {
            let packet = Packet::parse(packet).unwrap();
            let got = explain(engine.compiler(), from, to, packet)
                .unwrap_or_else(|error| panic!("{step}: explain {from} -> {to}: {error}"))
                .verdict;
            assert_eq!(
                got, *expected,
                "{step}: {from} -> {to} {packet:?} on the {:?} engine",
                watched.side
            );
        }
    }
}

/// What Calico's conversion gives (reference §2.6, §2.7), checked on the stored etcd objects
/// and on what the Kubernetes engine made of the API objects.
fn assert_calico_facts(kube: &Engine, etcd: &Engine, pods: &[Pod]) {
    let (key, stored) = converted_policy(&db_from_web(Vec::new(), Vec::new()));
    assert!(key.ends_with("/projectcalico.org/networkpolicies/shop/knp.default.db-from-web"));
    assert_eq!(stored["metadata"]["name"], "knp.default.db-from-web");
    assert_eq!(stored["spec"]["order"], json!(1000.0));
    assert_eq!(stored["spec"]["tier"], "default");
    assert_eq!(stored["spec"]["types"], json!(["Ingress"]));
    let selector = stored["spec"]["selector"].as_str().unwrap();
    assert!(
        selector.starts_with(r#"projectcalico.org/orchestrator == "k8s" && "#),
        "{selector}"
    );
    let egress = &kubernetes_policies()[2];
    assert_eq!(
        converted_policy(egress).1["spec"]["types"],
        json!(["Ingress", "Egress"])
    );
    for (engine, id) in [
        (kube, knp(Side::Kube, "shop", "db-from-web")),
        (etcd, knp(Side::Etcd, "shop", "db-from-web")),
    ] {
        let policy = engine
            .compiler()
            .policy(&id)
            .unwrap_or_else(|| panic!("no {id}"));
        assert_eq!(
            (policy.tier.as_str(), policy.order),
            ("default", Some(1000.0)),
            "{id}"
        );
    }
    let profiles: BTreeMap<_, _> = kube
        .compiler()
        .profiles()
        .map(|p| (p.name.clone(), p.clone()))
        .collect();
    let shop = &profiles["kns.shop"];
    assert_eq!(shop.ingress, vec![Rule::allow_all()]);
    assert_eq!(shop.egress, vec![Rule::allow_all()]);
    assert_eq!(
        shop.labels_to_apply,
        labels(&[
            ("pcns.env", "prod"),
            ("pcns.team", "blue"),
            ("pcns.kubernetes.io/metadata.name", "shop"),
            ("pcns.projectcalico.org/name", "shop")
        ])
    );
    let frontend = &profiles["ksa.shop.frontend"];
    assert!(frontend.ingress.is_empty() && frontend.egress.is_empty());
    assert_eq!(
        frontend.labels_to_apply,
        labels(&[
            ("pcsa.tier", "web"),
            ("pcsa.projectcalico.org/name", "frontend")
        ])
    );
    let program = kube.compiler().program();
    let (web, legacy) = (&pods[0], &pods[6]);
    let endpoint = &program.endpoints[&web.interface()];
    assert_eq!(endpoint.key, web.key());
    assert_eq!(endpoint.ingress.profiles, ["kns.shop", "ksa.shop.frontend"]);
    // A pod without a service account has its namespace's profile only.
    let endpoint = &program.endpoints[&legacy.interface()];
    assert_eq!(endpoint.egress.profiles, ["kns.tools"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_and_etcd_compile_the_same_cluster_to_the_same_program() {
    let test = "kubernetes_and_etcd_compile_the_same_cluster_to_the_same_program";
    if !require_program(test, ETCD_BINARY) {
        return;
    }
    let (_etcd_server, etcd) = EtcdServer::start().await;
    let stores = Datastores {
        kube: KubeApiServer::start().await,
        etcd,
    };
    let kube = Watched::start(Side::Kube, &stores);
    let etcd = Watched::start(Side::Etcd, &stores);
    settle("empty datastores", &kube, &etcd, |e, _| {
        e.compiler().program().endpoints.is_empty()
    })
    .await;

    let mut pods = pods();
    write_cluster(&stores, &pods).await;
    settle("the cluster written", &kube, &etcd, |e, _| {
        let c = e.compiler();
        (
            c.endpoints().count(),
            c.policies().count(),
            c.profiles().count(),
            c.tiers().count(),
        ) == (7, 7, 7, 1)
    })
    .await;
    {
        let (k, e) = (kube.engine(), etcd.engine());
        let program = k.compiler().program();
        assert_eq!(program.endpoints.len(), 5, "the five local pods");
        assert_eq!(
            program.policies.len(),
            7,
            "every policy applies to some local pod"
        );
        assert!(
            program.sets.values().any(|m| *m != Default::default()),
            "sets have members"
        );
        assert_calico_facts(&k, &e, &pods);
    }
    use Verdict::{Allow, Deny};
    assert_verdicts(
        "the cluster written",
        &kube,
        &etcd,
        &[
            ("tools/probe-1", "shop/web-1", "TCP/9090", Allow),
            // The sidecar's named port.
            ("tools/probe-1", "shop/web-1", "TCP/9901", Allow),
            ("tools/probe-1", "shop/web-1", "TCP/8080", Deny),
            ("192.168.2.5", "shop/web-1", "TCP/443", Allow),
            ("192.168.1.5", "shop/web-1", "TCP/443", Deny),
            ("198.51.100.7", "shop/web-1", "TCP/443", Deny),
            ("shop/cache-1", "shop/web-1", "TCP/8085", Deny),
            ("shop/cache-1", "shop/db-1", "TCP/5432", Deny),
            ("192.168.2.5", "shop/cache-1", "TCP/443", Deny),
            ("shop/db-1", "shop/web-1", "TCP/8085", Allow),
            ("shop/web-1", "shop/db-1", "TCP/5432", Allow),
            ("shop/web-1", "shop/db-1", "TCP/5433", Deny),
            ("tools/probe-1", "shop/db-1", "TCP/5432", Allow),
            ("shop/web-1", "tools/probe-1", "TCP/9100", Deny),
        ],
    );

    // A pod label: cache-1 becomes a web pod (kube-controllers copy pod labels to the WEP).
    pods[2].labels = labels(&[("app", "web"), ("version", "v3")]);
    stores.pod(&pods[2]).await;
    settle("a pod relabelled", &kube, &etcd, |e, _| {
        e.compiler()
            .endpoint_labels("shop/cache-1")
            .and_then(|l| l.get("app"))
            .map(String::as_str)
            == Some("web")
    })
    .await;
    assert_verdicts(
        "a pod relabelled",
        &kube,
        &etcd,
        &[
            ("shop/cache-1", "shop/db-1", "TCP/5432", Allow),
            ("192.168.2.5", "shop/cache-1", "TCP/443", Allow),
        ],
    );

    // A namespace label (its kns. profile in etcd): tools leaves team red.
    stores
        .namespace("tools", &labels(&[("team", "green")]))
        .await;
    settle("a namespace relabelled", &kube, &etcd, |e, _| {
        e.compiler().profiles().any(|p| {
            p.name == "kns.tools"
                && p.labels_to_apply.get("pcns.team").map(String::as_str) == Some("green")
        })
    })
    .await;
    assert_verdicts(
        "a namespace relabelled",
        &kube,
        &etcd,
        &[
            ("tools/probe-1", "shop/web-1", "TCP/9090", Deny),
            ("tools/probe-1", "shop/db-1", "TCP/5432", Deny),
        ],
    );

    // A policy edited (a namespace peer and a port range more) and the tier's default action.
    stores
        .kubernetes_policy(&db_from_web(
            vec![json!({"namespaceSelector": {"matchLabels": {"team": "green"}}})],
            vec![json!({"port": 5440, "endPort": 5450})],
        ))
        .await;
    stores.calico(&security_tier("Pass")).await;
    settle("a policy and a tier edited", &kube, &etcd, |e, side| {
        let c = e.compiler();
        c.policy(&knp(side, "shop", "db-from-web"))
            .is_some_and(|p| p.ingress.len() == 2)
            && c.tiers()
                .any(|t| t.name == "security" && t.default_action == TierDefault::Pass)
    })
    .await;
    assert_verdicts(
        "a policy edited",
        &kube,
        &etcd,
        &[
            ("tools/probe-1", "shop/db-1", "TCP/5432", Allow),
            ("tools/probe-1", "shop/db-1", "TCP/5445", Deny),
        ],
    );

    // Policies deleted: a Kubernetes one and the Calico one.
    stores.delete_kubernetes_policy("shop", "web-ingress").await;
    stores
        .delete_calico("NetworkPolicy", Some("shop"), "ops-to-db")
        .await;
    settle("policies deleted", &kube, &etcd, |e, side| {
        let c = e.compiler();
        c.policy(&knp(side, "shop", "web-ingress")).is_none()
            && c.policy(&calico_np("shop", "ops-to-db")).is_none()
    })
    .await;
    assert_verdicts(
        "policies deleted",
        &kube,
        &etcd,
        &[
            ("tools/probe-1", "shop/db-1", "TCP/5445", Allow),
            ("192.168.2.5", "shop/web-1", "TCP/443", Deny),
        ],
    );

    // Pods deleted: a local one and a remote one.
    stores.delete_pod(&pods[1]).await;
    stores.delete_pod(&pods[5]).await;
    settle("pods deleted", &kube, &etcd, |e, _| {
        let c = e.compiler();
        c.endpoint("shop/db-1").is_none() && c.endpoint("tools/dns-1").is_none()
    })
    .await;
    assert_eq!(kube.engine().compiler().program().endpoints.len(), 4);

    // Engines started now list what the running ones watched: the same programs.
    let kube_again = Watched::start(Side::Kube, &stores);
    let etcd_again = Watched::start(Side::Etcd, &stores);
    settle("listed afresh", &kube_again, &etcd_again, |e, _| {
        e.compiler().endpoints().count() == 5
    })
    .await;
    for (running, fresh) in [(&kube, &kube_again), (&etcd, &etcd_again)] {
        assert_eq!(
            *running.engine().compiler().program(),
            *fresh.engine().compiler().program(),
            "{:?}: watched and listed programs differ",
            running.side
        );
    }
}
