//! Floating IP NATs in a real kernel: the tables Starling writes are read back as written, a
//! pass over a correct ruleset writes nothing, a change is made by elements, and the last
//! floating IP takes its table along.

#[path = "support/requirements.rs"]
mod requirements;

use std::net::IpAddr;

use requirements::{require_program, require_root};
use starling::dataplane::floating::{self, Installed};
use starling::netns;
use starling_calc::floating::floating_ips;
use starling_calc::spec::FloatingIps;
use starling_model::IpNat;

fn wanted(pairs: &[(&str, &str)]) -> FloatingIps {
    floating_ips(pairs.iter().map(|(internal, external)| IpNat {
        internal: internal.parse::<IpAddr>().unwrap(),
        external: external.parse::<IpAddr>().unwrap(),
    }))
}

#[test]
fn floating_ip_tables_round_trip_and_idle_resyncs_write_nothing() {
    let test = "floating_ip_tables_round_trip_and_idle_resyncs_write_nothing";
    if !require_root(test) || !require_program(test, "nft") {
        return;
    }
    let guard = netns::create(&netns::unique_name("stl-fip")).unwrap();
    netns::run_in(guard.name(), || {
        assert_eq!(floating::read().unwrap(), Installed::default());
        let first = wanted(&[
            ("10.244.0.5", "10.244.200.1"),
            ("fd00:244::5", "fd00:200::1"),
        ]);
        assert!(floating::apply(&first, &Installed::default()).unwrap() > 0);
        let installed = floating::read().unwrap();
        assert_eq!(installed, Installed::after(&first));
        // A resync of the correct ruleset: read back, nothing to write.
        assert_eq!(floating::apply(&first, &installed).unwrap(), 0);

        // One more floating IP for the pod, the IPv6 one gone: element changes and one delete.
        let second = wanted(&[
            ("10.244.0.5", "10.244.200.1"),
            ("10.244.0.6", "10.244.200.2"),
        ]);
        let writes = floating::apply(&second, &installed).unwrap();
        assert_eq!(writes, 3, "two additions and the ip6 table's removal");
        let installed = floating::read().unwrap();
        assert_eq!(installed, Installed::after(&second));
        assert!(installed.v6.is_none());

        // A rule removed behind Starling's back is repaired by rebuilding the table.
        let status = std::process::Command::new("nft")
            .args(["flush", "chain", "ip", "starling-fip", "output"])
            .status()
            .unwrap();
        assert!(status.success());
        let damaged = floating::read().unwrap();
        assert!(!damaged.v4.as_ref().unwrap().complete);
        assert!(floating::apply(&second, &damaged).unwrap() > 0);
        assert_eq!(floating::read().unwrap(), Installed::after(&second));

        assert_eq!(
            floating::apply(&FloatingIps::default(), &Installed::after(&second)).unwrap(),
            1
        );
        assert_eq!(floating::read().unwrap(), Installed::default());
    })
    .unwrap();
}
