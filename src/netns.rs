//! Named network namespaces, the way `ip netns add` makes them (a bind mount of the namespace
//! file under /run/netns), and running code inside one.
//!
//! Contract: [`create`] returns a [`NetnsGuard`] that deletes the namespace when dropped, even
//! while unwinding from a panic. [`run_in`] and [`run_async_in`] execute on a dedicated thread
//! that joined the namespace with `setns(CLONE_NEWNET)`; everything opened there (netlink
//! sockets, /proc/sys/net files, child processes it spawns) belongs to that namespace, and the
//! calling thread is never moved. Nothing here changes the caller's own namespace.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where named namespaces live (shared with iproute2).
pub const NETNS_DIRECTORY: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {name:?}: {action}: {source}")]
    Io {
        name: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {name:?}: {action}: {source}")]
    Sys {
        name: String,
        action: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("network namespace name {0:?} must be non-empty and contain no '/'")]
    BadName(String),
    #[error("network namespace {name:?}: could not start runtime: {source}")]
    Runtime {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Deletes the namespace on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        path(&self.name)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(error) = delete(&self.name) {
            tracing::warn!(%error, "could not delete network namespace");
        }
    }
}

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIRECTORY).join(name)
}

/// A name unique to this process: `<prefix>-<pid>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{counter}", std::process::id())
}

fn check_name(name: &str) -> Result<(), NetnsError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(NetnsError::BadName(name.to_string()));
    }
    Ok(())
}

/// Makes /run/netns a shared mount point as iproute2 does, so namespaces stay visible to
/// other mount namespaces.
fn prepare_directory(name: &str) -> Result<(), NetnsError> {
    std::fs::create_dir_all(NETNS_DIRECTORY).map_err(|source| NetnsError::Io {
        name: name.to_string(),
        action: "create /run/netns",
        source,
    })?;
    let make_shared = || {
        mount(
            None::<&str>,
            NETNS_DIRECTORY,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => mount(
            Some(NETNS_DIRECTORY),
            NETNS_DIRECTORY,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| make_shared())
        .map_err(|source| NetnsError::Sys {
            name: name.to_string(),
            action: "make /run/netns a shared mount",
            source,
        }),
        Err(source) => Err(NetnsError::Sys {
            name: name.to_string(),
            action: "make /run/netns a shared mount",
            source,
        }),
    }
}

/// Creates the named namespace (like `ip netns add NAME`).
pub fn create(name: &str) -> Result<NetnsGuard, NetnsError> {
    check_name(name)?;
    prepare_directory(name)?;
    let target = path(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|source| NetnsError::Io {
            name: name.to_string(),
            action: "create the namespace file",
            source,
        })?;
    // From here on the guard removes the file even if the mount fails.
    let guard = NetnsGuard {
        name: name.to_string(),
    };
    let owned_name = name.to_string();
    let result = std::thread::spawn(move || -> Result<(), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
            name: owned_name.clone(),
            action: "unshare(CLONE_NEWNET)",
            source,
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &path(&owned_name),
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NetnsError::Sys {
            name: owned_name.clone(),
            action: "bind-mount the namespace",
            source,
        })
    })
    .join();
    match result {
        Ok(Ok(())) => Ok(guard),
        Ok(Err(error)) => Err(error),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Deletes the named namespace (like `ip netns delete NAME`); absent is not an error.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    check_name(name)?;
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(NetnsError::Sys {
                name: name.to_string(),
                action: "unmount the namespace",
                source,
            })
        }
    }
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            name: name.to_string(),
            action: "remove the namespace file",
            source,
        }),
    }
}

/// Runs `work` on a new thread inside the named namespace and returns its result. A panic in
/// `work` is propagated to the caller.
pub fn run_in<T, F>(name: &str, work: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    check_name(name)?;
    let namespace = File::open(path(name)).map_err(|source| NetnsError::Io {
        name: name.to_string(),
        action: "open the namespace file",
        source,
    })?;
    std::thread::scope(|scope| {
        let thread = scope.spawn(move || -> Result<T, NetnsError> {
            setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
                name: name.to_string(),
                action: "setns(CLONE_NEWNET)",
                source,
            })?;
            Ok(work())
        });
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs the future made by `make` on a current-thread tokio runtime inside the namespace.
/// Do not use `spawn_blocking` in there: blocking-pool threads are not in the namespace.
pub fn run_async_in<T, F, Fut>(name: &str, make: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    let owned_name = name.to_string();
    run_in(name, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetnsError::Runtime {
                name: owned_name,
                source,
            })?;
        Ok(runtime.block_on(make()))
    })?
}
