//! Logging set-up: `tracing` with a human format by default and JSON on request.
//!
//! The level comes from `RUST_LOG` (standard `EnvFilter` syntax), falling back to `info`.

use tracing_subscriber::{fmt, EnvFilter};

/// Output format for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Installs the global subscriber; a second call is a no-op so tests may call it freely.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: daemons in the lab and in tests log to files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
