//! The lab suite once more, on Debian's 6.1 kernel in a QEMU guest (scripts/vm-test.sh): this test
//! binary re-runs itself there, all of its tests but this one, in one VM boot. That proves
//! Starling on the kernel many clusters run, and runs the tests that need what this host's kernel
//! may lack (ipip).
//!
//! `STARLING_GUEST_FILTER='ipip mtu'` passes those test-name filters to the guest run (default:
//! every test); `STARLING_GUEST_THREADS` sets its `--test-threads` (default 2).

use std::time::{Duration, Instant};

use super::requirements::{require, require_root};
use super::vm;

/// Kills the VM if the guest run hangs (CI's budget for the whole VM part is 15 minutes).
const GUEST_TIMEOUT_SECONDS: u64 = 1500;

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
    let mut args = vec!["--timeout", &timeout, "--", &exe, "--nocapture"];
    args.extend(["--test-threads", &threads, "--skip", "guest_kernel::"]);
    args.extend(filter.split_whitespace());
    eprintln!(
        "lab_suite_on_guest_kernel: scripts/vm-test.sh {}",
        args.join(" ")
    );
    let started = Instant::now();
    let status = vm::run_streamed(&args, &[], Duration::from_secs(GUEST_TIMEOUT_SECONDS + 60));
    eprintln!(
        "lab_suite_on_guest_kernel: guest run {status} after {:.1?}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "the lab suite failed on the guest kernel ({status}); its output is above"
    );
}
