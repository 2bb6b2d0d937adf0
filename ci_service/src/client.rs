//! pcr-ci's client lives with its contract in `schema::ci`; this keeps the old path working.

pub use schema::ci::client::*;
