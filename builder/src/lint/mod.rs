//! Image lint: rules every build checks on the final tree before it is
//! committed, each named and individually waivable in the manifest
//! (`[[lint.waive]]` with a reason, optionally only for some paths):
//!
//! | rule | finds |
//! |---|---|
//! | `private-key` | SSH host keys and PEM/OpenPGP private key blocks under `/etc` or shipped by an overlay (every host of the image would share them) |
//! | `machine-id` | a non-empty `/etc/machine-id` (hosts would share one identity) |
//! | `password-hash` | password hashes (or empty passwords) in `/etc/shadow` the manifest did not declare |
//! | `world-writable` | files, and directories without the sticky bit, that anyone may write |
//! | `unknown-owner` | files owned by a UID or GID the image's passwd/group do not define |
//! | `shadow-mode` | `/etc/shadow` and `/etc/gshadow` readable by others, group-writable or not root's |
//!
//! Besides, the setuid/setgid inventory of the tree ([`Report::setuid`])
//! goes into the build metadata.

mod rules;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::model::Privileged;
use crate::model::Scope;

/// Every rule's name, in the order they are checked.
pub const RULES: &[&str] = &[
    "private-key",
    "machine-id",
    "password-hash",
    "world-writable",
    "unknown-owner",
    "shadow-mode",
];

/// `[lint]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLint {
    /// Waivers.
    #[serde(default)]
    pub waive: Vec<RawWaiver>,
}

/// `[[lint.waive]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaiver {
    /// The rule's name.
    pub rule: String,
    /// Why it is waived (required).
    pub reason: Option<String>,
    /// Only these paths (as on the host: `/etc/...`); default: all.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// A checked waiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waiver {
    /// The rule's name (one of [`RULES`]).
    pub rule: String,
    /// Why.
    pub reason: String,
    /// Only these paths; empty: every finding of the rule.
    pub paths: Vec<String>,
}

/// Check `[lint]`.
pub fn check(r: RawLint, p: &mut Scope) -> Vec<Waiver> {
    let mut out = Vec::new();
    for (i, w) in r.waive.into_iter().enumerate() {
        let mut s = p.scope(&format!("waive[{i}]"));
        if !RULES.contains(&w.rule.as_str()) {
            s.bad(
                "rule",
                format!(
                    "no lint rule is named {:?}; the rules are: {}",
                    w.rule,
                    RULES.join(", ")
                ),
            );
        }
        let reason = w.reason.unwrap_or_default().trim().to_string();
        if reason.is_empty() {
            s.bad(
                "reason",
                "a waiver needs a reason: say why the image may break this rule",
            );
        }
        for (j, path) in w.paths.iter().enumerate() {
            if !path.starts_with('/') {
                s.bad(&format!("paths[{j}]"), format!("{path:?} is not an absolute path as on the host, such as \"/etc/ssh/ssh_host_ed25519_key\""));
            }
        }
        out.push(Waiver {
            rule: w.rule,
            reason,
            paths: w.paths,
        });
    }
    out
}

/// One rule broken at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's name.
    pub rule: String,
    /// The path as on the host (`/etc/...`, though the tree keeps it in
    /// `/usr/etc`).
    pub path: String,
    /// What is wrong, and what to do instead.
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.rule, self.path, self.detail)
    }
}

/// What the lint found.
#[derive(Debug, Default)]
pub struct Report {
    /// Findings no waiver covers.
    pub findings: Vec<Finding>,
    /// Findings a waiver covers, with the waiver's reason.
    pub waived: Vec<(Finding, String)>,
    /// Waivers that matched nothing (stale).
    pub unused: Vec<Waiver>,
    /// The setuid/setgid files.
    pub setuid: Vec<Privileged>,
}

/// What the lint looks at.
pub struct Tree<'a> {
    /// The root.
    pub root: &'a Path,
    /// Where `/etc` is below it (`usr/etc` once shaped, else `etc`).
    pub etc: &'a str,
    /// The manifest's overlays (their files are checked for keys wherever
    /// they go).
    pub overlays: &'a [PathBuf],
    /// Password hashes the manifest declares.
    pub declared_hashes: &'a [String],
}

/// Lint `t`, with `waivers` applied.
pub fn run(t: &Tree, waivers: &[Waiver]) -> anyhow::Result<Report> {
    let (all, setuid) = rules::check(t)?;
    let mut r = Report {
        setuid,
        ..Report::default()
    };
    let mut used = vec![false; waivers.len()];
    for f in all {
        let w = waivers.iter().position(|w| {
            w.rule == f.rule && (w.paths.is_empty() || w.paths.iter().any(|p| p == &f.path))
        });
        match w {
            Some(i) => {
                used[i] = true;
                r.waived.push((f, waivers[i].reason.clone()));
            }
            None => r.findings.push(f),
        }
    }
    r.unused = waivers
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(w, _)| w.clone())
        .collect();
    Ok(r)
}

/// The error a build with `findings` fails with: each finding, then the
/// waiver that would let it pass.
pub fn failure(manifest: &Path, findings: &[Finding]) -> String {
    let mut s = format!(
        "image lint: {} finding{} in the tree built from {}:\n",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        manifest.display()
    );
    for f in findings {
        s.push_str(&format!("  {f}\n"));
    }
    let first = &findings[0];
    s.push_str(&format!(
        "fix the image, or waive a rule in the manifest with a reason (paths optional):\n  [[lint.waive]]\n  rule = \"{}\"\n  reason = \"why this image may break it\"\n  paths = [\"{}\"]",
        first.rule, first.path
    ));
    s
}
