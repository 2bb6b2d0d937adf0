//! Shared scaffolding for Procurator's integration tests: locating (and if needed building) the
//! workspace's binaries, starting a real control plane process on a free port with a temporary
//! database, and building test VM images. Never used by production code.

pub mod vm_image;
