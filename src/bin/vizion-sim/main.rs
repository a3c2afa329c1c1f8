//! vizion-sim: a simulated Vizion for development, demos and tests.

mod api;
mod callbacks;
mod journey;
mod serve;
mod store;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "A simulated Vizion: its reference API and signed webhook journeys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Serve Vizion's reference API and play journeys into callback URLs.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
    }
}
