//! What the agent does: check each boot (mark a new deployment good, send a
//! sick one back through GRUB's counter, finish a rollback GRUB made), and
//! look for updates (pull the signed commit, refuse older or bad ones,
//! stage it, arm the counter, reboot as the strategy says).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::coord::Coordinator;
use crate::host::{Dep, Host};
use crate::settings::Settings;
use crate::state::{Bad, Store};
use crate::{bootcount, health, log};

/// The agent's world.
pub struct Agent {
    /// The host's deployments.
    pub host: Host,
    /// Effective settings.
    pub settings: Settings,
    /// Remembered state.
    pub store: Store,
    /// The /boot partition.
    pub boot: PathBuf,
    /// When a staged update may reboot the host.
    pub coord: Coordinator,
}

/// Whether a poll that staged (or found staged) an update reboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// No: `upgrade` without `--now`.
    No,
    /// At once: `upgrade --now`, a person's explicit word.
    Now,
    /// When the strategy allows (the agent).
    ByStrategy,
}

/// What a boot check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing was pending.
    Normal,
    /// The new deployment passed its checks.
    Good,
    /// It failed them: reboot (GRUB counts the try).
    Reboot(Vec<String>),
    /// GRUB booted the previous deployment: the new one is bad.
    RolledBack,
}

fn same(a: &Option<Dep>, b: &Option<Dep>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.id == b.id,
        _ => false,
    }
}

/// Decide what a boot means from the counter and the deployments.
pub fn judge(
    counter: Option<u32>,
    booted_is_default: bool,
    healthy: impl FnOnce() -> Vec<String>,
) -> Verdict {
    match counter {
        None => Verdict::Normal,
        Some(_) if booted_is_default => {
            let failures = healthy();
            match failures.is_empty() {
                true => Verdict::Good,
                false => Verdict::Reboot(failures),
            }
        }
        Some(0) => Verdict::RolledBack,
        // Another deployment chosen by hand in GRUB's menu: leave it be.
        Some(_) => Verdict::Normal,
    }
}

impl Agent {
    /// Check this boot and act on it; true when a reboot was asked for.
    pub fn boot_check(&self) -> Result<bool> {
        let counter = bootcount::read(&self.boot)?;
        let st = self.host.status();
        let booted = st.booted.clone().context("no booted deployment")?;
        let verdict = judge(counter, same(&st.booted, &st.default), || {
            log(&format!(
                "checking the health of version {} ({} {} left)",
                booted.version,
                counter.unwrap_or(0),
                if counter == Some(1) { "try" } else { "tries" }
            ));
            health::check(self.settings.health_timeout)
        });
        match verdict {
            Verdict::Normal => {
                log(&format!(
                    "booted version {} ({})",
                    booted.version, booted.id
                ));
                // A slot left from a reboot by hand; etcd being away is no
                // reason to fail a plain boot.
                let why = format!(
                    "no update was pending on this boot of version {}",
                    booted.version
                );
                if let Err(e) = self.coord.release_within(&why, 1) {
                    log(&format!("{e:#}"));
                }
                Ok(false)
            }
            Verdict::Good => {
                bootcount::write(&self.boot, None)?;
                log(&format!(
                    "version {} is healthy: marked good",
                    booted.version
                ));
                self.host.trim()?;
                self.coord.release(&format!(
                    "version {} passed its health checks",
                    booted.version
                ))?;
                Ok(false)
            }
            Verdict::Reboot(failures) => {
                for f in &failures {
                    log(&format!("health check failed: {f}"));
                }
                log(&match counter {
                    Some(0) => format!(
                        "version {} failed its last try: rebooting into the previous deployment",
                        booted.version
                    ),
                    _ => format!(
                        "version {} is not healthy: rebooting to try again",
                        booted.version
                    ),
                });
                reboot()?;
                Ok(true)
            }
            Verdict::RolledBack => {
                let bad = st.default.context("no default deployment")?;
                self.rolled_back(&booted, &bad)?;
                Ok(false)
            }
        }
    }

    /// GRUB booted the previous deployment after `bad` used its tries:
    /// remember `bad`, make the booted one the default again, free the slot.
    fn rolled_back(&self, booted: &Dep, bad: &Dep) -> Result<()> {
        self.store.mark_bad(Bad {
            commit: bad.commit.clone(),
            version: bad.version.clone(),
            reason: format!(
                "not healthy within {} tries: GRUB booted the previous deployment",
                self.settings.tries
            ),
        })?;
        self.host.make_default(&booted.commit, Some(&bad.commit))?;
        bootcount::write(&self.boot, None)?;
        log(&format!(
            "rolled back: GRUB booted version {} after version {} used its tries; version {} is marked bad and {} is the default",
            booted.version, bad.version, bad.version, booted.version
        ));
        self.coord.release(&format!(
            "rolled back from version {} to version {}",
            bad.version, booted.version
        ))
    }

