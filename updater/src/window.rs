//! Maintenance windows: on some days of the week, from a local time for a
//! length (which may run past midnight), in a time zone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::tz::Zone;

const DAY: i64 = 86_400;
use common::fleet::DAYS as NAMES;

/// When reboots may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight.
    pub start: u32,
    /// How long it stays open.
    pub length: Duration,
    /// The zone `start` is in.
    pub zone: Zone,
}

/// Monday = 0 of the day `days` after 1970-01-01 (a Thursday).
fn weekday(days: i64) -> usize {
    (days + 3).rem_euclid(7) as usize
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

pub use common::fleet::{parse_days, parse_start};

impl Window {
    /// The openings (UTC seconds) on the local day `day` (days since the
    /// epoch), if the window opens that day.
    fn opening(&self, day: i64) -> Option<i64> {
        self.days[weekday(day)].then(|| self.zone.to_utc(day * DAY + i64::from(self.start) * 60))
    }

    fn local_day(&self, utc: i64) -> i64 {
        (utc + i64::from(self.zone.offset_at(utc))).div_euclid(DAY)
    }

    /// Whether it is open at `now`.
    pub fn is_open(&self, now: SystemTime) -> bool {
        let now = secs(now);
        let today = self.local_day(now);
        let len = self.length.as_secs() as i64;
        (today - 8..=today)
            .filter_map(|d| self.opening(d))
            .any(|open| open <= now && now < open + len)
    }

    /// The next time it opens after `now`.
    pub fn next_open(&self, now: SystemTime) -> SystemTime {
        let n = secs(now);
        let today = self.local_day(n);
        let at = (today..=today + 8)
            .filter_map(|d| self.opening(d))
            .find(|open| *open > n)
            .unwrap_or(n);
        UNIX_EPOCH + Duration::from_secs(at.max(0) as u64)
    }

    /// How it reads in logs: `mon,fri 02:00+2h (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        let days: Vec<&str> = (0..7).filter(|i| self.days[*i]).map(|i| NAMES[i]).collect();
        let zone = match &self.zone {
            Zone::Utc => "UTC".to_string(),
            Zone::Fixed(o) => format!(
                "{}{:02}:{:02}",
                if *o < 0 { '-' } else { '+' },
                o.abs() / 3600,
                o.abs() % 3600 / 60
            ),
            Zone::Rules { name, .. } => name.clone(),
        };
        format!(
            "{} {:02}:{:02}+{}m ({zone})",
            if days.len() == 7 {
                "daily".to_string()
            } else {
                days.join(",")
            },
            self.start / 60,
            self.start % 60,
            self.length.as_secs() / 60
        )
    }
}

/// A UTC instant as `2026-11-30 21:05 UTC`.
pub fn show_utc(t: SystemTime) -> String {
    let s = secs(t);
    let (days, rest) = (s.div_euclid(DAY), s.rem_euclid(DAY));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s as u64)
    }

    // 2026-11-30 is a Monday; 00:00 UTC that day:
    const MON: i64 = 1_795_996_800;

    #[test]
    fn times_show_in_utc() {
        assert_eq!(show_utc(at(MON + 3600 + 300)), "2026-11-30 01:05 UTC");
    }

    #[test]
    fn open_closed_and_next_across_midnight_and_zones() {
        // Fridays 23:00 for 2 h, UTC: open Fri 23:30 and Sat 00:30.
        let w = Window {
            days: parse_days(&["fri".into()]).unwrap(),
            start: 23 * 60,
            length: Duration::from_secs(7200),
            zone: Zone::Utc,
        };
        let fri = MON + 4 * DAY;
        assert!(!w.is_open(at(MON + 12 * 3600)));
        assert!(w.is_open(at(fri + 23 * 3600 + 1800)));
        assert!(w.is_open(at(fri + DAY + 1800)));
        assert!(!w.is_open(at(fri + DAY + 7200)));
        assert_eq!(w.next_open(at(MON)), at(fri + 23 * 3600));
        assert_eq!(
            w.next_open(at(fri + DAY + 1800)),
            at(fri + 7 * DAY + 23 * 3600)
        );
        // Daily 02:00 for 1 h at +05:00 is 21:00 UTC the day before.
        let e = Window {
            days: [true; 7],
            start: 120,
            length: Duration::from_secs(3600),
            zone: Zone::Fixed(5 * 3600),
        };
        assert!(e.is_open(at(MON - 3 * 3600 + 60)));
        assert!(!e.is_open(at(MON)));
        assert_eq!(e.next_open(at(MON)), at(MON + 21 * 3600));
        assert_eq!(e.describe(), "daily 02:00+60m (+05:00)");
    }
}
