//! `expect.toml`: what must hold in a booted image, as data. Read with the
//! manifest's parser, so a mistake is named with its file, line and field.
//!
//! ```toml
//! manifest = "../host.toml"  # what to build [default: host.toml here]
//! timeout = "20m"            # per boot of this case
//! reboots = 0                # boot again N times and check again
//! [system]
//! state = "running"          # systemctl is-system-running
//! failed_units = false       # any failed unit fails the case
//! read_only = ["/usr"]       # writing there must fail
//! writable = ["/var", "/etc"]
//! [units]
//! active = ["containerd.service"]
//! inactive = []
//! [[file]]
//! path = "/etc/hostname"
//! exists = true
//! mode = "644"
//! owner = "root:root"
//! contains = "host"
//! [[command]]
//! name = "containerd answers"
//! run = "ctr --timeout 10s version"
//! exit = 0
//! stdout_contains = "Server:"
//! [network]
//! dhcp = true                # an IPv4 address leased by DHCP
//! ipv4 = "10.0.2.15/24"
//! [firstboot]
//! result = "provisioned"     # or "no-user-data"
//! [[fact]]                   # reported, judged by the caller (library API)
//! name = "disk-bytes"
//! run = "blockdev --getsize64 /dev/vda"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::{parse_checked, read_source, ManifestError};
use crate::model::{Problems, Scope};

/// Default time one boot of a case may take until it reported.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    manifest: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    reboots: u32,
    #[serde(default)]
    system: RawSystem,
    #[serde(default)]
    units: RawUnits,
    #[serde(default)]
    file: Vec<FileRule>,
    #[serde(default)]
    command: Vec<CommandRule>,
    network: Option<NetworkRule>,
    firstboot: Option<FirstbootRule>,
    #[serde(default)]
    fact: Vec<Fact>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    state: Option<String>,
    failed_units: Option<bool>,
    #[serde(default)]
    read_only: Vec<String>,
    #[serde(default)]
    writable: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnits {
    #[serde(default)]
    active: Vec<String>,
    #[serde(default)]
    inactive: Vec<String>,
}

/// A file that must (not) exist, with its mode, owner and contents.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// Absolute path in the guest.
    pub path: String,
    /// Whether it must exist (default) or must not.
    #[serde(default = "yes")]
    pub exists: bool,
    /// Octal permission bits, as `stat -c %a` prints them.
    pub mode: Option<String>,
    /// `user:group`.
    pub owner: Option<String>,
    /// Text its first 64 KiB must contain.
    pub contains: Option<String>,
}

fn yes() -> bool {
    true
}

/// A command run by `/bin/sh -c` in the guest, as root.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandRule {
    /// What reports call it [default: the command].
    pub name: Option<String>,
    /// The command line.
    pub run: String,
    /// Expected exit status.
    #[serde(default)]
    pub exit: i32,
    /// Text its output (stdout and stderr) must contain.
    pub stdout_contains: Option<String>,
}

impl CommandRule {
    /// Its name in reports.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.run)
    }
}

/// The guest's network.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    /// A global IPv4 address leased by DHCP.
    #[serde(default)]
    pub dhcp: bool,
    /// This global IPv4 address with its prefix length.
    pub ipv4: Option<String>,
}

/// What the first-boot agent must have done.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FirstbootRule {
    /// `provisioned` or `no-user-data`.
    pub result: FirstbootResult,
}

/// The first-boot agent's outcome.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FirstbootResult {
    /// It applied user data (its stamp is written).
    Provisioned,
    /// It found none and provisioned nothing.
    NoUserData,
}

/// A command whose output is reported under `name` and judged by the
/// caller (host-side scenario code), not by the runner.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    /// Report key.
    pub name: String,
    /// Command line (`/bin/sh -c`).
    pub run: String,
}

/// What must hold in every boot of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The manifest to build for the case, relative to its directory
    /// (instead of a `host.toml` beside it).
    pub manifest: Option<String>,
    /// Per-boot limit.
    pub timeout: Duration,
    /// Boots after the first.
    pub reboots: u32,
    /// `systemctl is-system-running`.
    pub state: String,
    /// Whether failed units are allowed.
    pub failed_units: bool,
    /// Paths that must not be writable.
    pub read_only: Vec<String>,
    /// Paths that must be writable.
    pub writable: Vec<String>,
    /// Units that must be active.
    pub active: Vec<String>,
    /// Units that must not be active.
    pub inactive: Vec<String>,
    /// File rules.
    pub files: Vec<FileRule>,
    /// Command rules.
    pub commands: Vec<CommandRule>,
    /// Network rule.
    pub network: Option<NetworkRule>,
    /// First-boot rule.
    pub firstboot: Option<FirstbootRule>,
    /// Facts for the caller.
    pub facts: Vec<Fact>,
}

impl Default for Expect {
    /// A clean boot: running, nothing failed.
    fn default() -> Expect {
        check(RawExpect::default(), &mut Problems::new().scope("")).expect("defaults are valid")
    }
}

