//! The binary: install the TLS provider, parse the arguments, load the configuration once (`hash-token` needs
//! none), set up logging, and run the command in `cli`, whose outcome is the exit code. No domain logic here.

use std::process::ExitCode;

use clap::Parser;
use litellm_sync::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (reqwest and ldap3 both use rustls with ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if let cli::Command::HashToken(a) = &cli.command {
        return cli::hash_token(a);
    }
    let cfg = match cli::load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    litellm_sync::telemetry::init(cfg.log.format, &cfg.log.level, cli.verbose);
    cli::run(cli, cfg).await
}
