//! Judging what a guest reported against a case's expectations: from the
//! text of the report's serial port alone, so a recorded console is judged
//! exactly as a live one.

use std::collections::BTreeMap;

use serde::Serialize;

use super::expect::{Expect, FirstbootResult};
use super::script::EXIT_MARK;
use crate::model::Firmware;

/// Facts of one boot: key → lines.
pub type Report = BTreeMap<String, Vec<String>>;

/// One boot's report.
#[derive(Debug, Clone, Default)]
pub struct BootReport {
    /// The guest's boot counter (1 = first boot).
    pub boot: u32,
    /// Its facts.
    pub facts: Report,
    /// Whether the script got to its end.
    pub complete: bool,
}

impl BootReport {
    /// The lines of `key`, joined.
    pub fn one(&self, key: &str) -> String {
        self.facts
            .get(key)
            .map(|v| v.join("\n"))
            .unwrap_or_default()
    }

    /// The lines of `key`.
    pub fn lines(&self, key: &str) -> &[String] {
        self.facts.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// A `[[fact]]`'s lines, joined.
    pub fn fact(&self, name: &str) -> String {
        self.one(&format!("fact:{name}"))
    }
}

/// Every boot's report in `text` (the report port's log), in order.
pub fn parse(text: &str) -> Vec<BootReport> {
    let mut boots: Vec<BootReport> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some(pos) = line.find("ABCHECK") else {
            continue;
        };
        let rest = &line[pos..];
        if let Some(n) = rest.strip_prefix("ABCHECK-BEGIN ") {
            boots.push(BootReport {
                boot: n.trim().parse().unwrap_or(0),
                ..BootReport::default()
            });
        } else if rest.starts_with("ABCHECK-END") {
            if let Some(b) = boots.last_mut() {
                b.complete = true;
            }
        } else if let Some((key, value)) = rest.strip_prefix("ABCHECK ").and_then(|r| {
            r.split_once("| ")
                .or_else(|| r.strip_suffix('|').map(|k| (k, "")))
        }) {
            if let Some(b) = boots.last_mut() {
                b.facts
                    .entry(key.to_string())
                    .or_default()
                    .push(value.to_string());
            }
        }
    }
    boots
}

/// The verdict on one rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The rule, as `expect.toml` names it (`units.active[etcd.service]`).
    pub rule: String,
    /// Whether it held.
    pub ok: bool,
    /// A miss that only warns (a TCG boot-time budget).
    pub warning: bool,
    /// What was expected and what was seen.
    pub detail: String,
}

impl Verdict {
    /// A rule that held (`ok`) or not.
    pub fn new(rule: impl Into<String>, ok: bool, detail: impl Into<String>) -> Verdict {
        Verdict {
            rule: rule.into(),
            ok,
            warning: false,
            detail: detail.into(),
        }
    }
}

/// Seconds of a systemd time span such as `1min 2.345s`, `345ms`, `2.1s`.
fn span_secs(t: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for w in t.split_whitespace() {
        let split = w.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (n, unit) = w.split_at(split);
        let n: f64 = n.parse().ok()?;
        total += n * match unit {
            "h" => 3600.0,
            "min" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            _ => return None,
        };
        any = true;
    }
    any.then_some(total)
}

/// Seconds from power-on to `multi-user.target`: the phases
/// `systemd-analyze time` counts before the kernel (firmware and loader,
/// when systemd knows them) plus the target's activation on the monotonic
/// clock (from the kernel's start). Without that fact: the phases before
/// userspace plus the default target's time in userspace, or the whole
/// startup.
pub fn boot_seconds(r: &BootReport) -> Option<f64> {
    let lines = r.lines("boot-time");
    let startup = lines
        .iter()
        .find_map(|l| l.strip_prefix("Startup finished in "))?;
    let (phases, total) = startup.rsplit_once(" = ")?;
    let (mut before_kernel, mut before_userspace) = (0.0, 0.0);
    for part in phases.split(" + ") {
        let (span, what) = part.rsplit_once(" (")?;
        let secs = span_secs(span)?;
        match what {
            "firmware)" | "loader)" => before_kernel += secs,
            "userspace)" => continue,
            _ => {}
        }
        before_userspace += secs;
    }
    let monotonic_us: Option<u64> = r.one("multi-user").trim().parse().ok().filter(|us| *us > 0);
    if let Some(us) = monotonic_us {
        return Some(before_kernel + us as f64 / 1e6);
    }
    let target = lines.iter().find_map(|l| {
        let rest = l.split_once(".target reached after ")?.1;
        span_secs(rest.trim_end_matches('.').strip_suffix(" in userspace")?)
    });
    match target {
        Some(t) => Some(before_userspace + t),
        None => span_secs(total),
    }
}

