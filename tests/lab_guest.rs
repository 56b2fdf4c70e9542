//! The lab suite once more, on Debian's 6.1 kernel in a QEMU guest (scripts/vm-test.sh): one VM
//! boot runs the `lab_e2e` test binary's core tests there (VXLAN, BGP mesh, route reflector,
//! natOutgoing, node restart) and the ones that need what this host's kernel may lack (IPIP,
//! IPIP and VXLAN CrossSubnet). That proves Starling on the kernel many clusters run.
//!
//! A test binary of its own so that cargo runs it after `lab_e2e`, alone: the guest is emulated
//! (TCG, one host thread per guest CPU) and gets both cores instead of sharing them with the
//! host's lab tests.
//!
//! The same boot runs the tests of other test binaries that need a kernel feature this host may
//! lack (`GUEST_ONLY`), so no ipip test is left skipped in CI.
//!
//! `STARLING_GUEST_FILTER='ipip mtu'` replaces the test-name filters of the guest run of `lab_e2e`
//! (`all`: every test); `STARLING_GUEST_THREADS` sets its `--test-threads` (default 2).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "support/requirements.rs"]
mod requirements;
#[path = "support/vm.rs"]
mod vm;

use requirements::{require, require_root};

/// The `lab_e2e` tests the guest runs by default (libtest filters: a test runs when its name
/// contains one). The rest of the lab suite (dual stack, policy, no-flap, `ipam check`,
/// nodeSelector pools) exercises the daemon, not the kernel, and runs on the host only: the
/// emulated guest takes about 20 times longer per lab.
const GUEST_DEFAULT_FILTERS: &[&str] = &[
    "vxlan_three_nodes_full_matrix_and_mtu",
    "bgp_full_mesh_routes_learned_over_bgp",
    "bgp_route_reflector_clients_peer_only_with_the_reflector",
    "nat_outgoing_shows_the_node_address_outside",
    "node_restart_keeps_traffic_and_converges",
    "cross_subnet::",
    "ipip::",
];

/// Kills the VM if the guest run hangs (the default selection takes about 9 minutes here; CI's
/// budget for the whole VM part is 15 minutes).
const GUEST_TIMEOUT_SECONDS: u64 = 1500;

/// `lab up`'s wait for the daemons' readiness in the guest: emulated, a debug daemon takes a
/// minute or more to start (90 s on the host, where it takes a second).
const GUEST_LAB_READY_SECONDS: &str = "300";

/// Tests of other test binaries (cargo's target name, exact test name) that call
/// `require_kernel_feature` for something the guest kernel has (ipip).
const GUEST_ONLY: &[(&str, &str)] = &[(
    "dataplane_drift",
    "tunl0_and_its_routes_on_a_kernel_with_ipip",
)];

/// The newest test binary cargo built for target `name` next to `this` one
/// (`<target>/<profile>/deps/<name>-<hash>`).
fn sibling_test_binary(this: &Path, name: &str) -> Result<PathBuf, String> {
    let deps = this.parent().ok_or("the test binary has no directory")?;
    let prefix = format!("{name}-");
    let entries = std::fs::read_dir(deps).map_err(|err| format!("reading {deps:?}: {err}"))?;
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            file.strip_prefix(&prefix)
                .is_some_and(|hash| hash.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max()
        .map(|(_, path)| path)
        .ok_or_else(|| {
            format!(
                "needs the {name} test binary in {} (build it: cargo test --no-run --test {name})",
                deps.display()
            )
        })
}

/// One shell command for the guest: this binary's suite, then each guest-only test; the status
/// is the first failure's.
const GUEST_SCRIPT: &str = r#"status=0
suite=$1; shift
"$suite" "$@" || status=$?
for only in $GUEST_ONLY_TESTS; do
    binary=${only%%:*}; test=${only#*:}
    echo "guest-only test $test of $binary"
    "$binary" --exact "$test" --nocapture || status=$?
done
exit $status"#;

#[test]
fn lab_suite_on_guest_kernel() {
    assert!(
        !vm::in_guest(),
        "lab_guest ran inside the guest: never nest VMs"
    );
    if !require_root("lab_suite_on_guest_kernel")
        || !require("lab_suite_on_guest_kernel", vm::check)
    {
        return;
    }
    let this = std::env::current_exe().expect("the test binary's path");
    let lab_e2e = sibling_test_binary(&this, "lab_e2e");
    if !require("lab_suite_on_guest_kernel", || lab_e2e.clone().map(drop)) {
        return;
    }
    let exe = lab_e2e.expect("checked just above").display().to_string();
    let threads = std::env::var("STARLING_GUEST_THREADS").unwrap_or_else(|_| "2".to_string());
    let filter = std::env::var("STARLING_GUEST_FILTER").unwrap_or_default();
    let timeout = GUEST_TIMEOUT_SECONDS.to_string();
    let mut others = Vec::new();
    for (binary, test) in GUEST_ONLY {
        // Not built (a `cargo test --test lab_e2e` alone): skipped outside CI, a failure in CI.
        match sibling_test_binary(&this, binary) {
            Ok(path) => others.push(format!("{}:{test}", path.display())),
            Err(missing) => {
                require(test, || Err(missing));
            }
        }
    }
    let mut suite_args = vec!["--nocapture", "--test-threads", &threads];
    match filter.trim() {
        "" => suite_args.extend(GUEST_DEFAULT_FILTERS),
        "all" => {}
        chosen => suite_args.extend(chosen.split_whitespace()),
    }
    let mut args = vec![
        "--timeout",
        &timeout,
        "--",
        "sh",
        "-c",
        GUEST_SCRIPT,
        "guest",
        &exe,
    ];
    args.extend(suite_args);
    let others = others.join(" ");
    eprintln!(
        "lab_suite_on_guest_kernel: GUEST_ONLY_TESTS='{others}' scripts/vm-test.sh {}",
        args.join(" ")
    );
    let started = Instant::now();
    let status = vm::run_streamed(
        &args,
        &[
            ("GUEST_ONLY_TESTS", &others),
            ("STARLING_LAB_READY_SECONDS", GUEST_LAB_READY_SECONDS),
        ],
        Duration::from_secs(GUEST_TIMEOUT_SECONDS + 60),
    );
    eprintln!(
        "lab_suite_on_guest_kernel: guest run {status} after {:.1?}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "the lab suite failed on the guest kernel ({status}); its output is above"
    );
}
