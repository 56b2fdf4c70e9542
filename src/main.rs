//! The `starling` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use starling::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    starling::logging::init(cli.log_format);
    match cli.command {
        Command::Version => {
            println!("starling {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Crds => {
            eprintln!("starling crds: not built yet");
            ExitCode::FAILURE
        }
        Command::Ipam { command } => starling::ipam::cli::main(&command),
        Command::Run => {
            eprintln!("starling run: not built yet");
            ExitCode::FAILURE
        }
    }
}
