//! Test-only helpers to run commands in a QEMU guest booting Debian's kernel (scripts/vm-test.sh),
//! for tests that need kernel features the host's kernel may lack (ipip, wireguard).

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Exit status of scripts/vm-test.sh when its `--timeout` killed the VM.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit status of scripts/vm-test.sh when the VM itself failed (no kernel, panic, ...).
pub const EXIT_VM_FAILED: i32 = 125;

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/vm-test.sh")
}

/// True inside a vm-test guest (the runner sets VM_TEST_GUEST there).
pub fn in_guest() -> bool {
    std::env::var_os("VM_TEST_GUEST").is_some()
}

/// Whether a VM can be booted here: the runner's `--check` (which installs missing packages)
/// passes; otherwise its reason. Tests ask through `requirements::require` (after
/// `require_root`: QEMU shares the host's root with the guest), which fails in CI.
pub fn check() -> Result<(), String> {
    match Command::new(script()).arg("--check").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "needs a bootable test VM: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Err(format!("cannot run {}: {err}", script().display())),
    }
}

/// What one run of the runner produced.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs scripts/vm-test.sh with `args` and extra environment, capturing its output; kills it
/// (its traps take the VM down) and panics if it is still running after `limit`.
pub fn run_captured(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut child = Command::new(script())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("running {}: {err}", script().display()));
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let status = wait_with_limit(&mut child, limit);
    Outcome {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Runs scripts/vm-test.sh with `args`, its output going straight to this process's stdout and
/// stderr (so it streams into the test log); same limit as `run_captured`.
pub fn run_streamed(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> ExitStatus {
    let mut child = Command::new(script())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("running {}: {err}", script().display()));
    wait_with_limit(&mut child, limit)
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                // SIGTERM: the runner's trap stops QEMU and removes its temp dir.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
                panic!("scripts/vm-test.sh still running after {limit:?}; stopped it");
            }
            Err(err) => panic!("waiting for scripts/vm-test.sh: {err}"),
        }
    }
}
