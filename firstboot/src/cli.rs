//! The command line (clap structs only; dispatch is in [`crate::run`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Provisions an atomicbuild host once, on its first boot, from user data.
#[derive(Debug, Parser)]
#[command(
    name = "atomic-firstboot",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `run`'s options, so that `atomic-firstboot --dry-run --config F` works.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch the config, validate it and provision this host (the default).
    Run(RunArgs),
    /// Check a config file and print every problem with its position.
    Validate {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Grow the root partition (the disk's last) and its ext4 filesystem to
    /// the end of the disk, online; nothing when there is no new space. Run
    /// on every boot by atomic-growroot.service.
    GrowRoot {
        /// A mount point on the partition to grow [default: /sysroot, the
        /// OSTree physical root, else /].
        #[arg(long)]
        mountpoint: Option<PathBuf>,
    },
    /// Import the container images preloaded under /usr into containerd
    /// (namespace k8s.io) unless it has them already; each archive's
    /// sha256 is checked first. Run on every boot by atomic-images.service.
    ImportImages {
        /// The root whose /usr/share/atomicbuild/images to import.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The ctr binary.
        #[arg(long, default_value = "ctr")]
        ctr: String,
        /// containerd's socket [default: ctr's].
        #[arg(long)]
        address: Option<String>,
    },
    /// Print the CA pin of a certificate: sha256:<hex> of its SubjectPublicKeyInfo.
    CaHash {
        /// PEM or DER certificate.
        #[arg(long)]
        cert: PathBuf,
    },
}

/// How units are started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Manager {
    /// systemctl (a real host).
    #[default]
    Systemd,
    /// Start etcd directly as a child process, record other units (tests).
    Direct,
}

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Platform, overriding the kernel's atomic.platform= (qemu, openstack, aws, file).
    #[arg(long)]
    pub platform: Option<String>,
    /// Apply under this directory instead of / (tests, staging).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Read the config from this file instead of asking the platform.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the ordered list of actions without doing them (no secrets shown).
    #[arg(long)]
    pub dry_run: bool,
    /// How units are started.
    #[arg(long, value_enum, default_value_t = Manager::Systemd)]
    pub service_manager: Manager,
    /// Allow AWS IMDSv1 when IMDSv2 is refused (as atomic.aws-imdsv1=1).
    #[arg(long)]
    pub imdsv1: bool,
    /// Attempts at most for each network operation.
    #[arg(long, default_value_t = 10)]
    pub retry_attempts: u32,
    /// Seconds at most for each network operation, retries included.
    #[arg(long, default_value_t = 120)]
    pub retry_secs: u64,
    /// Seconds to wait for fw_cfg, a config drive or a labelled filesystem.
    #[arg(long, default_value_t = 30)]
    pub device_wait_secs: u64,
    /// Kernel command line file (default /proc/cmdline).
    #[arg(long)]
    pub cmdline: Option<PathBuf>,
    /// qemu: the fw_cfg sysfs directory (default /sys/firmware/qemu_fw_cfg).
    #[arg(long)]
    pub fw_cfg_dir: Option<PathBuf>,
    /// openstack: read this directory as the config drive instead of mounting one.
    #[arg(long)]
    pub config_drive_dir: Option<PathBuf>,
    /// openstack and aws: metadata service base URL (default http://169.254.169.254).
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// file: read atomic.config-path under this directory instead of mounting.
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
}
