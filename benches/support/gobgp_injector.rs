//! The GoBGP route injector of the convergence benchmark: gobgpd in the injector namespace
//! with its global RIB preloaded from an MRT file before the receiver under test starts, so
//! GoBGP's own loading speed is not part of what is measured.
//!
//! Contract: [`GoBgpInjector::preload`] writes the prefixes as an MRT TABLE_DUMP_V2 file
//! (RFC 6396: one PEER_INDEX_TABLE record, then one RIB_IPV4_UNICAST record per prefix with
//! ORIGIN IGP, an empty AS_PATH, NEXT_HOP = the injector and LOCAL_PREF 100), starts gobgpd
//! with the receiver configured as its only iBGP neighbour (passive: the receiver connects as
//! soon as it runs), loads the file with
//! `gobgp mrt inject global` and returns once `gobgp global rib summary` counts every prefix.
//! Any failure comes back as an error naming the step, so the benchmark can fall back to its
//! codec injector.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::bgp_daemons::GoBgp;

/// gobgpd's gRPC API port on the injector namespace's own loopback.
const API_PORT: u16 = 50051;

/// MRT type TABLE_DUMP_V2 and its subtypes (RFC 6396 section 4.3).
const TABLE_DUMP_V2: u16 = 13;
const PEER_INDEX_TABLE: u16 = 1;
const RIB_IPV4_UNICAST: u16 = 2;

/// gobgpd holding the preloaded routes, with a session to the receiver once that listens.
pub struct GoBgpInjector {
    gobgp: GoBgp,
    receiver: Ipv4Addr,
}

impl GoBgpInjector {
    /// Starts gobgpd in `namespace` (address `own`, AS `asn`) with `receiver` as neighbour and
    /// loads `routes` into its global RIB; returns after every route is in that RIB.
    pub fn preload(
        namespace: &str,
        directory: &Path,
        own: Ipv4Addr,
        asn: u32,
        receiver: Ipv4Addr,
        routes: &[IpNet],
    ) -> Result<GoBgpInjector, String> {
        let have = |program| crate::requirements::find_program(program).is_some();
        if !have("gobgpd") || !have("gobgp") {
            return Err("gobgpd or gobgp is not installed".into());
        }
        let mrt_path = directory.join("routes.mrt");
        write_mrt(&mrt_path, own, asn, routes)
            .map_err(|error| format!("writing {}: {error}", mrt_path.display()))?;
        let gobgp = GoBgp::start(
            namespace,
            directory,
            "gobgpd",
            &injector_config(own, asn, receiver),
            API_PORT,
        );
        let begin = Instant::now();
        let injector = GoBgpInjector { gobgp, receiver };
        // gobgpd digests the stream asynchronously; the RIB count says when it has it all. An
        // injection that still comes up short is repeated (adding a path again is harmless).
        let mut loaded = 0;
        for _attempt in 0..3 {
            injector.inject(namespace, &mrt_path)?;
            loaded = injector.wait_for_rib(routes.len(), Duration::from_secs(5));
            if loaded >= routes.len() {
                break;
            }
        }
        if loaded < routes.len() {
            return Err(format!(
                "gobgpd's global RIB holds {loaded} of {} routes after the MRT injection",
                routes.len()
            ));
        }
        println!(
            "  GoBGP injector: {} routes preloaded from MRT in {:.2} s (not part of the measurement)",
            routes.len(),
            begin.elapsed().as_secs_f64()
        );
        Ok(injector)
    }

