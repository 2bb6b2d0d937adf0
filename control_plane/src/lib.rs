//! The Procurator control plane ("the Master").
//!
//! It holds the cluster's desired state (generations published by CI), the workers and what
//! they observe, and the placement that joins the two, all in one SQLite file. Workers and
//! operators reach it over Cap'n Proto RPC ([`rpc`]); a token decides which capability a
//! connection gets ([`auth`]).
//!
//! Layout: [`scheduler`] is a pure function; [`cluster`] applies requests to the cluster in one
//! transaction each; [`store`] is the SQLite file; [`rpc`] and [`http`] are the edges.

pub mod auth;
pub mod cluster;
pub mod http;
pub mod rpc;
pub mod scheduler;
pub mod store;
