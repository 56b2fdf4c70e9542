//! scripts/vm-test.sh, the QEMU runner for tests that need the guest's Debian kernel: a command
//! runs as root in the guest with the caller's directory and environment, its output and exit
//! status come back, a timeout kills the VM, and a missing kernel or a guest panic fail clearly
//! and quickly. Each test gets its own TMPDIR and checks that nothing is left in it.

#[path = "support/requirements.rs"]
mod requirements;
#[path = "support/vm.rs"]
mod vm;
use requirements::{require, require_root};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Boot (about 10-15 s under TCG) plus a short command, with room for a loaded host.
const BOOT_LIMIT: Duration = Duration::from_secs(180);

/// A private TMPDIR (the runner's work dir and failure logs go there), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("vm-runner-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn guest_kernel_version() -> Option<String> {
    let newest = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .max()?;
    Some(newest)
}

#[test]
fn command_runs_in_the_guest_with_cwd_env_and_exit_status() {
    if !require_root("command_runs_in_the_guest_with_cwd_env_and_exit_status")
        || !require(
            "command_runs_in_the_guest_with_cwd_env_and_exit_status",
            vm::check,
        )
    {
        return;
    }
    let tmp = TempDir::new("cmd");
    let cwd = env!("CARGO_MANIFEST_DIR");
    let script = "echo cwd=$(pwd); echo value=$VM_RUNNER_TEST_VALUE; echo uid=$(id -u); \
                  echo kernel=$(uname -r); echo guest=$VM_TEST_GUEST; \
                  ip link add t0 type ipip remote 192.0.2.1 && echo ipip=yes; \
                  echo to-stderr >&2; exit 7";
    let out = vm::run_captured(
        &["--", "sh", "-c", script],
        &[
            ("TMPDIR", tmp.path()),
            ("VM_RUNNER_TEST_VALUE", "a b 'c' $d"),
        ],
        BOOT_LIMIT,
    );
    eprintln!("{}{}(in {:.1?})", out.stdout, out.stderr, out.elapsed);
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert!(out.stdout.contains(&format!("cwd={cwd}\n")), "{out:?}");
    assert!(out.stdout.contains("value=a b 'c' $d\n"), "{out:?}");
    assert!(out.stdout.contains("uid=0\n"), "{out:?}");
    assert!(out.stdout.contains("guest=1\n"), "{out:?}");
    // The guest runs the Debian kernel, whose ipip module this host's kernel may lack.
    assert!(out.stdout.contains("ipip=yes\n"), "{out:?}");
    if let Some(version) = guest_kernel_version() {
        assert!(
            out.stdout.contains(&format!("kernel={version}\n")),
            "{out:?}"
        );
        assert!(
            out.stderr
                .contains(&format!("vm-test: guest kernel {version}")),
            "{out:?}"
        );
    }
    assert!(out.stderr.contains("to-stderr\n"), "{out:?}");
    assert!(!out.stdout.contains("to-stderr"), "{out:?}");
    assert_eq!(tmp.entries(), Vec::<String>::new(), "left behind");
}

#[test]
fn timeout_kills_the_vm_after_streaming_its_output() {
    if !require_root("timeout_kills_the_vm_after_streaming_its_output")
        || !require("timeout_kills_the_vm_after_streaming_its_output", vm::check)
    {
        return;
    }
    let tmp = TempDir::new("timeout");
    let log_dir = Path::new(tmp.path()).join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    let out = vm::run_captured(
        &[
            "--timeout",
            "40",
            "--",
            "sh",
            "-c",
            "echo before-sleep; sleep 600; echo after-sleep",
        ],
        &[
            ("TMPDIR", tmp.path()),
            ("VM_LOG_DIR", log_dir.to_str().unwrap()),
        ],
        BOOT_LIMIT,
    );
    eprintln!("{}{}(in {:.1?})", out.stdout, out.stderr, out.elapsed);
    assert_eq!(out.code(), Some(vm::EXIT_TIMEOUT), "{out:?}");
    assert!(out.stdout.contains("before-sleep"), "{out:?}");
    assert!(!out.stdout.contains("after-sleep"), "{out:?}");
    assert!(out.stderr.contains("timed out after 40s"), "{out:?}");
    assert!(out.elapsed < Duration::from_secs(60), "{out:?}");
    // Only the kept kernel log, in VM_LOG_DIR.
    assert_eq!(tmp.entries(), vec!["logs".to_string()], "left behind");
}

#[test]
fn guest_panic_fails_clearly() {
    if !require_root("guest_panic_fails_clearly")
        || !require("guest_panic_fails_clearly", vm::check)
    {
        return;
    }
    let tmp = TempDir::new("panic");
    let log_dir = Path::new(tmp.path()).join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    let out = vm::run_captured(
        &["--", "sh", "-c", "echo c > /proc/sysrq-trigger; sleep 600"],
        &[
            ("TMPDIR", tmp.path()),
            ("VM_LOG_DIR", log_dir.to_str().unwrap()),
        ],
        BOOT_LIMIT,
    );
    eprintln!("{}{}(in {:.1?})", out.stdout, out.stderr, out.elapsed);
    assert_eq!(out.code(), Some(vm::EXIT_VM_FAILED), "{out:?}");
    assert!(
        out.stderr
            .contains("the guest kernel panicked: Kernel panic - not syncing"),
        "{out:?}"
    );
    assert!(out.stderr.contains("last lines of the guest kernel log"));
    let logs: Vec<_> = std::fs::read_dir(&log_dir).unwrap().collect();
    assert_eq!(logs.len(), 1, "one kept kernel log");
    assert_eq!(tmp.entries(), vec!["logs".to_string()], "left behind");
}

#[test]
fn missing_kernel_image_fails_at_once() {
    if !require_root("missing_kernel_image_fails_at_once") {
        return;
    }
    let tmp = TempDir::new("nokernel");
    let out = vm::run_captured(
        &["--", "true"],
        &[
            ("TMPDIR", tmp.path()),
            ("VM_KERNEL", "/nonexistent/vmlinuz-0.0"),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), Some(vm::EXIT_VM_FAILED), "{out:?}");
    assert!(
        out.stderr
            .contains("no guest kernel image at VM_KERNEL=/nonexistent/vmlinuz-0.0"),
        "{out:?}"
    );
    assert!(out.elapsed < Duration::from_secs(30), "{out:?}");
    assert_eq!(tmp.entries(), Vec::<String>::new(), "left behind");
}
