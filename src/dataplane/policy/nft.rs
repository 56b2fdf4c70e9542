//! Running `nft`: one transaction from a script on stdin (`nft -f -`, atomic: all of it or
//! none), the JSON listing of one of Starling's policy tables, and its named counters (read
//! over nfnetlink). `nft` runs as a child of the
//! calling thread, hence in that thread's network namespace. [`Nft`] is the seam tests fake.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use starling_policy::program::Family;
use starling_policy::render::{names::TABLE, nft_family, CounterValue};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// nft refused the transaction; nothing of it was applied.
    #[error("nft rejected the transaction: {message}{}", failing_text(.failing))]
    Rejected {
        /// nft's `Error:` lines.
        message: String,
        /// The script lines nft pointed at (`<line>: <text>`).
        failing: Vec<String>,
        stderr: String,
    },
    #[error("nft -j list table {family} {TABLE}: {stderr}")]
    List {
        family: &'static str,
        stderr: String,
    },
    #[error("reading the counters of table {family} {TABLE} (nfnetlink): {message}")]
    Counters {
        family: &'static str,
        message: String,
    },
}

fn failing_text(failing: &[String]) -> String {
    if failing.is_empty() {
        String::new()
    } else {
        format!(" (at {})", failing.join("; "))
    }
}

/// What Starling needs of nft.
pub trait Nft: Send {
    /// Applies `script` as one transaction.
    fn run(&mut self, script: &str) -> Result<(), NftError>;
    /// `nft -j list table <family> starling`, or `None` when the table does not exist.
    fn list(&mut self, family: Family) -> Result<Option<String>, NftError>;
    /// The named counters of table `<family> starling` with their values (none when the table
    /// does not exist). The default, for stand-ins that hold no kernel state, has none.
    fn counters(&mut self, family: Family) -> Result<Vec<CounterValue>, NftError> {
        let _ = family;
        Ok(Vec::new())
    }
}

/// The real `nft` binary (`nft` from `PATH` unless told otherwise).
#[derive(Debug, Clone)]
pub struct NftCommand {
    pub program: PathBuf,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand {
            program: PathBuf::from("nft"),
        }
    }
}

impl NftCommand {
    fn spawn_error(&self, source: std::io::Error) -> NftError {
        NftError::Spawn {
            program: self.program.display().to_string(),
            source,
        }
    }

    /// stdout of a listing, `None` when the table does not exist.
    fn listing(
        &self,
        args: &[&str],
        failed: impl FnOnce(String) -> NftError,
    ) -> Result<Option<String>, NftError> {
        let output = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|error| self.spawn_error(error))?;
        if output.status.success() {
            return Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()));
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        Err(failed(stderr))
    }
}

impl Nft for NftCommand {
    fn run(&mut self, script: &str) -> Result<(), NftError> {
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| self.spawn_error(error))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means nft exited early; its status and stderr say why.
            let _ = stdin.write_all(script.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|error| self.spawn_error(error))?;
        if output.status.success() {
            return Ok(());
        }
        Err(rejected(script, &String::from_utf8_lossy(&output.stderr)))
    }

    fn list(&mut self, family: Family) -> Result<Option<String>, NftError> {
        let family = nft_family(family);
        self.listing(&["-j", "list", "table", family, TABLE], |stderr| {
            NftError::List { family, stderr }
        })
    }

    /// Straight from the kernel ([`super::netlink`]): `nft list counters` would list every
    /// rule first.
    fn counters(&mut self, family: Family) -> Result<Vec<CounterValue>, NftError> {
        super::netlink::dump_counters(family).map_err(|message| NftError::Counters {
            family: nft_family(family),
            message,
        })
    }
}

/// nft's complaint about `script`: its `Error:` lines and the script lines it names
/// (`/dev/stdin:<line>:<columns>: Error: ...`).
pub fn rejected(script: &str, stderr: &str) -> NftError {
    let lines: Vec<&str> = script.lines().collect();
    let mut message = vec![];
    let mut failing = vec![];
    for line in stderr.lines() {
        let Some((location, error)) = line.split_once(" Error: ") else {
            continue;
        };
        message.push(error.trim().to_string());
        let number = location
            .split(':')
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(text) = number
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| lines.get(i))
        {
            let entry = format!("line {}: {text}", number.unwrap_or_default());
            if !failing.contains(&entry) && failing.len() < 5 {
                failing.push(entry);
            }
        }
    }
    message.dedup();
    let stderr = stderr.trim().to_string();
    NftError::Rejected {
        message: if message.is_empty() {
            stderr.clone()
        } else {
            message.join("; ")
        },
        failing,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_names_the_failing_lines() {
        let script =
            "add table ip starling\nadd element ip starling s-1 { 10.0.0.0/8, 10.1.0.0/16 }\n";
        let stderr = "/dev/stdin:2:42-52: Error: conflicting intervals specified\n\
                      add element ip starling s-1 { 10.0.0.0/8, 10.1.0.0/16 }\n\
                      \x20                            ~~~~~~~~~~  ^^^^^^^^^^^\n";
        let error = rejected(script, stderr);
        let text = error.to_string();
        assert!(text.contains("conflicting intervals specified"), "{text}");
        assert!(
            text.contains("line 2: add element ip starling s-1 { 10.0.0.0/8, 10.1.0.0/16 }"),
            "{text}"
        );
        let opaque = rejected(script, "something odd\n").to_string();
        assert!(opaque.contains("something odd"), "{opaque}");
    }
}
