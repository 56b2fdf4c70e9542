//! The `starling` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use starling::cli::{Cli, CniCommand, Command, CrdsArgs, NodeCommand, PolicyCommand};
use starling::run_args::RunArgs;
use starling_model::config::Config;

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
        Command::Crds(args) => crds(args),
        Command::Run(args) => run(args),
        Command::Cni(CniCommand::Install) => {
            match starling::cni::install::install_from_environment() {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("starling cni install: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ipam { command } => starling::ipam::cli::main(&command),
        Command::Lab(command) => lab(command),
        Command::Node(NodeCommand::Status { socket }) => node_status(socket),
        Command::Policy(PolicyCommand::Explain {
            source,
            destination,
            packet,
            json,
            socket,
        }) => policy_explain(socket, &source, &destination, &packet, json),
    }
}

fn crds(args: CrdsArgs) -> ExitCode {
    match args.write {
        Some(dir) => match starling::crds::write_all(&dir) {
            Ok(paths) => {
                for path in paths {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("starling crds: {error}");
                ExitCode::FAILURE
            }
        },
        None => match starling::crds::all_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("starling crds: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("starling: cannot start the async runtime: {error}");
            None
        }
    }
}

fn node_status(socket: Option<std::path::PathBuf>) -> ExitCode {
    let path =
        socket.unwrap_or_else(|| std::path::PathBuf::from(starling::control::DEFAULT_SOCKET));
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(starling::daemon::control::query_node_status(&path)) {
        Ok(status) => {
            print!("{}", status.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("starling node status: {error}");
            ExitCode::FAILURE
        }
    }
}

fn policy_explain(
    socket: Option<std::path::PathBuf>,
    source: &str,
    destination: &str,
    packet: &str,
    json: bool,
) -> ExitCode {
    use starling::policy::explain_view::ExplainReply;
    let path =
        socket.unwrap_or_else(|| std::path::PathBuf::from(starling::control::DEFAULT_SOCKET));
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let query = starling::daemon::control::query_policy_explain(&path, source, destination, packet);
    match runtime.block_on(query) {
        Ok(ExplainReply::Answer(view)) => {
            if json {
                match serde_json::to_string_pretty(&view) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("starling policy explain: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", view.text);
            }
            ExitCode::SUCCESS
        }
        Ok(ExplainReply::Error { error }) => {
            eprintln!("starling policy explain: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("starling policy explain: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Box<RunArgs>) -> ExitCode {
    let mut environment: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    args.overlay(&mut environment);
    let config = match Config::from_env(&environment) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("starling run: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?config, "configuration parsed");
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(starling::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("starling run: {error:#}");
            eprintln!("starling run: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn lab(command: starling::cli::LabCommand) -> ExitCode {
    use starling::cli::LabAction;
    use starling::lab;
    let options = &command.options;
    let outcome = match command.action {
        LabAction::Up(args) => lab::up(options, &args).map(|state| {
            print!("{}", lab::summary(options, &state));
            if let Ok(matrix) = lab::ping(options) {
                print!("{}", matrix.render());
            }
            true
        }),
        LabAction::Status(args) if args.json => lab::verbs::status_json(options).map(|json| {
            println!("{json:#}");
            true
        }),
        LabAction::Status(_) => lab::status(options).map(|text| {
            print!("{text}");
            true
        }),
        LabAction::Ping => lab::ping(options).map(|matrix| {
            print!("{}", matrix.render());
            matrix.failures() == 0
        }),
        LabAction::Down => lab::down(options).map(|()| {
            println!("lab {:?} is down", options.name);
            true
        }),
        LabAction::More(verb) => lab::verbs::run(options, verb),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("starling lab: {error:#}");
            ExitCode::FAILURE
        }
    }
}
