//! `starling ipam ...`: show, check, release, reserve against etcd or the Kubernetes API.
//!
//! The library functions (`show`, `check`, `release`, `reserve`) return text and a problem count;
//! only `main` prints and picks the exit code. The datastore comes from a deliberately small
//! environment parser (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`, the `ETCD_*_FILE` TLS files; `KUBECONFIG`
//! is read by kube-rs) kept here so it can be swapped for the shared configuration module.

use std::net::IpAddr;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::datastore::etcd::EtcdStore;
use crate::datastore::etcd_tls::EtcdTlsFiles;
use crate::datastore::kube::KubeStore;
use crate::datastore::{AnyDatastore, Datastore};
use crate::resources::FromResource;
use starling_ipam::block::Block;
use starling_ipam::records::Reservation;
use starling_ipam::store::IpamStore;
use starling_ipam::{check as checker, release as releaser, reserve as reserver, show as shower};
use starling_model::store::StoreError;
use starling_model::IpPool;

/// The `ipam` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum IpamCommand {
    /// Show pool and block utilisation, borrowed addresses or one address's owner.
    Show(ShowArgs),
    /// Check IPAM data for invariant violations and leaks.
    Check,
    /// Release an address or every address of a handle.
    Release(ReleaseArgs),
    /// Write an IPReservation covering addresses, CIDRs and ranges `A-B`.
    Reserve(ReserveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Also list each block under its pool.
    #[arg(long)]
    pub show_blocks: bool,
    /// List addresses borrowed from other nodes' blocks.
    #[arg(long)]
    pub show_borrowed: bool,
    /// Show who holds this address.
    #[arg(long)]
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ReleaseArgs {
    /// The address to release.
    #[arg(long)]
    pub ip: Option<IpAddr>,
    /// The handle whose addresses to release.
    #[arg(long)]
    pub handle: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ReserveArgs {
    /// Name of the IPReservation.
    pub name: String,
    /// Addresses, CIDRs or ranges `A-B`.
    #[arg(required = true)]
    pub items: Vec<String>,
}

/// Which datastore to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreChoice {
    Etcd {
        endpoints: Vec<String>,
        tls: EtcdTlsFiles,
    },
    Kubernetes,
}

/// Reads `DATASTORE_TYPE` (`etcdv3` or `kubernetes`, default kubernetes), `ETCD_ENDPOINTS` and
/// calico-node's `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`.
pub fn datastore_from_env(get: impl Fn(&str) -> Option<String>) -> Result<DatastoreChoice, String> {
    let kind = get("DATASTORE_TYPE").unwrap_or_else(|| "kubernetes".to_string());
    match kind.trim() {
        "etcdv3" | "etcd" => {
            let endpoints: Vec<String> = get("ETCD_ENDPOINTS")
                .unwrap_or_else(|| "http://127.0.0.1:2379".to_string())
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect();
            if endpoints.is_empty() {
                return Err("ETCD_ENDPOINTS lists no endpoint".to_string());
            }
            let tls = EtcdTlsFiles::from_env(&get);
            Ok(DatastoreChoice::Etcd { endpoints, tls })
        }
        "kubernetes" | "" => Ok(DatastoreChoice::Kubernetes),
        other => Err(format!(
            "DATASTORE_TYPE {other:?} is not etcdv3 or kubernetes"
        )),
    }
}

pub async fn connect(choice: &DatastoreChoice) -> anyhow::Result<AnyDatastore> {
    Ok(match choice {
        DatastoreChoice::Etcd { endpoints, tls } => {
            AnyDatastore::Etcd(EtcdStore::connect_with_tls(endpoints, tls).await?)
        }
        DatastoreChoice::Kubernetes => AnyDatastore::Kube(KubeStore::connect().await?),
    })
}

async fn pools<S: Datastore + IpamStore>(store: &S) -> Result<Vec<IpPool>, StoreError> {
    let mut valid = Vec::new();
    for stored in store.list::<crate::resources::IPPool>().await? {
        match IpPool::from_resource(&stored.value) {
            Ok(pool) => valid.push(pool),
            Err(err) => tracing::warn!(%err, "ignoring invalid IPPool"),
        }
    }
    Ok(valid)
}

async fn blocks<S: Datastore + IpamStore>(store: &S) -> Result<Vec<Block>, StoreError> {
    Ok(store
        .list::<Block>()
        .await?
        .into_iter()
        .map(|b| b.value)
        .collect())
}

/// `ipam show`.
pub async fn show<S: Datastore + IpamStore>(store: &S, args: &ShowArgs) -> anyhow::Result<String> {
    let blocks = blocks(store).await?;
    if let Some(address) = args.ip {
        return Ok(shower::render_address(&blocks, address));
    }
    if args.show_borrowed {
        return Ok(shower::render_borrowed(&blocks));
    }
    let usage = shower::utilization(
        &pools(store).await?,
        &blocks,
        &starling_ipam::store::read_reservations(store).await?,
    );
    Ok(shower::render_utilization(&usage, args.show_blocks))
}

/// `ipam check`: the report text and the number of problems. `in_use` (workloads and tunnel
/// addresses) enables the leak classes; without it only datastore-internal checks run.
pub async fn check<S: Datastore + IpamStore>(
    store: &S,
    in_use: Option<&[checker::InUseAddress]>,
    now: DateTime<Utc>,
) -> anyhow::Result<(String, usize)> {
    let pools = pools(store).await?;
    let report = checker::check(store, &pools, in_use, now).await?;
    let mut out = format!(
        "Loaded {} blocks with {} allocations and {} handles.\n",
        report.blocks, report.allocations, report.handles
    );
    if !report.top_nodes.is_empty() {
        out += "Top nodes by allocations:\n";
        for (node, count) in report.top_nodes.iter().take(10) {
            out += &format!("  {node}: {count}\n");
        }
    }
    for problem in &report.problems {
        out += &format!("  {problem}\n");
    }
    out += &checker::summary_line(&report);
    out.push('\n');
    Ok((out, report.problems.len()))
}

/// `ipam release`.
pub async fn release<S: Datastore + IpamStore>(
    store: &S,
    args: &ReleaseArgs,
) -> anyhow::Result<String> {
    if let Some(address) = args.ip {
        let outcome = releaser::release_addresses(store, &[address]).await?;
        return Ok(if outcome.released.is_empty() {
            format!("{address} is not assigned; nothing released\n")
        } else {
            format!("Successfully released IP address {address}\n")
        });
    }
    if let Some(handle) = &args.handle {
        let mut released = releaser::release_by_handle(store, handle).await?;
        if released.is_empty() {
            // No handle record (or an empty one): the allocations may still be in the blocks.
            released = releaser::release_by_handle_scan(store, handle).await?;
        }
        return Ok(format!(
            "Released {} address(es) of handle {handle}\n",
            released.len()
        ));
    }
    anyhow::bail!("give --ip or --handle")
}

/// `ipam reserve`: creates or replaces the IPReservation.
pub async fn reserve<S: Datastore + IpamStore>(
    store: &S,
    args: &ReserveArgs,
) -> anyhow::Result<String> {
    let cidrs = reserver::cidr_cover(&args.items)?;
    let name = args.name.clone();
    let mut reservation = Reservation {
        name: name.clone(),
        reserved_cidrs: cidrs.clone(),
        metadata: None,
    };
    match store.get::<Reservation>(&name).await {
        Ok(existing) => {
            reservation.metadata = existing.value.metadata;
            store.update(&reservation, &existing.revision).await?;
        }
        Err(StoreError::NotFound { .. }) => {
            reservation.metadata = Some(serde_json::json!({
                "name": name,
                "creationTimestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "uid": random_uid(),
            }));
            store.create(&reservation).await?;
        }
        Err(error) => return Err(error.into()),
    }
    let list: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
    Ok(format!(
        "IPReservation {name} reserves {}\n",
        list.join(", ")
    ))
}

fn random_uid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

async fn run(command: &IpamCommand) -> anyhow::Result<(String, bool)> {
    let choice =
        datastore_from_env(|name| std::env::var(name).ok()).map_err(|e| anyhow::anyhow!(e))?;
    let store = connect(&choice).await?;
    Ok(match command {
        IpamCommand::Show(args) => (show(&store, args).await?, true),
        IpamCommand::Check => {
            let in_use = super::cli_usage::addresses_in_use(&store).await?;
            let (text, problems) = check(&store, Some(&in_use), Utc::now()).await?;
            (text, problems == 0)
        }
        IpamCommand::Release(args) => (release(&store, args).await?, true),
        IpamCommand::Reserve(args) => (reserve(&store, args).await?, true),
    })
}

/// Entry point from `main`: prints the result, non-zero exit on error or problems.
pub fn main(command: &IpamCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("starling ipam: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok((text, success)) => {
            print!("{text}");
            if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("starling ipam: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_choice() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            datastore_from_env(env(&[
                ("DATASTORE_TYPE", "etcdv3"),
                ("ETCD_ENDPOINTS", "http://a:2379, http://b:2379")
            ])),
            Ok(DatastoreChoice::Etcd {
                endpoints: vec!["http://a:2379".into(), "http://b:2379".into()],
                tls: EtcdTlsFiles::default(),
            })
        );
        assert_eq!(
            datastore_from_env(env(&[
                ("DATASTORE_TYPE", "etcdv3"),
                ("ETCD_ENDPOINTS", "https://a:2379"),
                ("ETCD_CA_CERT_FILE", "/etc/etcd/ca.pem"),
                ("ETCD_CERT_FILE", "/etc/etcd/cert.pem"),
                ("ETCD_KEY_FILE", ""),
            ])),
            Ok(DatastoreChoice::Etcd {
                endpoints: vec!["https://a:2379".into()],
                tls: EtcdTlsFiles {
                    ca_cert_file: Some("/etc/etcd/ca.pem".into()),
                    cert_file: Some("/etc/etcd/cert.pem".into()),
                    key_file: None,
                },
            })
        );
        assert_eq!(
            datastore_from_env(env(&[])),
            Ok(DatastoreChoice::Kubernetes)
        );
        assert!(datastore_from_env(env(&[("DATASTORE_TYPE", "consul")])).is_err());
    }
}
