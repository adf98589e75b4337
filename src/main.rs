//! The `junction` binary: parse arguments, load the config, run the broker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "junction", version, about = "MQTT broker with an SQL rule engine")]
struct Cli {
    /// Configuration file (default: ./junction.toml if it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Rule tools.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Run a rule's SQL on a sample message or event and print the outputs, one JSON object per line.
    Test(junction::rules::tester::RuleTestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Rule {
        command: RuleCommand::Test(args),
    }) = cli.command
    {
        return junction::rules::tester::run(args);
    }
    let cfg = match junction::config::load(cli.config.as_deref(), junction::config::process_env()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("junction: configuration refused:\n{e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cfg.log.level.as_str()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("junction: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(junction::app::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("junction: {e}");
            ExitCode::FAILURE
        }
    }
}
