//! `pcr-ci`: turns a push of a cluster flake into a published generation.
//!
//! For every new commit of a repository it runs a *pipeline*: check the commit out, `nix flake
//! check`, `nix eval --json .#blueprintJSON`, build every closure in one `nix build`, copy the
//! closures to the cluster's binary cache, pin them there under the generation's name, and call
//! `publishState` on the control plane. A failing step stops the run with its output kept;
//! nothing is published and the running generation stays. After a publish, the rollout is
//! watched until every changed instance is healthy, so each run also records how long the
//! cluster took to converge, phase by phase.
//!
//! Pushes arrive three ways: the `post-receive` hook installed into the bare repositories
//! pcr-ci serves ([`repos`]), a webhook for Gitea/GitHub with HMAC signatures ([`webhook`]), and
//! polling a remote with `git ls-remote`. Pipelines of one repository run one after the other,
//! in push order, so generations follow commit order and the later push wins.
//!
//! Every run — steps, timings, every log line as it arrives — is in SQLite ([`store`]); repohub
//! and the command line read it through [`store::Store`] or the JSON API ([`server`]; its
//! records and client are the contract in `schema::ci`).

pub mod config;
pub mod nix;
pub mod pipeline;
pub mod repos;
pub mod rollout;
pub mod server;
pub mod store;
pub mod webhook;

mod process;

pub use config::Config;
pub use store::Store;

pub use support::now_ms;