    /// `gobgp mrt inject global FILE` in the injector namespace.
    fn inject(&self, namespace: &str, mrt_path: &Path) -> Result<(), String> {
        let mrt = mrt_path.display().to_string();
        let port = API_PORT.to_string();
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", namespace, "gobgp", "-p", &port])
            .args(["mrt", "inject", "global", &mrt])
            .output()
            .map_err(|error| format!("running gobgp mrt inject: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "gobgp mrt inject global {mrt} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Polls the RIB until it holds `expected` destinations or stops growing for `stall`;
    /// returns the last count.
    fn wait_for_rib(&self, expected: usize, stall: Duration) -> usize {
        let mut last = 0;
        let mut last_change = Instant::now();
        loop {
            let loaded = self.rib_count();
            if loaded >= expected {
                return loaded;
            }
            if loaded != last {
                last = loaded;
                last_change = Instant::now();
            } else if last_change.elapsed() >= stall {
                return loaded;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Destinations in gobgpd's global IPv4 RIB (`global rib summary -a ipv4`).
    pub fn rib_count(&self) -> usize {
        let Some(text) = self.gobgp.try_cli("global rib summary -a ipv4") else {
            return 0;
        };
        // "Table ipv4-unicast\nDestination: N, Path: M"
        text.split("Destination:")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Withdraws every preloaded route (`global rib del all`: gobgpd sends the withdrawals).
    #[allow(dead_code)] // bgp_convergence does not withdraw
    pub fn withdraw_all(&self) {
        self.gobgp.cli("global rib del all -a ipv4");
    }

    /// Whether gobgpd's session to the receiver is Established.
    pub fn established(&self) -> bool {
        self.gobgp.established(self.receiver)
    }
}

/// Records repeated at the end of the MRT file (see [`write_mrt`]).
const TAIL_PADDING: usize = 8192;

/// gobgpd with one passive iBGP neighbour and no graceful restart: the receiver connects as
/// soon as it runs, so its start time is not blurred by gobgpd's connect retry timer.
fn injector_config(own: Ipv4Addr, asn: u32, receiver: Ipv4Addr) -> String {
    format!(
        "[global.config]
  as = {asn}
  router-id = \"{own}\"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = \"{receiver}\"
    peer-as = {asn}
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = \"ipv4-unicast\"
"
    )
}

/// Writes `routes` (IPv4 only) as an MRT TABLE_DUMP_V2 dump seen from one peer, `own`.
pub fn write_mrt(path: &Path, own: Ipv4Addr, asn: u32, routes: &[IpNet]) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);

    // PEER_INDEX_TABLE: collector id, empty view name, one peer (IPv4 address, 4-octet AS).
    let mut body = Vec::new();
    body.extend_from_slice(&own.octets());
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.push(0b10); // peer type: AS4 bit set, IPv6 bit clear
    body.extend_from_slice(&own.octets());
    body.extend_from_slice(&own.octets());
    body.extend_from_slice(&asn.to_be_bytes());
    write_record(&mut file, PEER_INDEX_TABLE, &body)?;

    // The same attributes for every prefix: ORIGIN IGP, empty AS_PATH (iBGP), NEXT_HOP,
    // LOCAL_PREF 100; each is well-known transitive (flags 0x40) with a one-octet length.
    let mut attributes = vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4];
    attributes.extend_from_slice(&own.octets());
    attributes.extend_from_slice(&[0x40, 5, 4]);
    attributes.extend_from_slice(&100u32.to_be_bytes());

    // `gobgp mrt inject` (3.10) loses the last thousand or so records of a file (the client
    // exits before gobgpd has read them all), so the file ends with the first prefixes again:
    // re-adding an identical path changes nothing.
    let padding = routes.iter().take(TAIL_PADDING);
    for (sequence, route) in routes.iter().chain(padding).enumerate() {
        let IpNet::V4(network) = route else {
            continue;
        };
        let length = network.prefix_len();
        let significant = usize::from(length).div_ceil(8);
        body.clear();
        body.extend_from_slice(&(sequence as u32).to_be_bytes());
        body.push(length);
        body.extend_from_slice(&network.network().octets()[..significant]);
        body.extend_from_slice(&1u16.to_be_bytes()); // entry count
        body.extend_from_slice(&0u16.to_be_bytes()); // peer index
        body.extend_from_slice(&0u32.to_be_bytes()); // originated time
        body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        body.extend_from_slice(&attributes);
        write_record(&mut file, RIB_IPV4_UNICAST, &body)?;
    }
    file.flush()
}

/// One MRT record: common header (timestamp, type, subtype, length) and body.
fn write_record(file: &mut impl Write, subtype: u16, body: &[u8]) -> std::io::Result<()> {
    file.write_all(&0u32.to_be_bytes())?;
    file.write_all(&TABLE_DUMP_V2.to_be_bytes())?;
    file.write_all(&subtype.to_be_bytes())?;
    file.write_all(&(body.len() as u32).to_be_bytes())?;
    file.write_all(body)
}
