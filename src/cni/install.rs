//! `starling cni install`: what the DaemonSet's init container does on every node.
//!
//! 1. Copies the running binary to `$CNI_BIN_DIR/starling` (default `/host/opt/cni/bin`), so the
//!    runtime finds the plugin named by `"type": "starling"`.
//! 2. Writes `$CNI_NETWORK_CONFIG` to `$CNI_NET_DIR/$CNI_CONF_NAME` (defaults
//!    `/host/etc/cni/net.d`, `10-starling.conflist`) with `__CNI_MTU__` replaced by `$CNI_MTU`
//!    (default 0: the plugin reads the MTU file the daemon writes) and `__KUBECONFIG_FILEPATH__`
//!    by `$KUBECONFIG_FILEPATH` (default `/etc/cni/net.d/starling-kubeconfig`, the path as the
//!    host sees it). The plugin never reads that kubeconfig (the daemon does the API work); the
//!    placeholder is filled so conflists written for Calico stay valid JSON.
//!
//! Both files are written to a temporary name in the target directory and renamed into place,
//! so a runtime never executes a half-copied binary or reads a half-written config. The config
//! is checked to be JSON after substitution, so a broken ConfigMap fails the init container
//! instead of every pod on the node.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Environment of the install step, with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSettings {
    pub bin_dir: PathBuf,
    pub net_dir: PathBuf,
    pub conf_name: String,
    pub network_config: String,
    pub mtu: String,
    pub kubeconfig_path: String,
}

impl InstallSettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<InstallSettings> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let network_config = get("CNI_NETWORK_CONFIG")
            .context("CNI_NETWORK_CONFIG is not set: it must hold the CNI network configuration")?;
        let mtu = get("CNI_MTU").unwrap_or_else(|| "0".into());
        if mtu.trim().parse::<u32>().is_err() {
            bail!("CNI_MTU {mtu:?} is not a number");
        }
        Ok(InstallSettings {
            bin_dir: get("CNI_BIN_DIR")
                .unwrap_or_else(|| "/host/opt/cni/bin".into())
                .into(),
            net_dir: get("CNI_NET_DIR")
                .unwrap_or_else(|| "/host/etc/cni/net.d".into())
                .into(),
            conf_name: get("CNI_CONF_NAME").unwrap_or_else(|| "10-starling.conflist".into()),
            network_config,
            mtu: mtu.trim().to_string(),
            kubeconfig_path: get("KUBECONFIG_FILEPATH")
                .unwrap_or_else(|| "/etc/cni/net.d/starling-kubeconfig".into()),
        })
    }
}

/// The network configuration with its placeholders filled; fails unless the result is JSON.
pub fn render_network_config(settings: &InstallSettings) -> anyhow::Result<String> {
    let substitutions = BTreeMap::from([
        ("__CNI_MTU__", settings.mtu.as_str()),
        ("__KUBECONFIG_FILEPATH__", settings.kubeconfig_path.as_str()),
    ]);
    let mut rendered = settings.network_config.clone();
    for (placeholder, value) in substitutions {
        rendered = rendered.replace(placeholder, value);
    }
    serde_json::from_str::<serde_json::Value>(&rendered).with_context(|| {
        format!("CNI_NETWORK_CONFIG is not valid JSON after substitution:\n{rendered}")
    })?;
    Ok(rendered)
}

/// Writes `contents` to `target` through a temporary file in the same directory and a rename.
fn write_atomically(target: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let directory = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let file_name = target
        .file_name()
        .with_context(|| format!("{} has no file name", target.display()))?
        .to_string_lossy();
    let temporary = directory.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(contents)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)
    };
    write().map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        anyhow::anyhow!("writing {}: {error}", target.display())
    })
}

/// Installs `binary` and the network configuration; returns the two paths written.
pub fn install(settings: &InstallSettings, binary: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let config = render_network_config(settings)?;
    let contents =
        std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let plugin_path = settings.bin_dir.join("starling");
    write_atomically(&plugin_path, &contents, 0o755)?;
    let config_path = settings.net_dir.join(&settings.conf_name);
    write_atomically(&config_path, config.as_bytes(), 0o644)?;
    tracing::info!(plugin = %plugin_path.display(), config = %config_path.display(), "CNI plugin installed");
    Ok((plugin_path, config_path))
}

/// The `starling cni install` command: settings from the process environment, the running
/// binary as the plugin.
pub fn install_from_environment() -> anyhow::Result<()> {
    let settings = InstallSettings::from_lookup(|name| std::env::var(name).ok())?;
    let binary = std::env::current_exe().context("finding the running binary")?;
    install(&settings, &binary)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_substitution() {
        let settings = InstallSettings::from_lookup(|name| match name {
            "CNI_NETWORK_CONFIG" => Some(
                r#"{"name":"k","mtu":__CNI_MTU__,"k":{"kubeconfig":"__KUBECONFIG_FILEPATH__"}}"#
                    .into(),
            ),
            "CNI_MTU" => Some("1440".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.bin_dir, Path::new("/host/opt/cni/bin"));
        assert_eq!(settings.net_dir, Path::new("/host/etc/cni/net.d"));
        assert_eq!(settings.conf_name, "10-starling.conflist");
        let rendered: serde_json::Value =
            serde_json::from_str(&render_network_config(&settings).unwrap()).unwrap();
        assert_eq!(rendered["mtu"], 1440);
        assert_eq!(
            rendered["k"]["kubeconfig"],
            "/etc/cni/net.d/starling-kubeconfig"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(InstallSettings::from_lookup(|_| None).is_err());
        let bad_mtu = InstallSettings::from_lookup(|name| match name {
            "CNI_NETWORK_CONFIG" => Some("{}".into()),
            "CNI_MTU" => Some("big".into()),
            _ => None,
        });
        assert!(bad_mtu.is_err());
        let broken = InstallSettings::from_lookup(|name| match name {
            "CNI_NETWORK_CONFIG" => Some(r#"{"mtu": __CNI_MTU__"#.into()),
            _ => None,
        })
        .unwrap();
        let error = render_network_config(&broken).unwrap_err();
        assert!(format!("{error:#}").contains("not valid JSON"), "{error:#}");
    }
}
