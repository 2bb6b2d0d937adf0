//! `pcr-test`: see `cli::commands` for the commands.

fn main() -> std::process::ExitCode {
    cli::entry()
}
