//! The `binaryrepo` command line.

use binaryrepo::config::{Config, EXAMPLE};
use binaryrepo::App;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "binaryrepo", version, about = "Binary artifact manager: hosted, remote and virtual repositories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (with no config: a hosted, a remote and a virtual repository per format).
    Serve {
        /// TOML config file.
        #[arg(long, env = "BINARYREPO_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a commented sample configuration.
    SampleConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BINARYREPO_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::SampleConfig => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Command::Serve { config } => {
            let config = Config::load(config.as_deref(), std::env::vars())?;
            let app = App::build(config).await?;
            tracing::info!("data under {}", app.config.storage.path.display());
            for line in app.describe() {
                tracing::info!("serving {line}");
            }
            app.serve().await
        }
    }
}
