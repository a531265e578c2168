//! Command-line interface: clap structs and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::formats::{Compression, Format};
use crate::model::{BootMode, Firmware};
use crate::upload::{aws, DEFAULT_WAIT_SECS};

/// Build immutable, OSTree-based container-host OS images from one TOML manifest.
///
/// `atomicbuild --manifest host.toml` installs the manifest's packages into a
/// fresh root, builds the initramfs once, commits the tree to an OSTree
/// repository, deploys it and writes a GPT disk image that boots with UEFI
/// and BIOS. Outputs land in --output (default `out/`) only when complete.
#[derive(Debug, Parser)]
#[command(name = "atomicbuild", version, propagate_version = true)]
pub struct Cli {
    /// What to do (default: build).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options for the default `build` command.
    #[command(flatten)]
    pub build: BuildArgs,

    /// Print every external command line as it runs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the images a manifest describes.
    Build(BuildArgs),
    /// Check a manifest and report every problem; creates nothing.
    Validate {
        /// The manifest to check.
        #[arg(short, long, value_name = "FILE")]
        manifest: PathBuf,
    },
    /// Rebuild from a lock in a scratch directory and report whether the
    /// result is bit-for-bit identical to the images in --output, or the
    /// first file, partition or byte range that differs.
    Verify {
        /// The manifest the images were built from.
        #[arg(short, long, value_name = "FILE")]
        manifest: PathBuf,
        /// The lock written by that build.
        #[arg(long, value_name = "FILE")]
        lock: PathBuf,
        /// Where the build to compare against put its outputs.
        #[arg(short, long, value_name = "DIR", default_value = "out")]
        output: PathBuf,
        /// Print the verdict as JSON (identical, commit, image,
        /// differences, kept).
        #[arg(long)]
        json: bool,
    },
    /// Show or prune the build cache (installed roots, initramfs images).
    Cache {
        /// What to do.
        #[command(subcommand)]
        action: CacheAction,
        /// The cache directory [default: $XDG_CACHE_HOME/atomicbuild].
        #[arg(long, value_name = "DIR", env = "ATOMICBUILD_CACHE_DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
    /// Write a raw disk image in another format with the native writers
    /// (what `[[output]]` does during a build).
    Convert(ConvertArgs),
    /// Boot a disk image in QEMU with the serial console on this terminal.
    ///
    /// Uses KVM when a probe guest runs under it, software emulation (TCG)
    /// otherwise (ATOMICBUILD_ACCEL=kvm|tcg forces one). A guest that stops
    /// (an accelerator error, a kernel panic) ends it with an error. Quit
    /// with Ctrl-A X.
    Boot(BootArgs),

    /// Upload an image to a cloud.
    #[command(subcommand)]
    Upload(UploadCommand),

    /// Publish a build's commit into an update repository (archive-mode
    /// OSTree, servable by any static HTTP server): the commit signed with
    /// the [signing] key, a static delta from the branch's previous commit,
    /// a signed summary. Hosts of images with [updates] pull from it.
    Publish(PublishArgs),

    /// What changed between two builds, from their metadata (OUTPUT/NAME-
    /// VERSION.json): packages added, removed and changed with installed
    /// sizes, kernel, kernel arguments, initramfs, partitions and outputs.
    Diff {
        /// The older build's metadata.
        #[arg(value_name = "OLD.json")]
        old: PathBuf,
        /// The newer build's metadata.
        #[arg(value_name = "NEW.json")]
        new: PathBuf,
        /// text, json, or markdown (for a CI comment).
        #[arg(long, value_enum, default_value = "text")]
        format: crate::diff::DiffFormat,
        /// Short for --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },

    /// Boot images headless in QEMU and check them against test cases:
    /// exits 0 only when every case passed on every firmware.
    ///
    /// A case is a directory with expect.toml (what must hold: system
    /// state, failed units, read-only and writable paths, units, files,
    /// commands, network, the first-boot agent's result, reboots; see
    /// qemu-tests/ for examples), and optionally host.toml with overlay/
    /// (the image to build for it) and firstboot.toml (user data). Without
    /// --case, a built-in case checks a clean boot with a read-only /usr.
    /// The image is built first (cached) unless --image names one; the
    /// manifest's [budgets] are checked by the build and, for the boot
    /// time, here (a KVM boot-time miss fails, a TCG one warns). Boot
    /// times are recorded in the build's metadata. Uses KVM when a probe
    /// guest runs under it, TCG otherwise.
    Test(TestArgs),

    /// Print a shell completion script: `atomicbuild completions bash >
    /// /etc/bash_completion.d/atomicbuild` (zsh: a `_atomicbuild` file in
    /// $fpath; fish: ~/.config/fish/completions/atomicbuild.fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Write man pages (atomicbuild.1 and one per subcommand, such as
    /// atomicbuild-build.1) into DIR, e.g. /usr/local/share/man/man1.
    Man {
        /// Where the pages go (created when missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Firmware choices of `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareChoice {
    /// UEFI (OVMF).
    Uefi,
    /// BIOS (SeaBIOS).
    Bios,
    /// Each case on both, one after the other.
    Both,
}

impl FirmwareChoice {
    /// The firmwares to boot with.
    pub fn list(self) -> Vec<Firmware> {
        match self {
            FirmwareChoice::Uefi => vec![Firmware::Uefi],
            FirmwareChoice::Bios => vec![Firmware::Bios],
            FirmwareChoice::Both => vec![Firmware::Uefi, Firmware::Bios],
        }
    }
}

/// Options of `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The manifest to build and test (cases with their own host.toml
    /// use theirs).
    #[arg(short, long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Boot this image instead of building (raw, or qcow2/vmdk/vdi/vhd by
    /// extension).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// A test case directory. Repeatable.
    #[arg(long = "case", value_name = "DIR")]
    pub cases: Vec<PathBuf>,
    /// Firmware to boot each case with.
    #[arg(long, value_enum, default_value = "both")]
    pub firmware: FirmwareChoice,
    /// Write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Keep every boot's serial console and report here (failed boots'
    /// are always kept, in OUTPUT/test-logs by default).
    #[arg(long, value_name = "DIR")]
    pub keep_logs: Option<PathBuf>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where builds put their outputs (a case with its own host.toml
    /// builds into OUTPUT/CASE).
    #[arg(short, long, value_name = "DIR", default_value = "out")]
    pub output: PathBuf,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory: u32,
    /// Guest CPUs. Under TCG each is one host thread: one per guest keeps
    /// several guests on a small machine from preempting each other's
    /// lock holders; two make a guest that runs alone faster.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// The guests' disk controller.
    #[arg(long, value_enum, default_value = "virtio")]
    pub disk_bus: crate::qemu::DiskBus,
    /// The guests' network card model.
    #[arg(long, value_enum, default_value = "virtio")]
    pub nic: crate::qemu::Nic,
    /// The build cache [default: $XDG_CACHE_HOME/atomicbuild].
    #[arg(long, value_name = "DIR", env = "ATOMICBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the cache's stage entries (as for `build`).
    #[arg(long, value_name = "SIZE", env = "ATOMICBUILD_CACHE_MAX",
          default_value = crate::cache::DEFAULT_MAX, value_parser = cache_max)]
    pub cache_max: u64,
}

/// Options of `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The manifest the image was built from ([signing] names the key).
    #[arg(short, long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The update repository (created when missing).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Where the build put its outputs (its NAME-VERSION.json names the commit).
    #[arg(short, long, value_name = "DIR", default_value = "out")]
    pub output: PathBuf,
    /// The build cache holding the commit [default: $XDG_CACHE_HOME/atomicbuild].
    #[arg(long, value_name = "DIR", env = "ATOMICBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Publish even a version that is not newer than the published one.
    #[arg(long)]
    pub force: bool,
}

