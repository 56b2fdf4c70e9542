//! Interface and global sysctls (reference §5.7), written through /proc/sys.
//!
//! Contract: values are read first and written only when different, so a steady state makes
//! no writes. /proc/sys/net belongs to the network namespace of the calling thread: call this
//! from the thread that runs the dataplane of the namespace you mean.

use std::path::{Path, PathBuf};

use starling_calc::spec::{Desired, SysctlValue};

pub const PROC_SYS: &str = "/proc/sys";

#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes made and failures met by one pass.
#[derive(Debug, Default)]
pub struct SysctlReport {
    pub writes: usize,
    pub errors: Vec<SysctlError>,
}

fn full_path(root: &Path, relative: &str) -> PathBuf {
    root.join(relative)
}

fn read(path: &Path) -> Result<String, SysctlError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|source| SysctlError {
            path: path.to_path_buf(),
            source,
        })
}

fn ensure(path: &Path, value: &str, report: &mut SysctlReport) {
    match read(path) {
        Ok(current) if current == value => {}
        Ok(_) => match std::fs::write(path, value) {
            Ok(()) => report.writes += 1,
            Err(source) => report.errors.push(SysctlError {
                path: path.to_path_buf(),
                source,
            }),
        },
        Err(error) => report.errors.push(error),
    }
}

/// Applies the global switches and the per-interface settings of `desired` under `root`
/// (normally [`PROC_SYS`]; tests may point it elsewhere).
pub fn apply(desired: &Desired, root: &Path) -> SysctlReport {
    let mut report = SysctlReport::default();
    for (relative, value) in &desired.global_sysctls {
        ensure(&full_path(root, relative), value, &mut report);
    }
    if desired.interface_sysctls.is_empty() {
        return report;
    }
    let default_rp_filter = read(&full_path(root, "net/ipv4/conf/default/rp_filter"))
        .unwrap_or_else(|_| "1".to_string());
    for settings in desired.interface_sysctls.values() {
        for (relative, value) in settings {
            let value = match value {
                SysctlValue::Fixed(text) => *text,
                SysctlValue::DefaultRpFilter => default_rp_filter.as_str(),
            };
            ensure(&full_path(root, relative), value, &mut report);
        }
    }
    for error in &report.errors {
        tracing::warn!(%error, "could not apply sysctl");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_calc::desired::workload_interface_sysctls;

    #[test]
    fn writes_only_differences_and_copies_rp_filter() {
        let root = tempfile::tempdir().unwrap();
        let mut desired = Desired::empty(81);
        desired
            .global_sysctls
            .insert("net/ipv4/ip_forward".to_string(), "1".to_string());
        desired.interface_sysctls.insert(
            "cali1".to_string(),
            workload_interface_sysctls("cali1", false),
        );
        for (relative, _) in workload_interface_sysctls("cali1", false)
            .iter()
            .chain([("net/ipv4/ip_forward".to_string(), SysctlValue::Fixed("0"))].iter())
            .chain(
                [(
                    "net/ipv4/conf/default/rp_filter".to_string(),
                    SysctlValue::Fixed("2"),
                )]
                .iter(),
            )
        {
            let path = root.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "0\n").unwrap();
        }
        std::fs::write(root.path().join("net/ipv4/conf/default/rp_filter"), "2\n").unwrap();
        let report = apply(&desired, root.path());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        // ip_forward, route_localnet, proxy_arp, forwarding, rp_filter (accept_ra and
        // proxy_delay already 0).
        assert_eq!(report.writes, 5);
        let read_back =
            |relative: &str| std::fs::read_to_string(root.path().join(relative)).unwrap();
        assert_eq!(read_back("net/ipv4/conf/cali1/rp_filter"), "2");
        assert_eq!(read_back("net/ipv4/conf/cali1/proxy_arp"), "1");
        assert_eq!(apply(&desired, root.path()).writes, 0);
    }
}
