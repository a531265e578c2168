//! When a staged update may reboot the host, by the strategy: at once,
//! inside the maintenance window, holding a slot of the group's reboot
//! semaphore in etcd (and, for an etcd member, only while every other member
//! is healthy), or inside the window and holding a slot. The slot is
//! released only after the rebooted host's health checks passed, or after
//! it rolled back.

use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Result;

use crate::lock::{Holder, Keeper, Semaphore, Taken};
use crate::settings::Settings;
use crate::window::show_utc;
use crate::{log, quorum};

/// The reboot coordinator of one agent.
pub struct Coordinator {
    sem: Option<Semaphore>,
    member: Option<String>,
    keeper: Mutex<Option<Keeper>>,
}

/// Where the first-boot agent writes etcd's configuration: its `name:` is
/// this host's member name.
const ETCD_CONF: &str = "/etc/etcd/etcd.conf.yml";

/// The `name:` of an etcd config file.
pub fn member_name(conf: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let v = l.strip_prefix("name:")?.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_string())
    })
}

impl Coordinator {
    /// The coordinator for `s` (connects nothing yet).
    pub fn new(s: &Settings) -> Result<Coordinator> {
        let lock = s.lock.as_ref().filter(|_| s.strategy.lock);
        let sem = lock
            .map(|l| {
                let me = l.host.clone().unwrap_or_else(crate::lock::hostname);
                Semaphore::new(l, &me)
            })
            .transpose()?;
        let member = lock.and_then(|l| {
            l.member
                .clone()
                .or_else(|| member_name(&std::fs::read_to_string(ETCD_CONF).unwrap_or_default()))
        });
        Ok(Coordinator {
            sem,
            member,
            keeper: Mutex::new(None),
        })
    }

    fn keep(&self, sem: &Semaphore, h: &Holder) {
        *self.keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(sem.keep(h));
    }

    /// After a boot: keep alive the slot this host took before rebooting.
    /// etcd may not be back yet (this host's member restarting); the slot
    /// is found again when it is released.
    pub fn resume(&self) {
        let Some(sem) = &self.sem else {
            return;
        };
        match sem.mine() {
            Ok(Some(h)) => {
                log(&format!("holding reboot slot {}: {}", h.slot, h.describe()));
                self.keep(sem, &h);
            }
            Ok(None) => {}
            Err(e) => log(&format!(
                "cannot look for this host's reboot slot yet: {e:#}"
            )),
        }
    }

    /// Whether `s` lets the host reboot into `version` now (taking a slot
    /// when the strategy says so); `Some(why not)` when it must wait.
    pub fn may_reboot(&self, s: &Settings, version: &str) -> Result<Option<String>> {
        if let Some(w) = s.window.as_ref().filter(|_| s.strategy.window) {
            let now = SystemTime::now();
            if !w.is_open(now) {
                return Ok(Some(format!(
                    "version {version} waits for the maintenance window {}: it may reboot from {}",
                    w.describe(),
                    show_utc(w.next_open(now))
                )));
            }
        }
        let Some(sem) = &self.sem else {
            return Ok(None);
        };
        if let Some(me) = &self.member {
            if let Err(why) = quorum::check(sem.client(), me) {
                return Ok(Some(format!(
                    "version {version} waits: not taking a reboot slot while {why} (this host is etcd member {me}; rebooting now could cost the cluster its quorum)"
                )));
            }
        }
        match sem.take(version)? {
            Taken::New(h) | Taken::Again(h) => {
                log(&format!("took reboot slot {}: {}", h.slot, h.describe()));
                self.keep(sem, &h);
                Ok(None)
            }
            Taken::Full(holders) => {
                let who: Vec<String> = holders.iter().map(Holder::describe).collect();
                Ok(Some(format!(
                    "version {version} waits for a reboot slot: held by {}",
                    who.join(", ")
                )))
            }
        }
    }

    /// Release the slot this host holds, if any, saying `why`. Right after
    /// a reboot etcd may still be regaining its quorum: tried for up to
    /// two minutes.
    pub fn release(&self, why: &str) -> Result<()> {
        self.release_within(why, 12)
    }

    /// Release as [`Coordinator::release`], trying `attempts` times.
    pub fn release_within(&self, why: &str, attempts: u32) -> Result<()> {
        let Some(sem) = &self.sem else {
            return Ok(());
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let r = sem.mine().and_then(|h| match h {
                Some(h) => sem.release(&h).map(|()| Some(h)),
                None => Ok(None),
            });
            match r {
                Ok(h) => {
                    *self.keeper.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    if let Some(h) = h {
                        log(&format!("released reboot slot {}: {why}", h.slot));
                    }
                    return Ok(());
                }
                Err(e) if tries < attempts => {
                    log(&format!(
                        "releasing the reboot slot: {e:#}; trying again in 10 s"
                    ));
                    std::thread::sleep(std::time::Duration::from_secs(10));
                }
                Err(e) => return Err(e.context("releasing the reboot slot")),
            }
        }
    }

    /// Status lines: the group's holders.
    pub fn status(&self) -> Option<String> {
        let sem = self.sem.as_ref()?;
        Some(match sem.holders() {
            Ok(h) if h.is_empty() => "slots:    none held".into(),
            Ok(h) => format!(
                "slots:    {}",
                h.iter()
                    .map(Holder::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => format!("slots:    cannot reach etcd: {e:#}"),
        })
    }

    /// The semaphore, when the strategy has one.
    pub fn semaphore(&self) -> Option<&Semaphore> {
        self.sem.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_come_from_etcds_config() {
        let conf = "# written by atomic-firstboot\nname: 'node-b'\ndata-dir: /var/lib/etcd\n";
        assert_eq!(member_name(conf).as_deref(), Some("node-b"));
        assert_eq!(member_name("data-dir: x\n"), None);
    }
}
