//! The reboot semaphore in etcd: a group has N slots, slot `i` being the
//! key `PREFIX/GROUP/slot/i`. A host takes a free slot by creating its key
//! in a compare-and-swap transaction (create only if absent), attached to a
//! lease it keeps alive while it runs; the lease's TTL covers a reboot, so
//! the rebooted host finds its slot again and releases it once its health
//! checks passed, while a host that never comes back frees its slot when the
//! TTL runs out. Releasing deletes the key only if it is unchanged, and
//! revokes the lease.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentnet::etcd::{Client, KeyValue};
use agentnet::http::Url;
use agentnet::retry::Attempt;
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

/// How a host reaches the semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSettings {
    /// Hosts that share slots.
    pub group: String,
    /// How many of the group may reboot at once.
    pub slots: u32,
    /// How long a slot outlives its holder (covers a reboot).
    pub ttl: Duration,
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// The CA of etcd's certificates.
    pub ca_file: PathBuf,
    /// This host's client certificate and key.
    pub cert_file: PathBuf,
    /// See `cert_file`.
    pub key_file: PathBuf,
    /// This host's etcd member name, when it is one (the quorum guard).
    pub member: Option<String>,
    /// The name this host holds slots under (default: its host name).
    pub host: Option<String>,
    /// Where the groups' keys live.
    pub prefix: String,
}

/// What a slot's key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    host: String,
    version: String,
    since: u64,
}

/// A held slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Which slot.
    pub slot: u32,
    /// The host holding it.
    pub host: String,
    /// The version it reboots into.
    pub version: String,
    /// When it took the slot (seconds since the epoch).
    pub since: u64,
    /// The lease the key is attached to.
    pub lease: i64,
    mod_revision: i64,
}

impl Holder {
    /// `host-b (slot 0, version 3, for 2m)`.
    pub fn describe(&self) -> String {
        let age = now_secs().saturating_sub(self.since);
        format!(
            "{} (slot {}, version {}, for {}m{:02}s)",
            self.host,
            self.slot,
            self.version,
            age / 60,
            age % 60
        )
    }
}

/// What taking a slot came to.
#[derive(Debug)]
pub enum Taken {
    /// A slot was free and is ours now.
    New(Holder),
    /// We held one already (taken before a reboot).
    Again(Holder),
    /// Every slot is held by these.
    Full(Vec<Holder>),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn attempt(what: &str, r: Result<impl Sized, Attempt>) -> Result<()> {
    r.map(drop).map_err(|e| match e {
        Attempt::Transient(e) | Attempt::Permanent(e) => e.context(what.to_string()),
    })
}

fn done<T>(what: &str, r: Result<T, Attempt>) -> Result<T> {
    r.map_err(|e| match e {
        Attempt::Transient(e) | Attempt::Permanent(e) => e.context(what.to_string()),
    })
}

/// A group's semaphore, as one host sees it.
#[derive(Clone)]
pub struct Semaphore {
    client: Client,
    keys: String,
    slots: u32,
    ttl: Duration,
    /// This host's name in claims.
    pub me: String,
}

/// Per request: etcd answers in milliseconds or is not there.
const CALL: Duration = Duration::from_secs(10);

impl Semaphore {
    /// Connect to the group of `s` as host `me`.
    pub fn new(s: &LockSettings, me: &str) -> Result<Semaphore> {
        let read = |p: &PathBuf| {
            std::fs::read(p).with_context(|| format!("reading {} (see [lock])", p.display()))
        };
        let ca = agentnet::tls::parse_certs(&read(&s.ca_file)?)?;
        let chain = agentnet::tls::parse_certs(&read(&s.cert_file)?)?;
        let key = agentnet::tls::parse_key(&read(&s.key_file)?)?;
        let tls = agentnet::tls::client_config(&ca, Some((chain, key)))?;
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| Url::parse(e).map_err(|why| anyhow!("[lock] endpoints: {e:?} {why}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Semaphore {
            client: Client::new(endpoints, tls),
            keys: format!("{}{}/slot/", s.prefix, s.group),
            slots: s.slots,
            ttl: s.ttl,
            me: me.to_string(),
        })
    }

