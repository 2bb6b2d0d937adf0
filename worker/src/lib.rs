//! Procurator's worker: turns the control plane's assignment into running, healthy microVMs
//! and processes on one machine.
//!
//! `pcr-worker` ([`agent`]) registers with the control plane, receives assignment changes
//! (pushed, and polled as a fallback) and reports what it observes. In the middle sits plain
//! data: [`plan::plan`] compares the assignment with what runs and returns actions;
//! [`reconcile`] executes them with one supervisor per instance that fetches the closure
//! ([`closure`]), starts it through a [`driver`] (QEMU microVM, cloud-hypervisor microVM or
//! process), checks its [`health`] and restarts it per its policy. Workloads are detached from
//! the worker and recorded in the [`state`] directory, so they survive worker restarts and
//! control-plane outages and are re-adopted instead of duplicated.

pub mod agent;
pub mod closure;
pub mod config;
pub mod driver;
pub mod health;
pub mod http1;
pub mod plan;
pub mod procfs;
pub mod reconcile;
pub mod state;
