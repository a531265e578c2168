//! The settings that coordinate reboots: `strategy`, `[window]` and
//! `[lock]` (see `crate::window`, `crate::lock`, `crate::quorum`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Interval;
use crate::lock::LockSettings;
use crate::tz::Zone;
use crate::window::{parse_days, parse_start, Window};

pub use common::strategy::Strategy;

/// `[window]` as a drop-in writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFrag {
    days: Option<Vec<String>>,
    start: Option<String>,
    length: Option<Interval>,
    time_zone: Option<String>,
}

/// `[lock]` as a drop-in writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFrag {
    group: Option<String>,
    slots: Option<u32>,
    ttl: Option<Interval>,
    endpoints: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    member: Option<String>,
    host: Option<String>,
    prefix: Option<String>,
}

macro_rules! take {
    ($into:expr, $f:expr, $($k:ident),*) => { $( if $f.$k.is_some() { $into.$k = $f.$k; } )* };
}

/// Key by key, later drop-ins win.
pub fn merge_window(into: &mut Option<WindowFrag>, f: Option<WindowFrag>) {
    if let Some(f) = f {
        let i = into.get_or_insert_with(WindowFrag::default);
        take!(i, f, days, start, length, time_zone);
    }
}

/// Key by key, later drop-ins win.
pub fn merge_lock(into: &mut Option<LockFrag>, f: Option<LockFrag>) {
    if let Some(f) = f {
        let i = into.get_or_insert_with(LockFrag::default);
        take!(
            i, f, group, slots, ttl, endpoints, ca_file, cert_file, key_file, member, host, prefix
        );
    }
}

/// The window, when the strategy needs one.
pub fn window(f: Option<WindowFrag>, zoneinfo: &Path) -> Result<Option<Window>, String> {
    let Some(f) = f else {
        return Ok(None);
    };
    let start = parse_start(&f.start.ok_or("[window] needs start = \"HH:MM\"")?)
        .map_err(|e| format!("[window] start: {e}"))?;
    let length = f
        .length
        .ok_or("[window] needs length (such as \"2h\")")?
        .secs()
        .map_err(|e| format!("[window] length: {e}"))?;
    let length =
        common::fleet::check_length(length).map_err(|e| format!("[window] length: {e}"))?;
    Ok(Some(Window {
        days: parse_days(&f.days.unwrap_or_default()).map_err(|e| format!("[window] days: {e}"))?,
        start,
        length: Duration::from_secs(length),
        zone: Zone::parse(f.time_zone.as_deref().unwrap_or("UTC"), zoneinfo)
            .map_err(|e| format!("[window] time_zone: {e}"))?,
    }))
}

/// The lock, when the strategy needs one.
pub fn lock(f: Option<LockFrag>) -> Result<Option<LockSettings>, String> {
    let Some(f) = f else {
        return Ok(None);
    };
    let endpoints = f.endpoints.unwrap_or_default();
    if endpoints.is_empty() {
        return Err(
            "[lock] needs endpoints (etcd client URLs; first-boot writes them for etcd hosts)"
                .into(),
        );
    }
    let slots = common::fleet::check_slots(f.slots.map_or(1, i64::from))
        .map_err(|e| format!("[lock] slots: {e}"))?;
    let ttl = f
        .ttl
        .map_or(Ok(common::fleet::DEFAULT_TTL_SECS), |t| t.secs())
        .and_then(|t| common::fleet::check_ttl(t).map_err(|e| anyhow::anyhow!(e)))
        .map_err(|e| format!("[lock] ttl: {e}"))?;
    let group = f.group.unwrap_or_else(|| "default".into());
    common::fleet::check_group(&group).map_err(|e| format!("[lock] group: {e}"))?;
    let pki =
        |v: Option<PathBuf>, name: &str| v.unwrap_or_else(|| Path::new("/etc/etcd/pki").join(name));
    Ok(Some(LockSettings {
        group,
        slots,
        ttl: Duration::from_secs(ttl),
        endpoints,
        ca_file: pki(f.ca_file, "ca.crt"),
        cert_file: pki(f.cert_file, "client.crt"),
        key_file: pki(f.key_file, "client.key"),
        member: f.member,
        host: f.host,
        prefix: f.prefix.unwrap_or_else(|| "/atomic-update/reboot/".into()),
    }))
}