/// `upload` targets.
#[derive(Debug, Subcommand)]
pub enum UploadCommand {
    /// Write the raw image into an EBS snapshot through the EBS direct APIs
    /// (no S3 bucket, no vmimport role) and register an AMI from it.
    /// Prints the AMI id. Credentials: AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), a profile of
    /// ~/.aws/credentials, or the EC2 instance's role (IMDSv2).
    Aws(UploadAwsArgs),

    /// Create a Glance image (raw or qcow2) through Keystone v3 and the
    /// catalog's image endpoint; checks Glance's sha512 against ours.
    /// Prints the image id. Credentials: a clouds.yaml entry (--cloud,
    /// $OS_CLOUD) or the OS_* variables of an openrc (password or
    /// application credential).
    Openstack(UploadOpenstackArgs),
}

/// Options of `upload openstack`.
#[derive(Debug, Args)]
pub struct UploadOpenstackArgs {
    /// The image (.raw or .qcow2).
    #[arg(short, long, value_name = "FILE")]
    pub image: PathBuf,
    /// Image name.
    #[arg(long)]
    pub name: String,
    /// A cloud of clouds.yaml (default: $OS_CLOUD; without either, the
    /// OS_* variables of an openrc file are used).
    #[arg(long, value_name = "NAME")]
    pub cloud: Option<String>,
    /// Firmware property (hw_firmware_type); atomicbuild images boot both.
    #[arg(long, value_enum, default_value = "uefi")]
    pub firmware: Firmware,
    /// os_distro property.
    #[arg(long, default_value = "debian")]
    pub os_distro: String,
    /// os_version property.
    #[arg(long, default_value = "12")]
    pub os_version: String,
    /// How long to wait for the image to become active, in seconds.
    #[arg(long, default_value_t = DEFAULT_WAIT_SECS)]
    pub wait_secs: u64,
    /// Print the result as JSON (target, name, image_id, ...).
    #[arg(long)]
    pub json: bool,
}