/// Characters that would break the guest script's quoting or the report's
/// `key| value` lines.
fn plain_path(p: &str) -> bool {
    p.starts_with('/') && !p.contains(['\'', '\n', '|'])
}

fn check(r: RawExpect, p: &mut Scope) -> Option<Expect> {
    let timeout = match r.timeout.as_deref().map(common::units::parse_duration) {
        None => DEFAULT_TIMEOUT,
        Some(Ok(s)) if s > 0 => Duration::from_secs(s),
        Some(Ok(_)) => {
            p.bad("timeout", "must be at least 1s");
            DEFAULT_TIMEOUT
        }
        Some(Err(e)) => {
            p.bad("timeout", e);
            DEFAULT_TIMEOUT
        }
    };
    let state = r.system.state.clone().unwrap_or_else(|| "running".into());
    const STATES: &[&str] = &["running", "degraded", "starting", "maintenance"];
    if !STATES.contains(&state.as_str()) {
        p.bad(
            "system.state",
            format!("must be one of {}", STATES.join(", ")),
        );
    }
    let mut paths = |field: &str, list: &[String]| {
        for (i, x) in list.iter().enumerate() {
            if !plain_path(x) {
                p.bad(
                    &format!("{field}[{i}]"),
                    format!("{x:?}: an absolute path without quotes, `|` or newlines"),
                );
            }
        }
    };
    paths("system.read_only", &r.system.read_only);
    paths("system.writable", &r.system.writable);
    for (i, f) in r.file.iter().enumerate() {
        if !f.path.starts_with('/') {
            p.bad(
                &format!("file[{i}].path"),
                format!("{:?}: an absolute path", f.path),
            );
        }
    }
    check_rest(&r, p);
    Some(Expect {
        manifest: r.manifest,
        timeout,
        reboots: r.reboots,
        state,
        failed_units: r.system.failed_units.unwrap_or(false),
        read_only: r.system.read_only,
        writable: r.system.writable,
        active: r.units.active,
        inactive: r.units.inactive,
        files: r.file,
        commands: r.command,
        network: r.network,
        firstboot: r.firstboot,
        facts: r.fact,
    })
}

/// Units, modes, commands, the network and fact names.
fn check_rest(r: &RawExpect, p: &mut Scope) {
    for (field, list) in [
        ("units.active", &r.units.active),
        ("units.inactive", &r.units.inactive),
    ] {
        for (i, u) in list.iter().enumerate() {
            if u.is_empty()
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@:\\".contains(c))
            {
                p.bad(
                    &format!("{field}[{i}]"),
                    format!("{u:?} is not a unit name"),
                );
            }
        }
    }
    for (i, f) in r.file.iter().enumerate() {
        if let Some(m) = &f.mode {
            if m.is_empty() || m.len() > 4 || !m.chars().all(|c| ('0'..='7').contains(&c)) {
                p.bad(
                    &format!("file[{i}].mode"),
                    format!("{m:?}: octal, as `stat -c %a` prints it (\"644\")"),
                );
            }
        }
        if !f.exists && (f.mode.is_some() || f.owner.is_some() || f.contains.is_some()) {
            p.bad(
                &format!("file[{i}].exists"),
                "a file that must not exist has no mode, owner or contents",
            );
        }
    }
    for (i, c) in r.command.iter().enumerate() {
        if c.run.trim().is_empty() {
            p.bad(&format!("command[{i}].run"), "an empty command");
        }
    }
    if let Some(ip) = r.network.as_ref().and_then(|n| n.ipv4.as_deref()) {
        let ok = ip.split_once('/').is_some_and(|(a, l)| {
            a.parse::<std::net::Ipv4Addr>().is_ok() && l.parse::<u8>().is_ok_and(|l| l <= 32)
        });
        if !ok {
            p.bad(
                "network.ipv4",
                format!("{ip:?}: an address with its prefix length, like \"10.0.2.15/24\""),
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in r.fact.iter().enumerate() {
        let ok = !f.name.is_empty()
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok || !seen.insert(f.name.as_str()) {
            p.bad(
                &format!("fact[{i}].name"),
                format!(
                    "{:?}: a unique name of letters, digits, `-` and `_`",
                    f.name
                ),
            );
        }
    }
}

/// Read `expect.toml` at `path`.
pub fn load(path: &Path) -> Result<Expect, ManifestError> {
    let (src, _) = read_source(path, "the test expectations")?;
    parse(&src, path)
}

/// Parse expectations text (`file` names it in errors).
pub fn parse(src: &str, file: &Path) -> Result<Expect, ManifestError> {
    parse_checked(src, file, |raw: RawExpect| {
        let mut p = Problems::new();
        let e = check(raw, &mut p.scope(""));
        match e {
            Some(e) if p.is_empty() => Ok(e),
            _ => Err(p),
        }
    })
}
