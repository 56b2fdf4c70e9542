//! `starling node status`: the BGP peer table in calicoctl's layout (reference §9.1).
//!
//! The daemon fills [`PeerStatus`] rows from its speaker; this module only renders them, so the
//! format is testable without a daemon.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One BGP peer as shown by `node status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: IpAddr,
    /// `node-to-node mesh`, `global` or `node specific`.
    pub peer_type: String,
    /// BIRD's protocol state column: `up`, `start`, `down`.
    pub state: String,
    /// Wall-clock time of the last state change, `HH:MM:SS`.
    pub since: String,
    /// BGP FSM state plus any last error, e.g. `Established` or `Connect Socket: Connection refused`.
    pub info: String,
    /// The BFD session's state (`Up`, `Down`, ...) when the peer has BFD enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<String>,
}

/// Everything `node status` prints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_name: String,
    /// False when the backend runs without BGP (`vxlan`, `none`).
    pub bgp_enabled: bool,
    pub peers: Vec<PeerStatus>,
}

fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let border = {
        let mut line = String::from("+");
        for w in &widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line
    };
    let mut out = String::new();
    let _ = writeln!(out, "{border}");
    let mut header = String::from("|");
    for (h, w) in headers.iter().zip(&widths) {
        // Headers are centred as calicoctl's table writer does.
        let pad = w - h.len();
        let left = pad / 2;
        let _ = write!(
            header,
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(pad - left)
        );
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{border}");
    for row in rows {
        let mut line = String::from("|");
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, " {cell:<w$} |");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{border}");
    out
}

impl NodeStatus {
    /// The text `calicoctl node status` would print for the same peers.
    pub fn render(&self) -> String {
        let mut out = String::from("Starling process is running.\n");
        if !self.bgp_enabled {
            out.push_str(
                "\nBGP is not enabled on this node (CALICO_NETWORKING_BACKEND is not bird).\n",
            );
            return out;
        }
        for (family, is_v4) in [("IPv4", true), ("IPv6", false)] {
            let _ = write!(out, "\n{family} BGP status\n");
            let mut peers: Vec<&PeerStatus> = self
                .peers
                .iter()
                .filter(|p| p.address.is_ipv4() == is_v4)
                .collect();
            peers.sort_by_key(|p| p.address);
            if peers.is_empty() {
                let _ = writeln!(out, "No {family} peers found.");
                continue;
            }
            let rows: Vec<Vec<String>> = peers
                .iter()
                .map(|p| {
                    vec![
                        p.address.to_string(),
                        p.peer_type.clone(),
                        p.state.clone(),
                        p.since.clone(),
                        match &p.bfd {
                            Some(bfd) => format!("{} BFD {bfd}", p.info),
                            None => p.info.clone(),
                        },
                    ]
                })
                .collect();
            out.push_str(&render_table(
                &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_calicoctl_layout() {
        let status = NodeStatus {
            node_name: "node-a".into(),
            bgp_enabled: true,
            peers: vec![PeerStatus {
                address: "10.0.0.7".parse().unwrap(),
                peer_type: "node-to-node mesh".into(),
                state: "up".into(),
                since: "09:51:12".into(),
                info: "Established".into(),
                bfd: None,
            }],
        };
        let expected = "Starling process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 10.0.0.7     | node-to-node mesh | up    | 09:51:12 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

";
        assert_eq!(status.render(), expected);
    }
}
