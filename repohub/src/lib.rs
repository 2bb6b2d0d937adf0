//! repohub: see README.md
