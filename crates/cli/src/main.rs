//! `strata`: the command-line tool for Strata databases.
//!
//! The binary stays thin: [`args`] declares the command line with clap, [`commands`] calls the engine,
//! [`render`] turns results into text or one JSON document, and [`failure`] maps errors to exit codes.
//! [`sync`] runs the sync commands through `strata_sync` on a tokio runtime created here. [`demo`] is a
//! guided tour.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod args;
mod commands;
mod demo;
mod failure;
mod handle;
mod render;
mod sync;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version print and exit 0; usage errors exit 2, as an envelope with --json.
            let usage = e.use_stderr();
            if usage && std::env::args_os().any(|a| a == "--json") {
                let msg = e.kind().to_string();
                let full = e.to_string();
                let first = full
                    .lines()
                    .next()
                    .unwrap_or(&msg)
                    .trim_start_matches("error: ");
                render::print_line(
                    &render::error_envelope("usage", failure::EXIT_USAGE, first, None).to_string(),
                );
            }
            e.exit();
        }
    };
    let json = cli.global.json;
    // Remotes open by URL through every backend this build has; memory:// is refused (it would vanish
    // with the process).
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::persistent()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("cannot start the async runtime: {e}");
            eprintln!("error: {msg}");
            if json {
                render::print_line(
                    &render::error_envelope("error", failure::EXIT_ERROR, &msg, None).to_string(),
                );
            }
            return ExitCode::from(failure::EXIT_ERROR);
        }
    };
    match commands::run(cli, &rt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            if json {
                render::print_line(
                    &render::error_envelope(f.code_name(), f.code, &f.message, f.detail.as_ref())
                        .to_string(),
                );
            }
            ExitCode::from(f.code)
        }
    }
}
