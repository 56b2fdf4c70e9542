//! Records the captured golden vectors in `crates/bgp/tests/fixtures/bgp/` (a tool, not a test):
//!
//! ```text
//! sudo -E cargo run --example record_bgp_fixtures -- [bird2|gobgp|frr]...   # default: all three
//! ```
//!
//! Needs root (network namespaces) and the peer programs (bird2, gobgpd + gobgp, frr). For each
//! peer it creates two network namespaces joined by a veth pair (unique names, removed by a Drop
//! guard), runs the real peer in one and a minimal listener in the other. The listener answers
//! OPEN and KEEPALIVE so the peer reaches Established, then writes every raw message the peer
//! sends, as hex, one message per line, to `crates/bgp/tests/fixtures/bgp/<peer>.hex`. The
//! recordings are checked by `crates/bgp/tests/codec_captured.rs`. (Fixtures recorded before
//! this became an example name its former place, `tests/bgp_record_peers.rs`.)

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use starling_bgp::codec::{
    frame_length, Capability, CodecOptions, Family, GracefulRestart, GracefulRestartFamily,
    Message, Open,
};
use starling_model::AsNumber;

const LISTENER_ADDRESS: &str = "10.0.0.1";
const PEER_ADDRESS: &str = "10.0.0.2";
const LISTENER_AS: u32 = 64512;

struct Lab {
    listener_namespace: String,
    peer_namespace: String,
}

impl Lab {
    fn create(tag: &str) -> Lab {
        let suffix = format!("{}{}", tag, std::process::id() % 100_000);
        let lab = Lab {
            listener_namespace: format!("stbrec-l-{suffix}"),
            peer_namespace: format!("stbrec-p-{suffix}"),
        };
        let veth_listener = format!("sbl{suffix}");
        let veth_peer = format!("sbp{suffix}");
        run("ip", &["netns", "add", &lab.listener_namespace]);
        run("ip", &["netns", "add", &lab.peer_namespace]);
        run(
            "ip",
            &[
                "link",
                "add",
                &veth_listener,
                "netns",
                &lab.listener_namespace,
                "type",
                "veth",
                "peer",
                "name",
                &veth_peer,
                "netns",
                &lab.peer_namespace,
            ],
        );
        for (namespace, device, address) in [
            (&lab.listener_namespace, &veth_listener, LISTENER_ADDRESS),
            (&lab.peer_namespace, &veth_peer, PEER_ADDRESS),
        ] {
            run("ip", &["-n", namespace, "link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "-n",
                    namespace,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    device,
                ],
            );
            run("ip", &["-n", namespace, "link", "set", device, "up"]);
        }
        run(
            "ip",
            &[
                "-n",
                &lab.peer_namespace,
                "addr",
                "add",
                "2001:db8::2/64",
                "dev",
                &veth_peer,
            ],
        );
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting the namespaces removes the veth pair too.
        for namespace in [&self.listener_namespace, &self.peer_namespace] {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, arguments: &[&str]) {
    let status = Command::new(program)
        .args(arguments)
        .status()
        .expect("spawn");
    assert!(status.success(), "{program} {arguments:?} failed");
}

fn spawn_in(namespace: &str, arguments: &[&str]) -> Daemon {
    let mut full = vec!["netns", "exec", namespace];
    full.extend_from_slice(arguments);
    Daemon(
        Command::new("ip")
            .args(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn daemon"),
    )
}

fn listener_open() -> Vec<u8> {
    let open = Open::new(
        AsNumber(LISTENER_AS),
        90,
        LISTENER_ADDRESS.parse().unwrap(),
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![
                    GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: false,
                    },
                    GracefulRestartFamily {
                        family: Family::IPV6_UNICAST,
                        forwarding_preserved: false,
                    },
                ],
            }),
            Capability::FourOctetAs(AsNumber(LISTENER_AS)),
        ],
    );
    Message::Open(open)
        .encode(&CodecOptions::FOUR_OCTET)
        .unwrap()
}

