//! `vizion-sim`: a stand-in for Vizion, for local development, demos, tests and
//! benchmarks, since the real API cannot be reached from those places.

mod api;
mod callbacks;
mod journey;
mod load;
mod load_journeys;
mod serve;
mod store;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vizion-sim",
    version,
    about = "A Vizion simulator for vizion-bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves Vizion's reference API from memory and plays container journeys into
    /// the references' callback URLs as signed webhooks.
    Serve(serve::ServeArgs),
    /// Sends distinct signed updates to a webhook URL as fast as asked, and reports
    /// throughput and answer-latency percentiles.
    Load(load::LoadArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Load(args) => load::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vizion-sim: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
