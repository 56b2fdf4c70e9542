//! The lab suite once more, on Debian's 6.1 kernel in a QEMU guest (scripts/vm-test.sh): this test
//! binary re-runs itself there, all of its tests but this one, in one VM boot. That proves
//! Starling on the kernel many clusters run, and runs the tests that need what this host's kernel
//! may lack (ipip).
//!
//! The same boot runs the tests of other test binaries that need a kernel feature this host may
//! lack (`GUEST_ONLY`), so no ipip test is left skipped in CI.
//!
//! `STARLING_GUEST_FILTER='ipip mtu'` passes those test-name filters to the guest run of this
//! binary (default: every test); `STARLING_GUEST_THREADS` sets its `--test-threads` (default 2).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::requirements::{require, require_root};
use super::vm;

/// Kills the VM if the guest run hangs (CI's budget for the whole VM part is 15 minutes).
const GUEST_TIMEOUT_SECONDS: u64 = 1500;

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
    // Inside the guest this binary runs with `--skip guest_kernel::`; never nest VMs.
    assert!(!vm::in_guest(), "guest_kernel:: ran inside the guest");
    if !require_root("lab_suite_on_guest_kernel")
        || !require("lab_suite_on_guest_kernel", vm::check)
    {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let exe = exe.to_str().expect("a UTF-8 test binary path").to_string();
    let threads = std::env::var("STARLING_GUEST_THREADS").unwrap_or_else(|_| "2".to_string());
    let filter = std::env::var("STARLING_GUEST_FILTER").unwrap_or_default();
    let timeout = GUEST_TIMEOUT_SECONDS.to_string();
    let mut others = Vec::new();
    for (binary, test) in GUEST_ONLY {
        // Not built (a `cargo test --test lab_e2e` alone): skipped outside CI, a failure in CI.
        match sibling_test_binary(Path::new(&exe), binary) {
            Ok(path) => others.push(format!("{}:{test}", path.display())),
            Err(missing) => {
                require(test, || Err(missing));
            }
        }
    }
    let mut suite_args = vec![
        "--nocapture",
        "--test-threads",
        &threads,
        "--skip",
        "guest_kernel::",
    ];
    suite_args.extend(filter.split_whitespace());
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
        &[("GUEST_ONLY_TESTS", &others)],
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
