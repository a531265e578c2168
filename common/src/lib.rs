//! What the image builder (`atomicbuild`) and the agents that run on its
//! hosts (`atomic-firstboot`, the update agent) share, so that no code is
//! copied between them: the one way external programs are run ([`cmd`]),
//! files written atomically ([`atomic`]), Boot Loader Specification entries
//! and the `grub.cfg` made from them ([`bls`], [`grub`]), and the check of
//! an SSH public key ([`sshkey`]), version comparison ([`version`]), and
//! the list of container images preloaded into an image ([`images`]) and
//! containerd's registry settings ([`registries`]).
//!
//! This crate depends on no other crate of the workspace.
#![deny(missing_docs)]

pub mod atomic;
pub mod bls;
pub mod cmd;
pub mod fleet;
pub mod grub;
pub mod images;
pub mod registries;
pub mod sshkey;
pub mod strategy;
pub mod units;
pub mod version;