    /// Look for an update once; stage it and (`reboot`) reboot into it.
    /// Returns what happened, for the log.
    pub fn poll(&self, reboot: Reboot) -> Result<String> {
        if self.store.paused() {
            return Ok("updates are paused (atomic-update resume)".into());
        }
        let s = &self.settings;
        if let Some(url) = &s.url {
            self.host.set_remote_url(&s.remote, url)?;
        }
        let st = self.host.status();
        if let Some(staged) = &st.staged {
            return self.reboot_into(&staged.version, reboot);
        }
        let booted = st.booted.context("no booted deployment")?;
        let (head, _) = self
            .host
            .pull(&s.remote, &s.ref_, true)
            .context("nothing taken")?;
        let version = self.host.version(&head);
        if head == booted.commit {
            return Ok(format!("up to date (version {version})"));
        }
        if self.store.is_bad(&head)? {
            return Ok(format!(
                "version {version} ({head}) is marked bad: waiting for a newer one"
            ));
        }
        if common::version::compare(&version, &booted.version) != Ordering::Greater {
            return Ok(format!(
                "version {version} is not newer than the booted {}: not taken",
                booted.version
            ));
        }
        let (_, bytes) = self.host.pull(&s.remote, &s.ref_, false)?;
        log(&format!("pulled version {version} ({head}): {bytes} bytes"));
        let staged = self.host.stage(&head)?;
        bootcount::write(&self.boot, Some(s.tries))?;
        log(&format!(
            "staged version {} ({}); the boot counter has {} {}",
            staged.version,
            staged.id,
            s.tries,
            if s.tries == 1 { "try" } else { "tries" }
        ));
        self.reboot_into(&version, reboot)
    }

    /// Reboot into the staged `version` if `how` (and the strategy) says so.
    fn reboot_into(&self, version: &str, how: Reboot) -> Result<String> {
        let wait = match how {
            Reboot::No => {
                return Ok(format!(
                    "version {version} is staged; it runs after the next reboot"
                ))
            }
            Reboot::Now => None,
            Reboot::ByStrategy => self.coord.may_reboot(&self.settings, version)?,
        };
        if let Some(why) = wait {
            return Ok(why);
        }
        reboot()?;
        Ok(format!("rebooting into version {version}"))
    }

    /// The status report.
    pub fn status(&self) -> String {
        let st = self.host.status();
        let show = |d: &Option<Dep>| match d {
            Some(d) => format!("version {} ({})", d.version, d.id),
            None => "-".into(),
        };
        let bad = self.store.load().map(|s| s.bad).unwrap_or_default();
        let mut out = vec![
            format!("booted:   {}", show(&st.booted)),
            format!("default:  {}", show(&st.default)),
            format!("staged:   {}", show(&st.staged)),
            format!("rollback: {}", show(&st.rollback)),
        ];
        for b in bad {
            out.push(format!(
                "bad:      version {} ({}): {}",
                b.version, b.commit, b.reason
            ));
        }
        out.extend(self.coord.status());
        out.push(format!(
            "paused:   {}",
            if self.store.paused() { "yes" } else { "no" }
        ));
        out.push(format!("counter:  {}", bootcount::show(&self.boot)));
        let s = &self.settings;
        out.push(format!(
            "settings: remote {} ref {} url {} poll every {} s, {} tries, strategy {}",
            s.remote,
            s.ref_,
            s.url.as_deref().unwrap_or("(the remote's)"),
            s.poll_interval.as_secs(),
            s.tries,
            s.strategy
        ));
        out.join("\n")
    }

    /// `rollback`: a pending update (staged, or the default but not yet
    /// booted) is dropped and the booted deployment stays the default;
    /// otherwise the previous deployment becomes the default.
    pub fn rollback(&self, now: bool) -> Result<()> {
        let st = self.host.status();
        let pending = st.staged.is_some() || !same(&st.booted, &st.default);
        let to = match pending {
            true => st.booted,
            false => st.rollback,
        }
        .context("there is no deployment to roll back to")?;
        self.host.make_default(&to.commit, None)?;
        bootcount::write(&self.boot, None)?;
        log(&format!("version {} is the default now", to.version));
        if now {
            reboot()?;
        }
        Ok(())
    }
}

/// Reboot the host.
pub fn reboot() -> Result<()> {
    let (code, out) =
        health::run_bounded(&["systemctl", "reboot"], std::time::Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!(e))?;
    if code != 0 {
        bail!("systemctl reboot failed: {out}");
    }
    Ok(())
}

/// The /boot directory of this host.
pub fn boot_dir() -> PathBuf {
    Path::new(bootcount::BOOT).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let fine = || Vec::new();
        let sick = || vec!["check.d/x failed".to_string()];
        assert_eq!(judge(None, true, sick), Verdict::Normal);
        assert_eq!(judge(Some(2), true, fine), Verdict::Good);
        assert_eq!(judge(Some(0), true, fine), Verdict::Good);
        assert_eq!(
            judge(Some(1), true, sick),
            Verdict::Reboot(vec!["check.d/x failed".into()])
        );
        assert_eq!(
            judge(Some(0), false, || panic!("no checks on a rollback")),
            Verdict::RolledBack
        );
        assert_eq!(judge(Some(2), false, fine), Verdict::Normal);
    }
}