/// Judge one boot against `e`; `firmware` is what it was booted with.
pub fn judge(e: &Expect, r: &BootReport, firmware: Firmware) -> Vec<Verdict> {
    let mut v = Vec::new();
    judge_system(e, r, firmware, &mut v);
    judge_paths_and_units(e, r, &mut v);
    judge_files(e, r, &mut v);
    judge_commands(e, r, &mut v);
    judge_network(e, r, &mut v);
    judge_firstboot(e, r, &mut v);
    v
}

/// The report's completeness, the system's state, failed units, firmware.
fn judge_system(e: &Expect, r: &BootReport, firmware: Firmware, v: &mut Vec<Verdict>) {
    if !r.complete {
        v.push(Verdict::new(
            "report",
            false,
            "the guest's report ended before ABCHECK-END (the check script died or the guest stopped)",
        ));
    }
    let state = r.one("state");
    v.push(Verdict::new(
        "system.state",
        state == e.state,
        format!("is-system-running should say {:?}; said {state:?}", e.state),
    ));
    if !e.failed_units {
        let failed = r.one("failed");
        v.push(Verdict::new(
            "system.failed_units",
            failed.trim().is_empty(),
            format!("no unit should have failed; failed: {failed}"),
        ));
    }
    let fw = r.one("firmware");
    let want = if firmware == Firmware::Uefi {
        "uefi"
    } else {
        "bios"
    };
    v.push(Verdict::new(
        "firmware",
        fw == want,
        format!("the guest should have booted with {want}; it says {fw:?}"),
    ));
}

/// Read-only and writable paths, active and inactive units.
fn judge_paths_and_units(e: &Expect, r: &BootReport, v: &mut Vec<Verdict>) {
    for (field, list, want) in [
        ("read_only", &e.read_only, "ro"),
        ("writable", &e.writable, "rw"),
    ] {
        for p in list {
            let got = r.one(&format!("write:{p}"));
            v.push(Verdict::new(
                format!("system.{field}[{p}]"),
                got == want,
                format!(
                    "{p} should be {}; writing there {}",
                    if want == "ro" {
                        "read-only"
                    } else {
                        "writable"
                    },
                    match got.as_str() {
                        "rw" => "succeeded",
                        "ro" => "failed",
                        _ => "was not tried",
                    }
                ),
            ));
        }
    }
    for (field, list, active) in [
        ("active", &e.active, true),
        ("inactive", &e.inactive, false),
    ] {
        for u in list {
            let got = r.one(&format!("unit:{u}"));
            v.push(Verdict::new(
                format!("units.{field}[{u}]"),
                (got == "active") == active && !got.is_empty(),
                format!(
                    "{u} should {}be active; is-active says {got:?}",
                    if active { "" } else { "not " }
                ),
            ));
        }
    }
}

