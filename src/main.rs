//! The `starling` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use starling::cli::{Cli, CniCommand, Command};

fn main() -> ExitCode {
    // Runtimes execute /opt/cni/bin/starling with CNI_COMMAND set: behave as the CNI plugin.
    if starling::cni::is_plugin_invocation() {
        return starling::cni::run_plugin();
    }
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
        Command::Cni(CniCommand::Install) => {
            match starling::cni::install::install_from_environment() {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("starling cni install: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            eprintln!("starling run: not built yet");
            ExitCode::FAILURE
        }
    }
}