/// Options of `upload aws`.
#[derive(Debug, Args)]
pub struct UploadAwsArgs {
    /// The raw disk image.
    #[arg(short, long, value_name = "FILE")]
    pub image: PathBuf,
    /// AMI name.
    #[arg(long)]
    pub name: String,
    /// Region (default: AWS_REGION / AWS_DEFAULT_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Profile of ~/.aws/credentials (default: AWS_PROFILE or "default").
    #[arg(long)]
    pub profile: Option<String>,
    /// One endpoint for EBS and EC2, e.g. an emulator's http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Extra tag on the snapshot and the AMI. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Firmware the AMI boots with (atomicbuild images boot both).
    #[arg(long, value_enum, default_value = "uefi-preferred")]
    pub boot_mode: BootMode,
    /// Also copy the AMI to this region (tagged like the original; a re-run
    /// finds existing copies). Repeatable. Prints "REGION AMI" per copy.
    #[arg(long, value_name = "REGION")]
    pub copy_to_region: Vec<String>,
    /// Let this AWS account (12 digits), or `all` (public), launch the AMI
    /// and its copies. Repeatable.
    #[arg(long, value_name = "ACCOUNT")]
    pub launch_permission: Vec<String>,
    /// Blocks uploaded in parallel.
    #[arg(long, default_value_t = aws::DEFAULT_THREADS)]
    pub threads: usize,
    /// Attempts per request (throttling and server errors are retried with backoff).
    #[arg(long, default_value_t = aws::DEFAULT_ATTEMPTS)]
    pub attempts: u32,
    /// How long to wait for the snapshot to complete (and for each copy), in seconds.
    #[arg(long, default_value_t = DEFAULT_WAIT_SECS)]
    pub wait_secs: u64,
    /// Print the result as JSON (target, name, image_id, copies).
    #[arg(long)]
    pub json: bool,
}

/// `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// List entries with their size and when they were last used.
    List,
    /// Remove entries unused for a number of days (0: everything).
    Gc {
        /// Keep entries used within this many days.
        #[arg(long, default_value_t = 30)]
        older_than_days: u64,
    },
    /// Check every entry, object and downloaded package, and drop what is
    /// damaged (the next build rebuilds it).
    Fsck {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `build`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// The manifest (host.toml) to build.
    #[arg(short, long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Where finished images, SHA256SUMS and build metadata go.
    #[arg(short, long, value_name = "DIR", default_value = "out")]
    pub output: PathBuf,

    /// Scratch directory for the staging root, repository and sysroot
    /// [default: /var/tmp/atomicbuild/NAME-VERSION].
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Cache for downloaded packages and installed roots
    /// [default: $XDG_CACHE_HOME/atomicbuild or ~/.cache/atomicbuild].
    #[arg(long, value_name = "DIR", env = "ATOMICBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Bound of the cache's stage entries (installed-root records, initramfs
    /// and disk images) on disk: after each build the entries unused the
    /// longest go until the rest fit. "0" keeps everything.
    #[arg(long, value_name = "SIZE", env = "ATOMICBUILD_CACHE_MAX",
          default_value = crate::cache::DEFAULT_MAX, value_parser = cache_max)]
    pub cache_max: u64,

    /// Keep the work directory after a successful build (for inspection).
    #[arg(long)]
    pub keep_workdir: bool,

    /// Install exactly the package set of this lock file (as written to
    /// OUTPUT/NAME-VERSION.lock by an earlier build).
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,

    /// Rebuild every stage instead of reusing cached results (downloaded
    /// packages are still reused; apt verifies them).
    #[arg(long)]
    pub no_cache: bool,

    /// After the build, run the manifest's [[upload]] entries (AWS AMIs,
    /// Glance images) and record the image ids in OUTPUT/NAME-VERSION.json.
    /// Credentials are checked before the build starts.
    #[arg(long)]
    pub upload: bool,
}

