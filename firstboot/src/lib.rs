//! atomic-firstboot: provisions an atomicbuild host once, on its first boot.
//!
//! The platform is named by the kernel argument `atomic.platform=`; its
//! [`providers::Provider`] fetches the user data, a TOML [`config`] that is
//! validated as a whole before anything is applied; [`apply::provision`]
//! then sets the hostname, users and files, joins or bootstraps etcd,
//! prepares the kubelet's TLS bootstrap and enables units, and writes a
//! stamp so that it runs once. Any failure stops provisioning and is
//! reported as one line naming the step and the config field.
#![deny(missing_docs)]

pub mod apply;
pub mod cli;
pub mod cmd;
pub mod cmdline;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod growroot;
pub mod images;
pub mod providers;
pub mod yaml;

// The network clients live in `agentnet`, shared with atomic-update.
pub use agentnet::{http, retry, tls, x509};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use cli::{Cli, Command, Manager, RunArgs};
pub use error::{InStep, StepError};

/// Where the builder installs this agent's files in an image: (source in
/// this repository, destination in the image, mode).
pub const INSTALL_FILES: &[(&str, &str, u32)] = &[
    (
        "target/release/atomic-firstboot",
        "/usr/libexec/atomic-firstboot",
        0o755,
    ),
    (
        "firstboot/dist/atomic-firstboot.service",
        "/usr/lib/systemd/system/atomic-firstboot.service",
        0o644,
    ),
    (
        "firstboot/dist/atomic-growroot.service",
        "/usr/lib/systemd/system/atomic-growroot.service",
        0o644,
    ),
    (
        "firstboot/dist/atomic-images.service",
        "/usr/lib/systemd/system/atomic-images.service",
        0o644,
    ),
    (
        "firstboot/dist/etcd.service.d/10-atomic-firstboot.conf",
        "/usr/lib/systemd/system/etcd.service.d/10-atomic-firstboot.conf",
        0o644,
    ),
];

/// The units to enable in images (`systemctl enable`, or a preset).
pub const UNITS: &[&str] = &[
    "atomic-firstboot.service",
    "atomic-growroot.service",
    "atomic-images.service",
];

/// Print a progress line (stdout; failures go to stderr as one line).
pub fn log(msg: &str) {
    println!("atomic-firstboot: {msg}");
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<(), StepError> {
    match cli.command {
        None => run_agent(&cli.run),
        Some(Command::Run(a)) => run_agent(&a),
        Some(Command::Validate { config }) => validate(&config),
        Some(Command::GrowRoot { mountpoint }) => {
            let m = mountpoint.unwrap_or_else(|| {
                let sysroot = Path::new("/sysroot");
                match sysroot.join("ostree").is_dir() {
                    true => sysroot.to_owned(),
                    false => PathBuf::from("/"),
                }
            });
            let said = growroot::grow(&m).in_step("grow-root", "--mountpoint")?;
            println!("atomic-growroot: {said}");
            Ok(())
        }
        Some(Command::ImportImages { root, ctr, address }) => {
            let ctr = images::Ctr {
                program: &ctr,
                address: address.as_deref(),
            };
            let done = images::import(&root, &ctr).in_step("import-images", "--root")?;
            if done.is_empty() {
                log("no preloaded container images");
            }
            for (reference, what) in done {
                log(&format!("container image {reference}: {what}"));
            }
            Ok(())
        }
        Some(Command::CaHash { cert }) => {
            let pin = ca_hash(&cert).in_step("ca-hash", "--cert")?;
            println!("{pin}");
            Ok(())
        }
    }
}

/// The pin of the first certificate in a PEM or DER file.
pub fn ca_hash(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let der = if bytes.starts_with(b"-----") || bytes.windows(10).any(|w| w == b"-----BEGIN") {
        tls::parse_certs(&bytes)?.remove(0).to_vec()
    } else {
        bytes
    };
    Ok(x509::pin_string(&x509::spki_sha256(&der)?))
}

fn validate(path: &Path) -> Result<(), StepError> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .in_step("validate", "--config")?;
    match config::parse_bytes(&bytes, &path.display().to_string()) {
        Ok(_) => {
            println!("{}: ok", path.display());
            Ok(())
        }
        Err(e) => {
            println!("{e}");
            Err(config_failure(&e))
        }
    }
}

