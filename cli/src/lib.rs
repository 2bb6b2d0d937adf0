//! Procurator's command line: `pcr-test` (and its short alias `pcr`).
//!
//! Every command connects to the control plane with the one helper in `schema::net`, logs in
//! with the operator token, makes its calls through `schema::client`, and prints either a
//! readable table or (`--json`) the model types as JSON for scripts. `pcr tui` is the
//! interactive terminal UI ([`interactive`]).

pub mod commands;
pub mod conn;
pub mod interactive;
pub mod pipelines;
pub mod plan;
pub mod render;
pub mod table;
pub mod up;

use clap::Parser;

/// The whole program; both binaries (`pcr-test`, `pcr`) are this.
pub fn entry() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // capnp-rpc clients are !Send: everything runs on one LocalSet.
    let result = tokio::task::LocalSet::new().block_on(&runtime, commands::run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, each a short sentence.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
