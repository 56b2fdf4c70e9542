//! `lab ping`: every pod pings every other pod once; a matrix of the results.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::pods::LabPod;
use super::topology::in_ns;

/// Outcome of the all-pairs ping.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Pings every ordered pair, a few pairs at a time.
pub fn matrix(pods: &[LabPod]) -> PingMatrix {
    let names: Vec<String> = pods.iter().map(LabPod::qualified).collect();
    let mut reached = vec![vec![true; pods.len()]; pods.len()];
    let mut jobs = Vec::new();
    for (i, from) in pods.iter().enumerate() {
        for (j, to) in pods.iter().enumerate() {
            if i != j {
                jobs.push((i, j, from.namespace.clone(), to.address));
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
