//! Steward command-line interface and server entry point.
//!
//! `steward serve` runs the gateway; every other command talks to a running Steward's
//! admin API (`--server`, `--token`) or works offline (`config check`, `policy validate`,
//! `policy test`, `token attenuate`, `audit verify --file`, `scan`).

mod audit_cli;
mod audit_tasks;
mod background;
mod cli;
mod client;
mod config;
mod http;
mod incident_cli;
mod logging;
mod mcp_cli;
mod serve;
mod tls;
mod vault_cmd;
mod webhook;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the request path allocates and frees across runtime
/// threads, where glibc spent a tenth of the CPU in its own bookkeeping.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(cli::run(args));
    // Lines logged last (shutdown, the error below) are written before the process ends.
    logging::flush();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
