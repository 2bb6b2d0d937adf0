//! autonix: see README.md
