//! Pool selection (§4.2): explicit pools as-is, automatic pools, allowed uses, errors.

use starling_ipam::pools::{select_pools, IpFamily, NamespaceInfo, PoolError, PoolReference};
use starling_model::{AllowedUse, AssignmentMode};

mod ipam_support;
use ipam_support::{node, pool};

fn names(pools: &[starling_model::IpPool]) -> Vec<&str> {
    pools.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn automatic_selection_skips_disabled_deleting_manual_and_other_uses() {
    let mut disabled = pool("b-disabled", "10.2.0.0/16", 26);
    disabled.disabled = true;
    let mut deleting = pool("c-deleting", "10.3.0.0/16", 26);
    deleting.deleting = true;
    let mut manual = pool("d-manual", "10.4.0.0/16", 26);
    manual.assignment_mode = AssignmentMode::Manual;
    let mut tunnel_only = pool("e-tunnel", "10.5.0.0/16", 26);
    tunnel_only.allowed_uses = [AllowedUse::Tunnel].into_iter().collect();
    let all = vec![
        pool("z-last", "10.9.0.0/16", 26),
        pool("a-first", "10.1.0.0/16", 26),
        disabled,
        deleting,
        manual,
        tunnel_only,
        pool("v6", "fd00::/48", 122),
    ];
    let namespace = NamespaceInfo {
        name: "default".into(),
        labels: Default::default(),
    };
    let chosen = select_pools(
        &all,
        &[],
        IpFamily::V4,
        &node("n"),
        Some(&namespace),
        AllowedUse::Workload,
    )
    .unwrap();
    assert_eq!(names(&chosen), ["a-first", "z-last"], "sorted by name");
    let tunnel = select_pools(
        &all,
        &[],
        IpFamily::V4,
        &node("n"),
        None,
        AllowedUse::Tunnel,
    )
    .unwrap();
    assert_eq!(names(&tunnel), ["a-first", "e-tunnel", "z-last"]);
    let v6 = select_pools(
        &all,
        &[],
        IpFamily::V6,
        &node("n"),
        None,
        AllowedUse::Workload,
    )
    .unwrap();
    assert_eq!(names(&v6), ["v6"]);
    let error = select_pools(
        &all,
        &[],
        IpFamily::V4,
        &node("n"),
        Some(&namespace),
        AllowedUse::LoadBalancer,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "no IPv4 pool allows use LoadBalancer for node n and namespace default"
    );
}

#[test]
fn explicit_pools_are_used_as_is() {
    let mut manual = pool("manual", "10.4.0.0/16", 26);
    manual.assignment_mode = AssignmentMode::Manual;
    let mut off = pool("off", "10.6.0.0/16", 26);
    off.disabled = true;
    let all = vec![
        pool("auto", "10.1.0.0/16", 26),
        manual,
        off,
        pool("v6", "fd00::/48", 122),
    ];
    let by_name = [PoolReference::parse("manual")];
    assert_eq!(
        names(
            &select_pools(
                &all,
                &by_name,
                IpFamily::V4,
                &node("n"),
                None,
                AllowedUse::Workload
            )
            .unwrap()
        ),
        ["manual"]
    );
    let by_cidr = [PoolReference::parse("10.1.0.0/16")];
    assert_eq!(
        names(
            &select_pools(
                &all,
                &by_cidr,
                IpFamily::V4,
                &node("n"),
                None,
                AllowedUse::Workload
            )
            .unwrap()
        ),
        ["auto"]
    );
    let cases = [
        ("ghost", PoolError::NotFound("ghost".into())),
        ("off", PoolError::Disabled("off".into())),
        (
            "v6",
            PoolError::WrongFamily {
                pool: "v6".into(),
                actual: 6,
                wanted: 4,
            },
        ),
    ];
    for (reference, expected) in cases {
        let error = select_pools(
            &all,
            &[PoolReference::parse(reference)],
            IpFamily::V4,
            &node("n"),
            None,
            AllowedUse::Workload,
        )
        .unwrap_err();
        assert_eq!(error, expected);
    }
}
