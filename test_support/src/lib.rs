//! test_support: see README.md
