//! Transactions through libnftables in this process (`libnftables.so.1`, the library the `nft`
//! binary is built on, loaded at run time so that building needs no -dev package). It does what
//! `nft -f` does, minus starting a process: at 1000 endpoints x 2000 policies a pod's
//! transaction takes about 22 ms this way against about 40 ms through the binary, and most of
//! what is left is the kernel validating the table. Listings and large scripts still run the
//! binary: their cache (the whole ruleset) would otherwise stay in the daemon's memory.
//!
//! The script is handed over as a memfd opened by path, not as a buffer, so nft's errors carry
//! `<path>:<line>:<columns>:` as with `nft -f -` and [`super::nft::rejected`] can name the
//! failing lines. Each run gets a fresh context, created in the calling thread, so its netlink
//! socket is in that thread's network namespace, as a child `nft` would be; one global lock
//! keeps calls into the library from overlapping.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::{Mutex, OnceLock};

use starling_policy::program::Family;
use starling_policy::render::CounterValue;

use super::nft::{rejected, Nft, NftCommand, NftError};

const LIBRARY: &str = "libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxToggle = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxText = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunFile = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The entry points used, resolved once.
struct Functions {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxToggle,
    buffer_error: CtxToggle,
    error_buffer: CtxText,
    run_from_filename: RunFile,
}

static FUNCTIONS: OnceLock<Result<Functions, String>> = OnceLock::new();
static CALLS: Mutex<()> = Mutex::new(());

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

fn load() -> Result<Functions, String> {
    let name = CString::new(LIBRARY).map_err(|error| error.to_string())?;
    // SAFETY: a valid C string; the handle is never closed, so the symbols stay valid.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("loading {LIBRARY}: {}", dl_error()));
    }
    let symbol = |name: &str| -> Result<*mut c_void, String> {
        let c_name = CString::new(name).map_err(|error| error.to_string())?;
        // SAFETY: handle is a live dlopen handle, c_name a valid C string.
        let address = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
        if address.is_null() {
            Err(format!("{LIBRARY} has no {name}: {}", dl_error()))
        } else {
            Ok(address)
        }
    };
    // SAFETY: each symbol is the libnftables function of that name, whose C signature the
    // type it is cast to matches (nftables/libnftables.h).
    unsafe {
        Ok(Functions {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(symbol("nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(symbol("nft_ctx_free")?),
            buffer_output: std::mem::transmute::<*mut c_void, CtxToggle>(symbol(
                "nft_ctx_buffer_output",
            )?),
            buffer_error: std::mem::transmute::<*mut c_void, CtxToggle>(symbol(
                "nft_ctx_buffer_error",
            )?),
            error_buffer: std::mem::transmute::<*mut c_void, CtxText>(symbol(
                "nft_ctx_get_error_buffer",
            )?),
            run_from_filename: std::mem::transmute::<*mut c_void, RunFile>(symbol(
                "nft_run_cmd_from_filename",
            )?),
        })
    }
}

fn functions() -> Result<&'static Functions, &'static str> {
    FUNCTIONS.get_or_init(load).as_ref().map_err(String::as_str)
}

/// Transactions in-process through libnftables; listings and counters as [`NftCommand`].
#[derive(Debug, Default)]
pub struct NftLibrary {
    command: NftCommand,
}

impl NftLibrary {
    /// `Err` says why the library cannot be used (not installed, a symbol missing).
    pub fn load() -> Result<NftLibrary, String> {
        functions().map_err(str::to_string)?;
        Ok(NftLibrary::default())
    }
}

/// The script in an anonymous file, and the path nft reads it by.
fn script_file(script: &str) -> std::io::Result<(std::fs::File, CString)> {
    let name = c"starling-policy";
    // SAFETY: a valid C string; the returned descriptor is owned by the File below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(script.as_bytes())?;
    let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    Ok((file, path))
}

/// Scripts larger than this (full programs, resyncs) run the binary: their parse and cache
/// would grow the daemon's heap by hundreds of MiB for good (1000 endpoints x 2000 policies:
/// 214 -> 634 MiB), and a process start is nothing beside a transaction of that size.
pub const IN_PROCESS_LIMIT: usize = 256 * 1024;

impl Nft for NftLibrary {
    fn run(&mut self, script: &str) -> Result<(), NftError> {
        if script.len() > IN_PROCESS_LIMIT {
            return self.command.run(script);
        }
        let spawn_error = |source| NftError::Spawn {
            program: LIBRARY.to_string(),
            source,
        };
        let functions =
            functions().map_err(|message| spawn_error(std::io::Error::other(message)))?;
        let (_file, path) = script_file(script).map_err(spawn_error)?;
        let _serial = CALLS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: the functions come from libnftables (see `load`); the context is used by
        // this thread only and freed before returning; `path` outlives the call.
        let (status, errors) = unsafe {
            let context = (functions.ctx_new)(0);
            if context.is_null() {
                return Err(spawn_error(std::io::Error::other("nft_ctx_new failed")));
            }
            (functions.buffer_output)(context);
            (functions.buffer_error)(context);
            let status = (functions.run_from_filename)(context, path.as_ptr());
            let text = (functions.error_buffer)(context);
            let errors = if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            };
            (functions.ctx_free)(context);
            (status, errors)
        };
        if status == 0 {
            Ok(())
        } else {
            Err(rejected(script, &errors))
        }
    }

    fn list(&mut self, family: Family) -> Result<Option<String>, NftError> {
        self.command.list(family)
    }

    fn counters(&mut self, family: Family) -> Result<Vec<CounterValue>, NftError> {
        self.command.counters(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_read_back_through_its_path() {
        let (_file, path) = script_file("add table ip starling\n").expect("memfd");
        let text = std::fs::read_to_string(path.to_str().expect("utf-8")).expect("read back");
        assert_eq!(text, "add table ip starling\n");
    }
}
