//! The MTU file for the CNI plugin (reference §5.6); the MTU itself is decided by
//! `starling_calc::mtu`.
//!
//! Contract: [`write_mtu_file`] replaces the file atomically (write to a temporary sibling, then
//! rename).

use std::io::Write;
use std::path::Path;

/// Where Felix writes the pod MTU (decimal, no newline).
pub const MTU_FILE: &str = "/var/lib/calico/mtu";

/// Writes the pod MTU for the CNI plugin (mode 0644, no newline), atomically.
pub fn write_mtu_file(path: &Path, mtu: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(directory)?;
    let mut temporary = tempfile_in(directory)?;
    temporary.1.write_all(mtu.to_string().as_bytes())?;
    temporary.1.sync_all()?;
    std::fs::set_permissions(&temporary.0, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&temporary.0, path)
}

fn tempfile_in(directory: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let path = directory.join(format!(".mtu.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_file_is_decimal_without_newline() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("calico/mtu");
        write_mtu_file(&path, 1450).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1450");
        write_mtu_file(&path, 1410).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1410");
    }
}
