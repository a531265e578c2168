//! `[budgets]`: limits on what a build may weigh and how long its image may
//! take to boot. Sizes and package figures are checked by every build
//! against its metadata ([`check_build`]); the boot time by `atomicbuild
//! test` against what the guest measured ([`check_boot`]), with separate
//! limits for KVM and TCG: TCG boot times vary 2-4x with the host's load, so
//! a TCG miss warns and only a KVM miss fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Metadata, Scope, Size};

/// `[budgets]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    /// Bytes the raw image allocates on disk.
    pub raw_allocated: Option<Size>,
    /// Initramfs size.
    pub initramfs: Option<Size>,
    /// Number of installed packages.
    pub packages: Option<u64>,
    /// Sum of the packages' installed sizes.
    pub installed: Option<Size>,
    /// Boot time to `multi-user.target` under KVM (fails when missed).
    pub boot_time_kvm: Option<String>,
    /// Boot time under TCG (warns when missed).
    pub boot_time_tcg: Option<String>,
    /// File size per output, keyed by its label (`qcow2+zstd`, `vmdk`, ...).
    #[serde(default)]
    pub outputs: BTreeMap<String, Size>,
}

/// Checked budgets; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Budgets {
    /// Bytes the raw image allocates.
    pub raw_allocated: Option<u64>,
    /// Initramfs bytes.
    pub initramfs: Option<u64>,
    /// Package count.
    pub packages: Option<u64>,
    /// Installed bytes of all packages.
    pub installed: Option<u64>,
    /// Seconds to `multi-user.target` under KVM.
    pub boot_time_kvm: Option<u64>,
    /// Seconds to `multi-user.target` under TCG.
    pub boot_time_tcg: Option<u64>,
    /// Bytes per output label.
    pub outputs: BTreeMap<String, u64>,
}

/// Check `[budgets]`; `labels` are the manifest's outputs' labels.
pub fn check(r: RawBudgets, labels: &[String], p: &mut Scope) -> Budgets {
    let mut secs = |field: &str, v: &Option<String>| {
        v.as_deref()
            .and_then(|t| match common::units::parse_duration(t) {
                Ok(0) => {
                    p.bad(field, "a boot-time budget must be at least 1s");
                    None
                }
                Ok(s) => Some(s),
                Err(e) => {
                    p.bad(field, e);
                    None
                }
            })
    };
    let boot_time_kvm = secs("boot_time_kvm", &r.boot_time_kvm);
    let boot_time_tcg = secs("boot_time_tcg", &r.boot_time_tcg);
    for label in r.outputs.keys() {
        if !labels.contains(label) {
            p.bad(
                &format!("outputs.{label}"),
                format!(
                    "no [[output]] is labelled {label:?}; the outputs are: {}",
                    labels.join(", ")
                ),
            );
        }
    }
    Budgets {
        raw_allocated: r.raw_allocated.map(|s| s.0),
        initramfs: r.initramfs.map(|s| s.0),
        packages: r.packages,
        installed: r.installed.map(|s| s.0),
        boot_time_kvm,
        boot_time_tcg,
        outputs: r.outputs.into_iter().map(|(k, v)| (k, v.0)).collect(),
    }
}

/// One budget missed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Miss {
    /// The budget's field in `[budgets]`.
    pub rule: String,
    /// The limit, as people read it.
    pub budget: String,
    /// The figure measured.
    pub figure: String,
    /// The largest contributors, largest first.
    pub contributors: Vec<String>,
    /// Only a warning (a TCG boot time).
    pub warning: bool,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "budget {} {}: {} over {}",
            self.rule,
            if self.warning {
                "missed (warning)"
            } else {
                "missed"
            },
            self.figure,
            self.budget
        )?;
        if !self.contributors.is_empty() {
            write!(
                f,
                "; largest contributors: {}",
                self.contributors.join(", ")
            )?;
        }
        Ok(())
    }
}

/// `n` bytes in MiB with one decimal.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// The `n` packages with the largest installed size.
fn top_packages(meta: &Metadata, n: usize) -> Vec<String> {
    let mut p: Vec<_> = meta.packages.iter().collect();
    p.sort_by(|a, b| {
        b.installed_bytes
            .cmp(&a.installed_bytes)
            .then(a.name.cmp(&b.name))
    });
    p.iter()
        .take(n)
        .map(|p| format!("{} {}", p.name, mib(p.installed_bytes)))
        .collect()
}

/// The build's figure for every size and package budget: (rule, figure,
/// limit, whether the figure is bytes).
fn build_figures(b: &Budgets, meta: &Metadata) -> Vec<(String, u64, u64, bool)> {
    let mut out = Vec::new();
    let raw = meta.artifacts.first().map_or(0, |a| a.allocated);
    let installed = meta.packages.iter().map(|p| p.installed_bytes).sum();
    let mut add = |rule: &str, limit: Option<u64>, figure: u64, bytes: bool| {
        if let Some(l) = limit {
            out.push((rule.to_string(), figure, l, bytes));
        }
    };
    add("raw_allocated", b.raw_allocated, raw, true);
    add("initramfs", b.initramfs, meta.kernel.initramfs_bytes, true);
    add("installed", b.installed, installed, true);
    add("packages", b.packages, meta.packages.len() as u64, false);
    for (label, limit) in &b.outputs {
        let size = meta
            .artifacts
            .iter()
            .skip(1)
            .find(|a| &a.format == label)
            .map_or(0, |a| a.size);
        add(&format!("outputs.{label}"), Some(*limit), size, true);
    }
    out
}

/// "rule figure/limit" for every size and package budget set.
pub fn figures(b: &Budgets, meta: &Metadata) -> Vec<String> {
    build_figures(b, meta)
        .into_iter()
        .map(|(rule, fig, limit, bytes)| {
            if bytes {
                format!("{rule} {} of {}", mib(fig), mib(limit))
            } else {
                format!("{rule} {fig} of {limit}")
            }
        })
        .collect()
}

/// Every size and package budget `meta` misses.
pub fn check_build(b: &Budgets, meta: &Metadata) -> Vec<Miss> {
    build_figures(b, meta)
        .into_iter()
        .filter(|(_, fig, limit, _)| fig > limit)
        .map(|(rule, fig, limit, bytes)| {
            let top = match rule.as_str() {
                "raw_allocated" | "installed" | "packages" => top_packages(meta, 5),
                _ => Vec::new(),
            };
            let (budget, figure) = if bytes {
                (mib(limit), mib(fig))
            } else {
                (format!("{limit} packages"), format!("{fig} packages"))
            };
            Miss {
                rule,
                budget,
                figure,
                contributors: top,
                warning: false,
            }
        })
        .collect()
}

/// The boot-time budget of a boot under KVM (`kvm`) or TCG, if `seconds`
/// misses it; `slowest` are `systemd-analyze blame`'s first lines.
pub fn check_boot(b: &Budgets, kvm: bool, seconds: f64, slowest: &[String]) -> Option<Miss> {
    let (rule, limit) = if kvm {
        ("boot_time_kvm", b.boot_time_kvm?)
    } else {
        ("boot_time_tcg", b.boot_time_tcg?)
    };
    (seconds > limit as f64).then(|| Miss {
        rule: rule.into(),
        budget: format!("{limit}s"),
        figure: format!("{seconds:.1}s"),
        contributors: slowest.iter().take(5).cloned().collect(),
        warning: !kvm,
    })
}

#[cfg(test)]
mod tests;
