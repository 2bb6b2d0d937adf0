//! worker: see README.md
