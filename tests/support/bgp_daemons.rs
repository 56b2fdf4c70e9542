//! Test-only wrappers for the peers Starling is tested against, each in a lab namespace:
//! BIRD 2 (config, control socket, restart), gobgpd (TOML, gRPC API on the namespace's
//! loopback, `gobgp` CLI) and FRR's bgpd without zebra (vtysh). Include beside
//! `bgp_peers.rs` (`#[path = "support/bgp_daemons.rs"] mod bgp_daemons;`).

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bgp_peers::{eventually, try_output, Daemon};

// ---------------------------------------------------------------- BIRD 2

/// A BIRD 2 instance with its control socket.
pub struct Bird {
    pub daemon: Daemon,
    pub socket: PathBuf,
    pub config: PathBuf,
    namespace: String,
    directory: PathBuf,
}

impl Bird {
    pub fn start(namespace: &str, directory: &Path, name: &str, config: &str) -> Bird {
        let config_path = directory.join(format!("{name}.conf"));
        std::fs::write(&config_path, config).unwrap();
        let socket = directory.join(format!("{name}.ctl"));
        let daemon = Bird::spawn(namespace, directory, name, &config_path, &socket, false);
        let bird = Bird {
            daemon,
            socket,
            config: config_path,
            namespace: namespace.to_string(),
            directory: directory.to_path_buf(),
        };
        assert!(
            eventually(Duration::from_secs(10), || bird
                .try_command("show status")
                .is_some()),
            "bird {name} did not start: {}",
            std::fs::read_to_string(directory.join(format!("{name}.log"))).unwrap_or_default()
        );
        bird
    }

    fn spawn(
        namespace: &str,
        directory: &Path,
        name: &str,
        config: &Path,
        socket: &Path,
        recovering: bool,
    ) -> Daemon {
        let mut arguments: Vec<String> = vec![
            "bird".into(),
            "-f".into(),
            "-c".into(),
            config.display().to_string(),
            "-s".into(),
            socket.display().to_string(),
            "-P".into(),
            directory.join(format!("{name}.pid")).display().to_string(),
        ];
        if recovering {
            arguments.push("-R".into());
        }
        Daemon::spawn(
            namespace,
            name,
            &arguments,
            &directory.join(format!("{name}.log")),
        )
    }

    /// Starts the same configuration again after [`Daemon::kill`], in graceful restart
    /// recovery (`-R`: Restart State and Forwarding State bits set, End-of-RIB when done).
    pub fn restart(&mut self) {
        let name = self.daemon.name.clone();
        self.daemon = Bird::spawn(
            &self.namespace,
            &self.directory,
            &name,
            &self.config,
            &self.socket,
            true,
        );
        assert!(
            eventually(Duration::from_secs(10), || self
                .try_command("show status")
                .is_some()),
            "bird {name} did not restart"
        );
    }

    pub fn try_command(&self, command: &str) -> Option<String> {
        let mut arguments = vec!["-s", self.socket.to_str().unwrap()];
        arguments.extend(command.split_whitespace());
        try_output("birdc", &arguments)
    }

    pub fn established(&self, protocol: &str) -> bool {
        self.try_command(&format!("show protocols {protocol}"))
            .is_some_and(|text| text.contains("Established"))
    }
}

/// A BIRD configuration with one static protocol and a kernel protocol exporting everything
/// learned over BGP (proto bird), plus the given BGP protocols.
pub fn bird_config(router_id: Ipv4Addr, static_routes: &[&str], bgp: &str) -> String {
    let routes: String = static_routes
        .iter()
        .map(|route| format!("  route {route} blackhole;\n"))
        .collect();
    format!(
        "router id {router_id};
protocol device {{ scan time 2; }}
protocol kernel {{ ipv4 {{ import none; export filter {{ if source = RTS_BGP then accept; reject; }}; }}; graceful restart on; }}
protocol static static4 {{ ipv4;
{routes}}}
{bgp}
"
    )
}

/// A BIRD iBGP/eBGP protocol towards a neighbour.
pub fn bird_bgp(
    name: &str,
    local: Ipv4Addr,
    local_as: u32,
    neighbor: Ipv4Addr,
    peer_as: u32,
    extra: &str,
) -> String {
    format!(
        "protocol bgp {name} {{
  local {local} as {local_as};
  neighbor {neighbor} as {peer_as};
  direct; connect delay time 1; connect retry time 2; error wait time 1, 5;
  graceful restart on;
  {extra}
  ipv4 {{ import all; export all; }};
}}
"
    )
}

// ---------------------------------------------------------------- GoBGP

/// A gobgpd instance with its gRPC API on loopback inside its namespace.
pub struct GoBgp {
    pub daemon: Daemon,
    namespace: String,
    api_port: u16,
}

