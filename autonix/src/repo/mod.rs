//! The repository side: walking it ([`scan`]), the analysis data ([`model`]), turning an
//! inventory into an analysis ([`analysis`]) and an analysis into a flake ([`flake`]).

pub mod analysis;
pub mod flake;
pub mod model;
pub mod scan;
