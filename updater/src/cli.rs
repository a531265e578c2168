//! The command line (clap structs only; dispatch is in [`crate::run`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Keeps this host on the newest signed OSTree commit of its stream: polls
/// the update repository, pulls and stages a newer commit, reboots into
/// it, checks its health and marks it good, and rolls back a bad one.
#[derive(Debug, Parser)]
#[command(name = "atomic-update", version)]
pub struct Cli {
    /// Read the settings' drop-ins from DIR (repeat for several, later ones
    /// win) instead of /usr/lib, /run and /etc's atomic-update/config.d:
    /// for `slots` and `release-slot` run from an admin's machine.
    #[arg(long, value_name = "DIR", global = true)]
    pub config_dir: Vec<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The agent (atomic-update.service): check this boot, then poll for
    /// updates every poll_interval.
    Agent,
    /// Booted, staged, rollback and bad versions, and the settings.
    Status,
    /// Look for an update now; stage it; with --now reboot into it.
    Upgrade {
        /// Reboot into a staged update right away.
        #[arg(long)]
        now: bool,
    },
    /// Drop a pending update (staged, or the default but not booted yet), or
    /// else make the previous deployment the default; with --now reboot.
    Rollback {
        /// Reboot right away.
        #[arg(long)]
        now: bool,
    },
    /// List who holds the reboot slots of this host's `[lock] group` in etcd.
    Slots,
    /// Free the reboot slots HOST holds in etcd (a host that will not come
    /// back; a dead holder's slot also frees itself after `[lock] ttl`).
    ReleaseSlot {
        /// The host name in the slot (see `slots`).
        host: String,
    },
    /// Stop taking updates until `resume`.
    Pause,
    /// Take updates again.
    Resume,
    /// Write grub.cfg for the boot entries next to `-o` (what ostree's grub2
    /// backend runs as /usr/sbin/grub-mkconfig).
    GrubMkconfig {
        /// The grub.cfg to write (BOOT/loader.N/grub.cfg).
        #[arg(short = 'o')]
        output: PathBuf,
    },
    /// Print the effective settings (drop-ins merged) or their problems.
    Settings,
}
