//! Running work inside the pod's network namespace, given as a path (`CNI_NETNS`).
//!
//! The namespace is entered on a dedicated, short-lived thread with its own current-thread tokio
//! runtime; the calling thread's namespace never changes, so the plugin's host-side netlink
//! socket and sysctl writes stay in the host (node) namespace. The thread ends with the work, so
//! no thread is ever left in the pod's namespace.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("cannot open the network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a network namespace (setns failed: {source})")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("cannot start a runtime inside the network namespace {path}: {source}")]
    Runtime {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the worker thread for the network namespace {path} failed: {reason}")]
    Thread { path: PathBuf, reason: String },
}

/// Runs the future built by `work` inside the network namespace at `path` and returns its output.
pub async fn run_in_namespace<T, Work, Fut>(path: &Path, work: Work) -> Result<T, NamespaceError>
where
    T: Send + 'static,
    Work: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let file = File::open(path).map_err(|source| NamespaceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let thread_path = path.to_path_buf();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("cni-netns".into())
        .spawn(move || {
            let outcome = (|| {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NamespaceError::Enter {
                    path: thread_path.clone(),
                    source,
                })?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| NamespaceError::Runtime {
                        path: thread_path.clone(),
                        source,
                    })?;
                Ok(runtime.block_on(work()))
            })();
            let _ = sender.send(outcome);
        });
    if let Err(error) = spawned {
        return Err(NamespaceError::Thread {
            path: path.to_path_buf(),
            reason: error.to_string(),
        });
    }
    receiver.await.map_err(|_| NamespaceError::Thread {
        path: path.to_path_buf(),
        reason: "it ended without an answer (panicked)".into(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_regular_file_is_not_a_namespace() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = run_in_namespace(file.path(), || async {})
            .await
            .unwrap_err();
        assert!(matches!(error, NamespaceError::Enter { .. }), "{error}");
        assert!(error.to_string().contains("not a network namespace"));

        let missing = run_in_namespace(Path::new("/nonexistent/netns"), || async {})
            .await
            .unwrap_err();
        assert!(
            matches!(&missing, NamespaceError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn own_namespace_runs_work() {
        // Entering the namespace we are already in needs CAP_SYS_ADMIN only.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: entering a namespace needs root");
            return;
        }
        let answer = run_in_namespace(Path::new("/proc/self/ns/net"), || async { 42 })
            .await
            .unwrap();
        assert_eq!(answer, 42);
    }
}