impl GoBgp {
    /// Starts gobgpd with `config` (TOML); its API listens on 127.0.0.1:`api_port` in the
    /// namespace (each namespace has its own loopback, so the port is free).
    pub fn start(
        namespace: &str,
        directory: &Path,
        name: &str,
        config: &str,
        api_port: u16,
    ) -> GoBgp {
        let config_path = directory.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let arguments: Vec<String> = vec![
            "gobgpd".into(),
            "-f".into(),
            config_path.display().to_string(),
            "-t".into(),
            "toml".into(),
            "--api-hosts".into(),
            format!("127.0.0.1:{api_port}"),
            "--pprof-disable".into(),
        ];
        let daemon = Daemon::spawn(
            namespace,
            name,
            &arguments,
            &directory.join(format!("{name}.log")),
        );
        let gobgp = GoBgp {
            daemon,
            namespace: namespace.to_string(),
            api_port,
        };
        assert!(
            eventually(Duration::from_secs(10), || gobgp
                .try_cli("global")
                .is_some()),
            "gobgpd {name} did not start: {}",
            std::fs::read_to_string(directory.join(format!("{name}.log"))).unwrap_or_default()
        );
        gobgp
    }

    /// Runs `gobgp -p PORT ARGS` in the namespace.
    pub fn try_cli(&self, arguments: &str) -> Option<String> {
        let port = self.api_port.to_string();
        let mut all = vec!["netns", "exec", &self.namespace, "gobgp", "-p", &port];
        all.extend(arguments.split_whitespace());
        try_output("ip", &all)
    }

    pub fn cli(&self, arguments: &str) -> String {
        self.try_cli(arguments)
            .unwrap_or_else(|| panic!("gobgp {arguments} failed"))
    }

    pub fn established(&self, neighbor: Ipv4Addr) -> bool {
        self.try_cli(&format!("neighbor {neighbor} -j"))
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|value| {
                value["state"]["session_state"] == 6
                    || value["state"]["session_state"] == "established"
            })
    }

    /// Prefixes in gobgpd's global IPv4 RIB.
    pub fn rib_prefixes(&self) -> Vec<String> {
        self.try_cli("global rib -a ipv4 -j")
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|value| value.as_object().map(|map| map.keys().cloned().collect()))
            .unwrap_or_default()
    }
}

/// A gobgpd TOML configuration with iBGP/eBGP neighbours (graceful restart on).
pub fn gobgp_config(router_id: Ipv4Addr, local_as: u32, neighbors: &[(Ipv4Addr, u32)]) -> String {
    let mut config = format!(
        "[global.config]\n  as = {local_as}\n  router-id = \"{router_id}\"\n  port = 179\n"
    );
    for (address, peer_as) in neighbors {
        config.push_str(&format!(
            "[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{address}\"
    peer-as = {peer_as}
  [neighbors.timers.config]
    connect-retry = 2
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"
        ));
    }
    config
}

// ---------------------------------------------------------------- FRR

/// FRR's bgpd without zebra (`-Z`: RIB only, nothing installed), queried through vtysh.
pub struct Frr {
    pub daemon: Daemon,
    directory: PathBuf,
}

impl Frr {
    pub fn start(namespace: &str, directory: &Path, config: &str) -> Frr {
        let directory = directory.join("frr");
        std::fs::create_dir_all(&directory).unwrap();
        let config_path = directory.join("bgpd.conf");
        std::fs::write(&config_path, config).unwrap();
        let arguments: Vec<String> = vec![
            "/usr/lib/frr/bgpd".into(),
            "-f".into(),
            config_path.display().to_string(),
            "-z".into(),
            directory.join("zserv.api").display().to_string(),
            "-i".into(),
            directory.join("bgpd.pid").display().to_string(),
            "--vty_socket".into(),
            directory.display().to_string(),
            "-Z".into(),
            "-S".into(),
            "-u".into(),
            "root".into(),
            "-g".into(),
            "root".into(),
        ];
        let daemon = Daemon::spawn(namespace, "bgpd", &arguments, &directory.join("bgpd.log"));
        let frr = Frr { daemon, directory };
        assert!(
            eventually(Duration::from_secs(10), || frr
                .try_vtysh("show bgp summary")
                .is_some()),
            "bgpd did not start: {}",
            std::fs::read_to_string(frr.directory.join("bgpd.log")).unwrap_or_default()
        );
        frr
    }

    pub fn try_vtysh(&self, command: &str) -> Option<String> {
        try_output(
            "vtysh",
            &[
                "--vty_socket",
                self.directory.to_str().unwrap(),
                "-d",
                "bgpd",
                "-c",
                command,
            ],
        )
    }

    pub fn established(&self, neighbor: Ipv4Addr) -> bool {
        self.try_vtysh(&format!("show bgp neighbors {neighbor} json"))
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|value| value[neighbor.to_string()]["bgpState"] == "Established")
    }
}