fn judge_files(e: &Expect, r: &BootReport, v: &mut Vec<Verdict>) {
    for (i, f) in e.files.iter().enumerate() {
        let rule = format!("file[{i}] {}", f.path);
        let stat = r.one(&format!("file:{i}:stat"));
        if !f.exists {
            v.push(Verdict::new(
                rule,
                stat == "missing",
                format!("{} should not exist; stat: {stat}", f.path),
            ));
            continue;
        }
        let (mode, owner) = stat.split_once(' ').unwrap_or((&stat, ""));
        let mut bad = Vec::new();
        if stat == "missing" || stat.is_empty() {
            bad.push("it is missing".to_string());
        } else {
            if let Some(m) = f
                .mode
                .as_deref()
                .filter(|m| m.trim_start_matches('0') != mode.trim_start_matches('0'))
            {
                bad.push(format!("mode {mode}, not {m}"));
            }
            if let Some(o) = f.owner.as_deref().filter(|o| *o != owner) {
                bad.push(format!("owner {owner}, not {o}"));
            }
            if let Some(c) = &f.contains {
                if !r.one(&format!("file:{i}:text")).contains(c.as_str()) {
                    bad.push(format!("its text lacks {c:?}"));
                }
            }
        }
        v.push(Verdict::new(
            rule,
            bad.is_empty(),
            format!(
                "{}: {}",
                f.path,
                if bad.is_empty() {
                    "as expected".into()
                } else {
                    bad.join("; ")
                }
            ),
        ));
    }
}

fn judge_commands(e: &Expect, r: &BootReport, v: &mut Vec<Verdict>) {
    for (i, c) in e.commands.iter().enumerate() {
        let mut lines = r.lines(&format!("cmd:{i}")).to_vec();
        // Output without a final newline has the mark at the end of its
        // last line.
        let last = lines.pop().unwrap_or_default();
        let (rest, status) = match last.rsplit_once(EXIT_MARK) {
            Some((rest, s)) => (rest.to_string(), s.trim().parse::<i32>().ok()),
            None => (last.to_string(), None),
        };
        if status.is_none() || !rest.is_empty() {
            lines.push(rest);
        }
        let out = lines.join("\n");
        let mut bad = Vec::new();
        match status {
            None => bad.push("it did not report its exit status".to_string()),
            Some(s) if s != c.exit => bad.push(format!("exit status {s}, not {}", c.exit)),
            _ => {}
        }
        if let Some(want) = c.stdout_contains.as_deref().filter(|w| !out.contains(w)) {
            bad.push(format!("output lacks {want:?}"));
        }
        let detail = if bad.is_empty() {
            format!("`{}` as expected", c.run)
        } else {
            format!(
                "`{}`: {}; output:\n{}",
                c.run,
                bad.join("; "),
                crate::vmtest::tail_lines(&out, 15)
            )
        };
        v.push(Verdict::new(
            format!("command[{i}] {}", c.label()),
            bad.is_empty(),
            detail,
        ));
    }
}

fn judge_network(e: &Expect, r: &BootReport, v: &mut Vec<Verdict>) {
    let Some(n) = &e.network else { return };
    let addrs: Vec<(String, bool)> = r
        .lines("ipv4")
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet")?;
            let a = w.next()?.to_string();
            Some((a, l.split_whitespace().any(|x| x == "dynamic")))
        })
        .collect();
    let seen = format!("{addrs:?}");
    if n.dhcp {
        v.push(Verdict::new("network.dhcp", addrs.iter().any(|a| a.1), format!("a global IPv4 address should be leased by DHCP; addresses (address, dynamic): {seen}")));
    }
    if let Some(ip) = &n.ipv4 {
        v.push(Verdict::new(
            "network.ipv4",
            addrs.iter().any(|a| &a.0 == ip),
            format!("{ip} should be configured; addresses: {seen}"),
        ));
    }
}

fn judge_firstboot(e: &Expect, r: &BootReport, v: &mut Vec<Verdict>) {
    let Some(f) = e.firstboot else { return };
    let stamp = r.one("firstboot:stamp");
    let result = r.one("firstboot:result");
    let log = r.one("firstboot:log");
    let ok = result == "success"
        && match f.result {
            FirstbootResult::Provisioned => stamp == "present",
            FirstbootResult::NoUserData => stamp == "missing" && log.contains("no user data"),
        };
    v.push(Verdict::new(
        "firstboot.result",
        ok,
        format!(
            "atomic-firstboot should have {}; its unit's result: {result:?}, stamp {stamp}, its log:\n{}",
            match f.result {
                FirstbootResult::Provisioned => "applied the user data",
                FirstbootResult::NoUserData => "found no user data and provisioned nothing",
            },
            crate::vmtest::tail_lines(&log, 10)
        ),
    ));
}
