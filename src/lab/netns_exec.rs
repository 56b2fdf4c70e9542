//! Running async work inside a named network namespace from the lab's (root-namespace) process:
//! a dedicated thread joins the namespace and drives a current-thread runtime, so the caller's
//! own thread never changes namespace.

use std::fs::File;

use anyhow::{anyhow, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Runs `future` to completion on a thread inside `/run/netns/<ns>`.
pub fn block_on_in_netns<F, T>(ns: &str, future: F) -> Result<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let handle = File::open(&path).with_context(|| format!("opening network namespace {path}"))?;
    std::thread::spawn(move || -> Result<T> {
        setns(&handle, CloneFlags::CLONE_NEWNET).context("joining the network namespace")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a runtime")?;
        Ok(runtime.block_on(future))
    })
    .join()
    .map_err(|_| anyhow!("the thread working in namespace {ns} panicked"))?
}