/// Accepts one connection in `namespace`, plays the minimal protocol and returns the raw
/// messages received until `done` says enough or the deadline passes.
fn record(namespace: &str, deadline: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Vec<u8>> {
    let namespace_file = std::fs::File::open(format!("/var/run/netns/{namespace}")).unwrap();
    nix::sched::setns(namespace_file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let address: SocketAddr = format!("{LISTENER_ADDRESS}:179").parse().unwrap();
    let listener = TcpListener::bind(address).unwrap();
    listener.set_nonblocking(true).unwrap();
    let until = Instant::now() + deadline;
    let mut stream: TcpStream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(error) => panic!("no connection from the peer: {error}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let keepalive = Message::Keepalive
        .encode(&CodecOptions::FOUR_OCTET)
        .unwrap();
    let mut buffer: Vec<u8> = Vec::new();
    let mut raw: Vec<Vec<u8>> = Vec::new();
    let mut decoded: Vec<Message> = Vec::new();
    let mut options = CodecOptions::FOUR_OCTET;
    while Instant::now() < until && !done(&decoded) {
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => buffer.extend_from_slice(&chunk[..count]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("read: {error}"),
        }
        while let Some(length) = frame_length(&buffer).unwrap() {
            if buffer.len() < length {
                break;
            }
            let message_bytes: Vec<u8> = buffer.drain(..length).collect();
            let message = Message::decode(&message_bytes, &options).unwrap();
            match &message {
                Message::Open(open) => {
                    options.four_octet_as = open.four_octet_as().is_some();
                    stream.write_all(&listener_open()).unwrap();
                    stream.write_all(&keepalive).unwrap();
                }
                Message::Keepalive => stream.write_all(&keepalive).unwrap(),
                _ => {}
            }
            raw.push(message_bytes);
            decoded.push(message);
        }
    }
    raw
}

fn announced_count(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|message| match message {
            Message::Update(update) => update.announced().len(),
            _ => 0,
        })
        .sum()
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/bgp/tests/fixtures/bgp")
        .join(name)
}

fn save(name: &str, header: &str, messages: &[Vec<u8>]) {
    let mut text = String::from(header);
    for message in messages {
        let line: String = message.iter().map(|byte| format!("{byte:02x}")).collect();
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(fixture_path(name), text).unwrap();
}

fn version(program: &str, argument: &str) -> String {
    let output = Command::new(program).arg(argument).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines().next().unwrap_or("").trim().to_string()
}

fn header(version: &str, config: &str) -> String {
    let mut header = format!(
        "# Captured by examples/record_bgp_fixtures.rs: raw messages the peer sent to a listener\n\
         # (AS {LISTENER_AS}, {LISTENER_ADDRESS}, capabilities mp v4+v6, route refresh, GR 120 s, 4-octet AS).\n\
         # Peer: {version}\n# Peer configuration:\n"
    );
    for line in config.lines() {
        header.push_str(&format!("#   {line}\n"));
    }
    header
}

fn capture(
    tag: &str,
    config_name: &str,
    config: &str,
    command: impl Fn(&Path, &Path) -> Vec<String>,
    after_start: impl Fn(&Lab, &Path),
    expected_prefixes: usize,
) -> (Vec<Vec<u8>>, String) {
    let lab = Lab::create(tag);
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join(config_name);
    std::fs::write(&config_path, config).unwrap();
    let listener_namespace = lab.listener_namespace.clone();
    let recorder = std::thread::spawn(move || {
        record(
            &listener_namespace,
            Duration::from_secs(60),
            move |messages| announced_count(messages) >= expected_prefixes,
        )
    });
    let arguments = command(&config_path, directory.path());
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let _daemon = spawn_in(&lab.peer_namespace, &arguments);
    after_start(&lab, directory.path());
    let messages = recorder.join().unwrap();
    (messages, config.to_string())
}

fn record_bird2() {
    let config = format!(
        "router id {PEER_ADDRESS};
protocol device {{ }}
protocol static static4 {{ ipv4; route 10.1.0.0/26 blackhole; route 10.1.0.64/26 blackhole; route 192.168.10.0/24 blackhole; }}
protocol static static6 {{ ipv6; route 2001:db8:1::/48 blackhole; }}
protocol bgp recorder {{
  local {PEER_ADDRESS} as 65001;
  neighbor {LISTENER_ADDRESS} as {LISTENER_AS};
  graceful restart on;
  ipv4 {{ import none; export filter {{
    if net = 192.168.10.0/24 then {{ bgp_community.add((64512,100)); bgp_large_community.add((64512,1,2)); bgp_med = 50; }}
    accept; }}; }};
  ipv6 {{ import none; export all; next hop address 2001:db8::2; }};
}}
"
    );
    let (messages, config) = capture(
        "b",
        "bird.conf",
        &config,
        |config, directory| {
            vec![
                "bird".into(),
                "-f".into(),
                "-c".into(),
                config.display().to_string(),
                "-s".into(),
                directory.join("bird.ctl").display().to_string(),
                "-P".into(),
                directory.join("bird.pid").display().to_string(),
            ]
        },
        |_, _| {},
        4,
    );
    save(
        "bird2.hex",
        &header(&version("bird", "--version"), &config),
        &messages,
    );
}

fn record_gobgp() {
    let config = format!(
        "[global.config]
  as = 4200000001
  router-id = \"{PEER_ADDRESS}\"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{LISTENER_ADDRESS}\"
    peer-as = {LISTENER_AS}
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv6-unicast\"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"
    );
    let (messages, mut config) = capture(
        "g",
        "gobgpd.toml",
        &config,
        |config, _| {
            vec![
                "gobgpd".into(),
                "-f".into(),
                config.display().to_string(),
                "-t".into(),
                "toml".into(),
            ]
        },
        |lab, _| {
            let routes: [&[&str]; 3] = [
                &[
                    "-a",
                    "ipv4",
                    "10.2.0.0/24",
                    "community",
                    "64512:200",
                    "med",
                    "10",
                ],
                &[
                    "-a",
                    "ipv4",
                    "10.2.1.0/24",
                    "large-community",
                    "64512:3:4",
                    "origin",
                    "incomplete",
                ],
                &["-a", "ipv6", "2001:db8:2::/48", "nexthop", "2001:db8::2"],
            ];
            for route in routes {
                let until = Instant::now() + Duration::from_secs(20);
                loop {
                    let mut arguments = vec![
                        "netns",
                        "exec",
                        &lab.peer_namespace,
                        "gobgp",
                        "global",
                        "rib",
                        "add",
                    ];
                    arguments.extend_from_slice(route);
                    let status = Command::new("ip")
                        .args(&arguments)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .unwrap();
                    if status.success() {
                        break;
                    }
                    assert!(Instant::now() < until, "gobgp never accepted {route:?}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        },
        3,
    );
    config.push_str(
        "gobgp global rib add -a ipv4 10.2.0.0/24 community 64512:200 med 10\n\
         gobgp global rib add -a ipv4 10.2.1.0/24 large-community 64512:3:4 origin incomplete\n\
         gobgp global rib add -a ipv6 2001:db8:2::/48 nexthop 2001:db8::2\n",
    );
    save(
        "gobgp.hex",
        &header(&version("gobgpd", "--version"), &config),
        &messages,
    );
}

fn record_frr() {
    let config = format!(
        "hostname recorder
router bgp 65003
 bgp router-id {PEER_ADDRESS}
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 neighbor {LISTENER_ADDRESS} remote-as {LISTENER_AS}
 address-family ipv4 unicast
  network 10.3.0.0/24
  network 10.3.1.0/25
  neighbor {LISTENER_ADDRESS} activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:3::/48
  neighbor {LISTENER_ADDRESS} activate
 exit-address-family
"
    );
    let (messages, config) = capture(
        "f",
        "bgpd.conf",
        &config,
        |config, directory| {
            vec![
                "/usr/lib/frr/bgpd".into(),
                "-Z".into(),
                "-f".into(),
                config.display().to_string(),
                "-i".into(),
                directory.join("bgpd.pid").display().to_string(),
                "--vty_socket".into(),
                directory.display().to_string(),
                // Stay root (no frr user switch) and open no vty TCP port.
                "-S".into(),
                "-P".into(),
                "0".into(),
            ]
        },
        |_, _| {},
        3,
    );
    save(
        "frr.hex",
        &header(&version("/usr/lib/frr/bgpd", "--version"), &config),
        &messages,
    );
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let peers: [(&str, fn()); 3] = [
        ("bird2", record_bird2),
        ("gobgp", record_gobgp),
        ("frr", record_frr),
    ];
    if let Some(unknown) = wanted
        .iter()
        .find(|name| !peers.iter().any(|(peer, _)| peer == name))
    {
        eprintln!("unknown peer {unknown:?}: choose from bird2, gobgp, frr (default: all)");
        std::process::exit(2);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("recording BGP fixtures creates network namespaces: run as root");
        std::process::exit(1);
    }
    for (name, record) in peers {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            println!("recording {name}");
            record();
            println!("wrote {}", fixture_path(&format!("{name}.hex")).display());
        }
    }
}