/// Options of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The raw disk image to read.
    #[arg(short, long, value_name = "FILE")]
    pub image: PathBuf,

    /// Output format.
    #[arg(short, long, value_enum, required_unless_present = "to")]
    pub format: Option<Format>,

    /// qcow2: cluster compression (zstd or deflate); other formats: an
    /// outer xz or zstd stream.
    #[arg(short, long, value_enum, default_value = "none")]
    pub compression: Compression,

    /// Compression level (default: the compressor's own).
    #[arg(long)]
    pub level: Option<u32>,

    /// Compression threads (default: one per core; the output does not
    /// depend on it).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// 64 hex digits that derive the file's UUIDs [default: from the
    /// image's contents].
    #[arg(long, value_name = "HEX")]
    pub seed: Option<String>,

    /// The file to write (appears only when complete).
    #[arg(
        short,
        long,
        value_name = "FILE",
        required_unless_present = "to",
        conflicts_with = "to"
    )]
    pub output: Option<PathBuf>,

    /// Write several outputs in one pass, as a build does: FORMAT or
    /// FORMAT+COMPRESSION, '=', the file (e.g. --to qcow2+zstd=a.qcow2
    /// --to vdi+xz=a.vdi.xz --to ova=a.ova). Repeatable; --level applies to
    /// each.
    #[arg(
        long,
        value_name = "FORMAT[+COMPRESSION]=FILE",
        conflicts_with = "format"
    )]
    pub to: Vec<String>,
}

/// Options of `boot`.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// The disk image to boot (raw, or qcow2/vmdk/vdi/vhd by extension).
    #[arg(short, long, value_name = "FILE")]
    pub image: PathBuf,

    /// Firmware.
    #[arg(long, value_enum, default_value = "uefi")]
    pub firmware: Firmware,

    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory: u32,

    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,

    /// Boot a throw-away copy-on-write snapshot instead of writing to the image.
    #[arg(long)]
    pub snapshot: bool,

    /// User data for the image's first-boot agent (atomic-firstboot's TOML
    /// config: hostname, users, files, etcd, kubelet), passed as the QEMU
    /// fw_cfg entry opt/org.atomicbuild/config that images built for
    /// `platform = "qemu"` read. Checked with `atomic-firstboot validate`
    /// before booting. Without it the agent finds no user data and
    /// provisions nothing.
    #[arg(long, value_name = "FILE")]
    pub firstboot_config: Option<PathBuf>,

    /// Forward a TCP port of 127.0.0.1 into the guest, e.g. `2222:22` to
    /// reach its SSH server with `ssh -p 2222 core@127.0.0.1`. Repeatable.
    #[arg(long, value_name = "HOST:GUEST", value_parser = parse_forward)]
    pub forward: Vec<(u16, u16)>,

    /// The disk controller (as different clouds and hypervisors present
    /// the disk).
    #[arg(long, value_enum, default_value = "virtio")]
    pub disk_bus: crate::qemu::DiskBus,

    /// The network card model.
    #[arg(long, value_enum, default_value = "virtio")]
    pub nic: crate::qemu::Nic,
}

fn parse_forward(s: &str) -> Result<(u16, u16), String> {
    let (h, g) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected HOST_PORT:GUEST_PORT, e.g. 2222:22"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))
    };
    Ok((port(h)?, port(g)?))
}

/// `--cache-max`: a size such as "20G" or "512MiB".
fn cache_max(s: &str) -> Result<u64, String> {
    crate::model::parse_size(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_takes_two_ports() {
        assert_eq!(parse_forward("2222:22"), Ok((2222, 22)));
        assert!(parse_forward("2222")
            .unwrap_err()
            .contains("HOST_PORT:GUEST_PORT"));
        assert!(parse_forward("0:22").unwrap_err().contains("not a port"));
        assert!(parse_forward("2222:ssh").unwrap_err().contains("\"ssh\""));
        assert!(parse_forward("70000:22").is_err());
    }
}
