//! Giving back memory that only start-up needed, once the daemon is ready.
//!
//! Start-up runs code that never runs again (datastore sync, the first full program, the
//! first BGP exchange), and the kernel maps a binary's pages in 64 KiB runs around each fault
//! ("fault-around"), so a ready daemon has most of its 39 MB executable resident although the
//! steady state executes a small part of it. Those pages are clean and backed by the file: the
//! daemon drops its mappings of them once ready, and what it runs afterwards faults back in.
//! Anonymous pages (relocated data) are never touched, so nothing is lost.

use std::path::Path;

/// Hands back the heap's free pages and the executable's clean pages mapped during start-up;
/// returns the KiB of the executable's mappings released (0 where this is not Linux).
pub fn release_startup_memory() -> u64 {
    crate::dataplane::release_freed_heap();
    let Ok(executable) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut released = 0;
    for mapping in clean_mappings_of(&smaps, &executable) {
        // SAFETY: the range is one of this process's own read-only, file-backed mappings with
        // no anonymous (written) pages; dropping its pages only makes later reads fault them in
        // again from the file, which holds the same bytes.
        let result = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.length,
                libc::MADV_DONTNEED,
            )
        };
        if result == 0 {
            released += mapping.resident_kib;
        }
    }
    released
}

#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    length: usize,
    resident_kib: u64,
}

/// The read-only, private mappings of `file` in an smaps listing whose pages all come from
/// the file (`Anonymous: 0 kB`).
fn clean_mappings_of(smaps: &str, file: &Path) -> Vec<Mapping> {
    let mut found = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    let file = file.to_string_lossy();
    for line in smaps.lines() {
        if let Some(header) = mapping_header(line) {
            if let Some((mapping, true)) = current.take() {
                found.push(mapping);
            }
            let wanted = header.path == file
                && !header.permissions.contains('w')
                && header.permissions.ends_with('p');
            current = Some((
                Mapping {
                    start: header.start,
                    length: header.end - header.start,
                    resident_kib: 0,
                },
                wanted,
            ));
            continue;
        }
        let Some((mapping, wanted)) = current.as_mut() else {
            continue;
        };
        if let Some(value) = field_kib(line, "Rss:") {
            mapping.resident_kib = value;
        }
        if field_kib(line, "Anonymous:").is_some_and(|kib| kib > 0) {
            *wanted = false;
        }
    }
    if let Some((mapping, true)) = current {
        found.push(mapping);
    }
    found
}

/// A mapping's first line in smaps.
struct Header<'a> {
    start: usize,
    end: usize,
    permissions: &'a str,
    path: &'a str,
}

/// Parses `start-end perms offset dev inode path`; None for the field lines between headers.
fn mapping_header(line: &str) -> Option<Header<'_>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let permissions = fields.next()?;
    // offset, device and inode, then the path (absent for anonymous mappings).
    let path = fields.nth(3).unwrap_or("");
    (end > start).then_some(Header {
        start,
        end,
        permissions,
        path,
    })
}

fn field_kib(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix(name)?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0200000 r--p 00000000 fe:00 42 /usr/bin/starling
Rss:                2060 kB
Anonymous:             0 kB
55d0c0200000-55d0c1a00000 r-xp 00200000 fe:00 42 /usr/bin/starling
Rss:               18072 kB
Anonymous:             0 kB
55d0c1a00000-55d0c1b00000 r--p 01a00000 fe:00 42 /usr/bin/starling
Rss:                 708 kB
Anonymous:           700 kB
55d0c1b00000-55d0c1b10000 rw-p 01b00000 fe:00 42 /usr/bin/starling
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1560 kB
Anonymous:             0 kB
7f1000000000-7f1000100000 rw-p 00000000 00:00 0
Rss:                 980 kB
Anonymous:           980 kB
";

    #[test]
    fn only_the_binarys_clean_read_only_mappings_are_released() {
        let found = clean_mappings_of(SMAPS, Path::new("/usr/bin/starling"));
        assert_eq!(
            found,
            vec![
                Mapping {
                    start: 0x55d0c0000000,
                    length: 0x200000,
                    resident_kib: 2060
                },
                Mapping {
                    start: 0x55d0c0200000,
                    length: 0x1800000,
                    resident_kib: 18072
                },
            ]
        );
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let before = std::hint::black_box(format!("{:?}", vec![1, 2, 3]));
        release_startup_memory();
        assert_eq!(format!("{:?}", vec![1, 2, 3]), before);
    }
}
