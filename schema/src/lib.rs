//! Procurator's wire contract and domain types.
//!
//! - `common_capnp`, `master_capnp`, `worker_capnp`: generated from `capnp/*.capnp`.
//! - [`model`]: the same things as plain Rust data, plus the blueprint format and its rules.
//! - [`convert`]: wire ⇄ model.
//! - [`diff`]: what publishing a blueprint would change against the active one.
//! - [`net`]: the one RPC connection helper (connect, login, serve).
//! - [`client`]: typed async calls on the Master, used by every tool that talks to it.
//! - [`ci`]: pcr-ci's JSON API — its records and requests — and, with the `ci-client`
//!   feature, the client the command line and repohub use.

pub mod common_capnp {
    #![allow(clippy::all, clippy::unwrap_used, unused, unsafe_code)]
    include!(concat!(env!("OUT_DIR"), "/common_capnp.rs"));
}
pub mod master_capnp {
    #![allow(clippy::all, clippy::unwrap_used, unused, unsafe_code)]
    include!(concat!(env!("OUT_DIR"), "/master_capnp.rs"));
}
pub mod worker_capnp {
    #![allow(clippy::all, clippy::unwrap_used, unused, unsafe_code)]
    include!(concat!(env!("OUT_DIR"), "/worker_capnp.rs"));
}

pub mod ci;
pub mod client;
pub mod convert;
pub mod defaults;
pub mod diff;
pub mod model;
pub mod net;

pub use convert::{ErrorCode, RemoteError};

/// An error and its causes as one line, `what failed: because: because`, leaving out a cause
/// whose text its parent already quotes. Every binary prints errors this way.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
