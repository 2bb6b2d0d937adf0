//! Small helpers every Procurator process shares, each written once: the wall clock in
//! milliseconds ([`now_ms`]), waiting for a shutdown signal ([`signal`]), starting children that
//! die with their parent ([`process`]), a thread for `!Send` futures ([`runtime`]), invoking nix
//! ([`nix`]), secret files ([`secret`]), and —
//! with the `sqlite` feature — opening a SQLite file with WAL and running its migrations
//! ([`sqlite`]).
//!
//! It depends on no other workspace crate, so any of them can use it, as ripgrep's crates use
//! `grep-cli`.

pub mod nix;
pub mod process;
pub mod runtime;
pub mod secret;
pub mod signal;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Milliseconds since the Unix epoch: the unit of every timestamp Procurator records.
/// A clock before 1970 reads as 0 rather than failing.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
