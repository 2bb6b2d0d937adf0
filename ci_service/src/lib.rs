//! ci_service: see README.md
