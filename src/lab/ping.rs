//! `lab ping`: every pod pings every other pod once; a matrix of the results, one per address
//! family in a dual-stack lab.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use super::pods::LabPod;
use super::topology::in_ns;

/// Outcome of the all-pairs ping of one address family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PingMatrix {
    pub pods: Vec<String>,
    /// `reached[from][to]`; the diagonal is true.
    pub reached: Vec<Vec<bool>>,
}

impl PingMatrix {
    pub fn failures(&self) -> usize {
        self.reached.iter().flatten().filter(|ok| !**ok).count()
    }

    pub fn pairs(&self) -> usize {
        let n = self.pods.len();
        n * n.saturating_sub(1)
    }

    pub fn render(&self) -> String {
        let width = self.pods.iter().map(String::len).max().unwrap_or(4).max(4);
        let mut out = format!("{:<width$}", "from\\to");
        for pod in &self.pods {
            let _ = write!(out, " {pod:>width$}");
        }
        out.push('\n');
        for (from, row) in self.pods.iter().zip(&self.reached) {
            let _ = write!(out, "{from:<width$}");
            for (to, ok) in self.pods.iter().zip(row) {
                let cell = if from == to {
                    "-"
                } else if *ok {
                    "ok"
                } else {
                    "LOST"
                };
                let _ = write!(out, " {cell:>width$}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} of {} pairs reached, loss {:.0}%",
            self.pairs() - self.failures(),
            self.pairs(),
            if self.pairs() == 0 {
                0.0
            } else {
                100.0 * self.failures() as f64 / self.pairs() as f64
            }
        );
        out
    }
}

fn ping(namespace: &str, address: IpAddr) -> bool {
    // Three tries a pair: the first packet may wait for ARP/neighbour resolution.
    in_ns(
        namespace,
        "ping",
        &["-c", "1", "-W", "1", &address.to_string()],
    )
    .is_ok()
        || in_ns(
            namespace,
            "ping",
            &["-c", "2", "-i", "0.2", "-W", "1", &address.to_string()],
        )
        .is_ok()
}

/// The IPv4 matrix and, in a dual-stack lab, the IPv6 one: `lab ping` fails if either has a
/// lost pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PingReport {
    pub ipv4: PingMatrix,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<PingMatrix>,
}

impl PingReport {
    /// The matrices with their family's name.
    fn matrices(&self) -> impl Iterator<Item = (&'static str, &PingMatrix)> {
        std::iter::once(("IPv4", &self.ipv4)).chain(self.ipv6.iter().map(|m| ("IPv6", m)))
    }

    /// Lost pairs over both families.
    pub fn failures(&self) -> usize {
        self.matrices().map(|(_, m)| m.failures()).sum()
    }

    /// Pairs over both families.
    pub fn pairs(&self) -> usize {
        self.matrices().map(|(_, m)| m.pairs()).sum()
    }

    /// One matrix, or each under its family's heading.
    pub fn render(&self) -> String {
        if self.ipv6.is_none() {
            return self.ipv4.render();
        }
        self.matrices()
            .map(|(family, matrix)| format!("{family}:\n{}", matrix.render()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Which address of a pod a matrix pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The pod's address of this family (a pod without one counts as unreachable).
    pub fn address(self, pod: &LabPod) -> Option<IpAddr> {
        match self {
            Family::V4 => pod.address.filter(IpAddr::is_ipv4),
            Family::V6 => pod.address_v6.map(IpAddr::V6),
        }
    }
}

/// Pings every ordered pair of both families (IPv6 only when `ipv6`).
pub fn report(pods: &[LabPod], ipv6: bool) -> PingReport {
    PingReport {
        ipv4: matrix(pods, Family::V4),
        ipv6: ipv6.then(|| matrix(pods, Family::V6)),
    }
}

/// Pings every ordered pair on one family's addresses, a few pairs at a time.
pub fn matrix(pods: &[LabPod], family: Family) -> PingMatrix {
    let names: Vec<String> = pods.iter().map(LabPod::qualified).collect();
    let mut reached = vec![vec![true; pods.len()]; pods.len()];
    let mut jobs = Vec::new();
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i != j {
                jobs.push((i, j, from.namespace.clone(), family.address(to)));
            }
        }
    }
    for chunk in jobs.chunks(16) {
        let results: Vec<(usize, usize, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(i, j, namespace, address)| {
                    let handle = scope
                        .spawn(move || address.is_some_and(|address| ping(namespace, address)));
                    (*i, *j, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, j, handle)| (i, j, handle.join().unwrap_or(false)))
                .collect()
        });
        for (i, j, ok) in results {
            reached[i][j] = ok;
        }
    }
    PingMatrix {
        pods: names,
        reached,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(lost: usize) -> PingMatrix {
        let mut reached = vec![vec![true; 2]; 2];
        if lost > 0 {
            reached[0][1] = false;
        }
        PingMatrix {
            pods: vec!["default/a".to_string(), "default/b".to_string()],
            reached,
        }
    }

    #[test]
    fn a_loss_in_either_family_fails_the_report() {
        let v4_only = PingReport {
            ipv4: matrix(0),
            ipv6: None,
        };
        assert_eq!((v4_only.failures(), v4_only.pairs()), (0, 2));
        assert!(!v4_only.render().contains("IPv4:"));
        let v6_lost = PingReport {
            ipv4: matrix(0),
            ipv6: Some(matrix(1)),
        };
        assert_eq!((v6_lost.failures(), v6_lost.pairs()), (1, 4));
        let text = v6_lost.render();
        assert!(
            text.contains("IPv4:\n") && text.contains("IPv6:\n"),
            "{text}"
        );
        assert!(text.contains("LOST"), "{text}");
    }
}
