//! The only way a test may skip. A test that needs root, a program or a kernel feature asks
//! here first (`if !require_root("name") { return; }`). Outside CI a missing requirement prints
//! `SKIP <test>: <reason>` to stderr (past the harness's capture) and the test returns; with `CI`
//! set (`.ci/run` sets it) it fails naming what is missing, so CI cannot pass by skipping. The
//! one exception is a kernel feature the host kernel cannot provide: that skip is allowed in CI
//! too, always with its reason (tests/skip_points.rs keeps the list of such features short and
//! rejects every other way of skipping).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Whether `CI` is set to something other than empty, "false" or "0".
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

/// How `in_ci` reads the value of `CI` (`None` when unset).
pub fn ci_value_means_ci(value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(value) => {
            let value = value.trim();
            !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
        }
    }
}

fn unmet(test: &str, missing: &str) -> bool {
    unmet_in(in_ci(), test, missing)
}

/// Skips (false, with the reason on stderr) outside CI; fails the test in CI.
pub fn unmet_in(ci: bool, test: &str, missing: &str) -> bool {
    if ci {
        panic!("{test}: {missing}; CI is set, so this test must run here rather than skip");
    }
    say(&format!("SKIP {test}: {missing}"));
    false
}

/// Writes to the real stderr: the test harness captures `eprintln!` of passing tests, and a skip
/// must be visible without `--nocapture`.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// True when running as root (network namespaces need it).
pub fn require_root(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        true
    } else {
        unmet(test, "needs root (it creates network namespaces)")
    }
}

/// Where `program` is: a path containing `/` is taken as is, a bare name is looked up in `PATH`.
/// Only executable regular files count.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// True when `program` (a name in `PATH` or an absolute path) is installed.
pub fn require_program(test: &str, program: &str) -> bool {
    require_programs(test, &[program])
}

/// True when every one of `programs` is installed; otherwise names all the missing ones.
pub fn require_programs(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| find_program(program).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    unmet(
        test,
        &format!("needs {} (not found; PATH is {path:?})", missing.join(", ")),
    )
}

/// True when `check` passes; otherwise its error says what is missing (skip outside CI, failure
/// in CI). For requirements that are neither root nor a program, such as a bootable test VM.
pub fn require(test: &str, check: impl FnOnce() -> Result<(), String>) -> bool {
    match check() {
        Ok(()) => true,
        Err(missing) => unmet(test, &missing),
    }
}

/// True when `probe` finds the kernel feature; otherwise prints why and returns false, in CI too:
/// a test machine's kernel may lack a module nobody can install from inside it. `probe` returns
/// the kernel's own error so the skip says what actually happened.
pub fn require_kernel_feature(
    test: &str,
    feature: &str,
    probe: impl FnOnce() -> Result<(), String>,
) -> bool {
    match probe() {
        Ok(()) => true,
        // The guest (scripts/vm-test.sh) boots Debian's kernel, which has every feature a test
        // asks for: missing there is a failure, not a skip.
        Err(reason) if std::env::var_os("VM_TEST_GUEST").is_some_and(|value| value == "1") => {
            panic!("{test}: the guest kernel has no {feature}: {reason}")
        }
        Err(reason) => {
            let scope = if in_ci() {
                " (allowed in CI: the host kernel cannot provide it)"
            } else {
                ""
            };
            say(&format!(
                "SKIP {test}: this kernel has no {feature}: {reason}{scope}"
            ));
            false
        }
    }
}
