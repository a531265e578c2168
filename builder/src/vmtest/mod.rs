//! `atomicbuild test`: boot images headless and judge them by test cases
//! kept as data. A case is a directory (`qemu-tests/NNN_name/`, or next to
//! a user's manifest) with `expect.toml` ([`expect`]: what must hold), and
//! optionally `host.toml` (the image to build for it, with its `overlay/`;
//! or `manifest = "PATH"` in `expect.toml`) and `firstboot.toml` (user data
//! for the first-boot agent).
//!
//! The guest side is a shell script passed through QEMU's fw_cfg
//! ([`script`]), which every image's `atomicbuild-test.service` runs once
//! the system is up and which only reports facts on the second serial port;
//! the host judges them ([`judge`]), so recorded consoles are judged the
//! same way in unit tests. [`run`] boots one case on one firmware; callers
//! with host-side scenario steps (publishing an update, checking etcd from
//! outside) use it directly with [`script::After::Hold`].

pub mod expect;
pub mod judge;
pub mod junit;
pub mod run;
pub mod script;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub use expect::Expect;
pub use judge::{BootReport, Verdict};
pub use run::{Boot, Outcome};

/// The last `n` lines of `s`.
pub fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A test case directory.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name (the directory's).
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// Its expectations (the defaults without `expect.toml`).
    pub expect: Expect,
    /// Its own manifest, if it has one.
    pub manifest: Option<PathBuf>,
    /// Its first-boot config, if it has one.
    pub firstboot: Option<PathBuf>,
}

impl Case {
    /// Read the case in `dir`.
    pub fn load(dir: &Path) -> Result<Case> {
        if !dir.is_dir() {
            anyhow::bail!("test case {}: no such directory", dir.display());
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let path = dir.join("expect.toml");
        if !path.is_file() {
            anyhow::bail!(
                "test case {}: no expect.toml (what must hold in the booted image; see `atomicbuild test --help`)",
                dir.display()
            );
        }
        let expect = expect::load(&path)?;
        let some = |f: &str| Some(dir.join(f)).filter(|p| p.is_file());
        let manifest = match (&expect.manifest, some("host.toml")) {
            (Some(m), _) => {
                let m = dir.join(m);
                if !m.is_file() {
                    anyhow::bail!(
                        "{}: manifest: {} does not exist",
                        path.display(),
                        m.display()
                    );
                }
                Some(m)
            }
            (None, own) => own,
        };
        Ok(Case {
            name,
            dir: dir.to_owned(),
            expect,
            manifest,
            firstboot: some("firstboot.toml"),
        })
    }

    /// The built-in case when none is given: a clean boot with a read-only
    /// `/usr`.
    pub fn builtin() -> Case {
        Case {
            name: "builtin".into(),
            dir: PathBuf::from("."),
            expect: Expect {
                read_only: vec!["/usr".into()],
                writable: vec!["/var".into(), "/etc".into()],
                ..Expect::default()
            },
            manifest: None,
            firstboot: None,
        }
    }
}

/// What one case on one firmware came to (JUnit, `--json`, the summary).
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub case: String,
    /// `uefi` or `bios`.
    pub firmware: String,
    /// The image booted.
    pub image: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Whether every rule held.
    pub passed: bool,
    /// Wall-clock seconds of the boot(s).
    pub seconds: f64,
    /// The guest's time to `multi-user.target`.
    pub boot_seconds: Option<f64>,
    /// Every rule's verdict.
    pub verdicts: Vec<Verdict>,
    /// Where its console and report were kept.
    pub logs: Option<PathBuf>,
}

impl CaseResult {
    /// From a run's outcome.
    pub fn new(
        case: &str,
        image: &Path,
        firmware: crate::model::Firmware,
        o: &Outcome,
    ) -> CaseResult {
        CaseResult {
            case: case.into(),
            firmware: firmware.name().into(),
            image: image.display().to_string(),
            accel: match o.accel {
                Some(crate::qemu::Accel::Kvm) => "kvm",
                Some(crate::qemu::Accel::Tcg) => "tcg",
                None => "none",
            }
            .into(),
            passed: o.passed(),
            seconds: o.seconds,
            boot_seconds: o.boot_time.as_ref().map(|b| b.seconds),
            verdicts: o.verdicts.clone(),
            logs: None,
        }
    }

    /// Rules that failed (warnings do not).
    pub fn failures(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.ok && !v.warning).count()
    }

    /// One line: PASS/FAIL, the case, firmware, figures, failed rules.
    pub fn summary(&self) -> String {
        let boot = self
            .boot_seconds
            .map(|s| format!(", boot {s:.1}s under {}", self.accel.to_uppercase()))
            .unwrap_or_default();
        let mut line = format!(
            "{} {} {} ({} rules{boot}, {:.0}s)",
            if self.passed { "PASS" } else { "FAIL" },
            self.case,
            self.firmware,
            self.verdicts.len(),
            self.seconds
        );
        let failed: Vec<&str> = self
            .verdicts
            .iter()
            .filter(|v| !v.ok && !v.warning)
            .map(|v| v.rule.as_str())
            .collect();
        if !failed.is_empty() {
            line += &format!(": {}", failed.join(", "));
        }
        for w in self.verdicts.iter().filter(|v| !v.ok && v.warning) {
            line += &format!("\n  warning: {}", w.detail);
        }
        line
    }
}

/// Keep a run's console and report in `dir` (created).
pub fn keep_logs(o: &Outcome, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (from, name) in [(&o.console, "console.log"), (&o.report, "report.log")] {
        if from.is_file() {
            std::fs::copy(from, dir.join(name))
                .with_context(|| format!("keeping {} in {}", from.display(), dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
