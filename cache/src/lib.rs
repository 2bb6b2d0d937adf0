//! cache: see README.md