    /// The etcd client (for the quorum guard).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn deadline() -> Instant {
        Instant::now() + CALL
    }

    fn holder(&self, kv: KeyValue) -> Option<Holder> {
        let slot = String::from_utf8_lossy(&kv.key)
            .strip_prefix(&self.keys)?
            .parse()
            .ok()?;
        let c: Claim = serde_json::from_slice(&kv.value).ok()?;
        Some(Holder {
            slot,
            host: c.host,
            version: c.version,
            since: c.since,
            lease: kv.lease,
            mod_revision: kv.mod_revision,
        })
    }

    /// Every held slot.
    pub fn holders(&self) -> Result<Vec<Holder>> {
        let kvs = done(
            "listing the reboot slots in etcd",
            self.client
                .range_prefix(self.keys.as_bytes(), Self::deadline()),
        )?;
        Ok(kvs.into_iter().filter_map(|kv| self.holder(kv)).collect())
    }

    /// The slot this host holds, if any.
    pub fn mine(&self) -> Result<Option<Holder>> {
        Ok(self.holders()?.into_iter().find(|h| h.host == self.me))
    }

    /// Take a free slot for rebooting into `version` (or find the one
    /// this host holds).
    pub fn take(&self, version: &str) -> Result<Taken> {
        if let Some(h) = self.mine()? {
            return Ok(Taken::Again(h));
        }
        let lease = done(
            "granting a lease in etcd",
            self.client
                .lease_grant(self.ttl.as_secs().max(1) as i64, Self::deadline()),
        )?;
        let claim = Claim {
            host: self.me.clone(),
            version: version.to_string(),
            since: now_secs(),
        };
        let value = serde_json::to_vec(&claim)?;
        for slot in 0..self.slots {
            let key = format!("{}{slot}", self.keys);
            let existing = done(
                "taking a reboot slot in etcd",
                self.client
                    .create(key.as_bytes(), &value, lease, Self::deadline()),
            )?;
            if existing.is_none() {
                let mine = self.mine()?.context("the slot just taken is gone")?;
                return Ok(Taken::New(mine));
            }
        }
        attempt(
            "revoking the unused lease",
            self.client.lease_revoke(lease, Self::deadline()),
        )?;
        Ok(Taken::Full(self.holders()?))
    }

    /// Release `h` (if it is unchanged) and revoke its lease.
    pub fn release(&self, h: &Holder) -> Result<()> {
        let key = format!("{}{}", self.keys, h.slot);
        done(
            "releasing the reboot slot in etcd",
            self.client
                .delete_if_unchanged(key.as_bytes(), h.mod_revision, Self::deadline()),
        )?;
        attempt(
            "revoking the slot's lease",
            self.client.lease_revoke(h.lease, Self::deadline()),
        )
    }

    /// Release whatever `host` holds (an administrator freeing a stuck
    /// slot); what was released.
    pub fn release_host(&self, host: &str) -> Result<Vec<Holder>> {
        let held: Vec<Holder> = self
            .holders()?
            .into_iter()
            .filter(|h| h.host == host)
            .collect();
        for h in &held {
            self.release(h)?;
        }
        Ok(held)
    }

    /// Keep `h`'s lease alive from a thread until the returned guard is
    /// dropped or the lease is gone.
    pub fn keep(&self, h: &Holder) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, lease, every) = (
            self.client.clone(),
            h.lease,
            (self.ttl / 3).max(Duration::from_secs(1)),
        );
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match client.lease_keepalive(lease, Instant::now() + CALL) {
                    Ok(0) => {
                        crate::log("the reboot slot's lease has expired: the slot is free again");
                        return;
                    }
                    Ok(_) => {}
                    Err(Attempt::Transient(e) | Attempt::Permanent(e)) => {
                        crate::log(&format!("keeping the reboot slot: {e:#}"));
                    }
                }
                let until = Instant::now() + every;
                while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        Keeper { stop }
    }
}

/// Keeps a slot's lease alive while it lives.
pub struct Keeper {
    stop: Arc<AtomicBool>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// This host's name (the kernel's host name).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname terminates it
    // or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
