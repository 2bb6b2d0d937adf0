//! `pcr`: the short name of `pcr-test`.

fn main() -> std::process::ExitCode {
    cli::entry()
}