/// The one-line failure for a config that did not validate.
fn config_failure(e: &config::ConfigError) -> StepError {
    let first = &e.problems[0];
    let more = match e.problems.len() {
        1 => String::new(),
        n => format!(
            " (and {} more; see above or run atomic-firstboot validate)",
            n - 1
        ),
    };
    StepError {
        step: "validate".into(),
        field: first.field.clone(),
        reason: format!(
            "{}:{}:{}: {}{more}",
            e.source_name, first.line, first.col, first.message
        ),
    }
}

/// Provider options from the kernel arguments and the command line.
fn provider_options(a: &RunArgs, k: &cmdline::KernelArgs) -> Result<providers::Options, StepError> {
    let mut o = providers::Options {
        retry: retry_policy(a),
        device_wait: Duration::from_secs(a.device_wait_secs),
        imdsv1: a.imdsv1 || k.aws_imdsv1,
        ..providers::Options::default()
    };
    if let Some(d) = &a.fw_cfg_dir {
        o.fw_cfg_root = d.clone();
    }
    if let Some(d) = &a.config_drive_dir {
        o.config_drive = providers::ConfigDrive::Dir(d.clone());
    }
    if let Some(u) = &a.metadata_url {
        let url = http::Url::parse(u)
            .map_err(|e| anyhow::anyhow!("--metadata-url: {e}"))
            .in_step("platform", "--metadata-url")?;
        o.openstack_url = url.clone();
        o.aws_url = url;
    }
    o.file = providers::FileConfig {
        label: k.config_label.clone(),
        path: PathBuf::from(k.config_path.as_deref().unwrap_or(providers::DEFAULT_PATH)),
        dir: a.config_dir.clone(),
    };
    Ok(o)
}

fn retry_policy(a: &RunArgs) -> retry::Retry {
    retry::Retry {
        max_attempts: a.retry_attempts.max(1),
        max_total: Duration::from_secs(a.retry_secs),
        ..retry::Retry::default()
    }
}

/// The config's bytes and a name for messages; `None`: nothing to do.
fn fetch_config(a: &RunArgs) -> Result<Option<(Vec<u8>, String)>, StepError> {
    if let Some(path) = &a.config {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .in_step("fetch", "--config")?;
        return Ok(Some((bytes, path.display().to_string())));
    }
    let cmdline_file = a
        .cmdline
        .clone()
        .unwrap_or_else(|| PathBuf::from(cmdline::PROC_CMDLINE));
    let k = std::fs::read_to_string(&cmdline_file)
        .with_context(|| format!("cannot read {}", cmdline_file.display()))
        .and_then(|s| cmdline::parse(&s))
        .in_step("platform", "atomic.platform")?;
    let Some(platform) = a.platform.clone().or(k.platform.clone()) else {
        log("no atomic.platform= on the kernel command line: nothing to provision");
        return Ok(None);
    };
    let opts = provider_options(a, &k)?;
    let p = providers::for_platform(&platform, &opts).in_step("platform", "atomic.platform")?;
    log(&format!("fetching the config from {}", p.describe()));
    match p.user_data().in_step("fetch", "user-data")? {
        Some(bytes) => Ok(Some((bytes, format!("user-data({platform})")))),
        None => {
            log(&format!(
                "no user data on this platform ({platform}): nothing to provision; this host runs unprovisioned (etcd stays off), and the next boot looks again"
            ));
            Ok(None)
        }
    }
}

fn run_agent(a: &RunArgs) -> Result<(), StepError> {
    let root = std::path::absolute(&a.root)
        .context("--root")
        .in_step("platform", "--root")?;
    if !a.dry_run && apply::is_done(&root) {
        log(&format!(
            "already provisioned ({} exists): nothing to do",
            apply::STAMP
        ));
        return Ok(());
    }
    let Some((bytes, source)) = fetch_config(a)? else {
        return Ok(());
    };
    let cfg = match config::parse_bytes(&bytes, &source) {
        Ok(c) => c,
        Err(e) => {
            for line in e.to_string().lines() {
                log(line);
            }
            return Err(config_failure(&e));
        }
    };
    drop(bytes);
    if a.dry_run {
        for (i, line) in apply::plan(&cfg).iter().enumerate() {
            println!("{:>2}. {line}", i + 1);
        }
        return Ok(());
    }
    let sm: Box<dyn apply::services::ServiceManager> = match a.service_manager {
        Manager::Systemd => Box::new(apply::services::Systemd { root: root.clone() }),
        Manager::Direct => Box::new(apply::services::Direct { root: root.clone() }),
    };
    let ctx = apply::Context {
        root,
        services: sm.as_ref(),
        retry: retry_policy(a),
    };
    apply::provision(&cfg, &ctx)?;
    log("provisioning complete");
    Ok(())
}
