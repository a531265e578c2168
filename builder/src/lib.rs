//! atomicbuild: builds immutable, OSTree-based container-host OS images from
//! one TOML manifest. See README.md for the manifest reference and the
//! module map; dependencies point down that map only (checked by
//! `scripts/check-structure` in the tests).
#![deny(missing_docs)]

pub mod app;
pub mod budgets;
pub mod cache;
pub mod cli;
pub mod containers;
pub mod diff;
pub mod disk;
pub mod distro;
pub mod failpoint;
pub mod formats;
pub mod fsutil;
pub mod kmods;
pub mod lint;
pub mod manifest;
pub mod model;
pub mod objects;
pub mod pipeline;
pub mod preflight;
pub mod progress;
pub mod publish;
pub mod qemu;
pub mod sbom;
pub mod signing;
pub mod stage;
pub mod sums;
pub mod updates;
pub mod upload;
pub mod verify;
pub mod vmtest;

pub use app::run;
