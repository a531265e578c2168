//! What the builder (the manifest's `[updates.window]` and `[updates.lock]`)
//! and the update agent (its `[window]` and `[lock]` drop-ins) both check of
//! a maintenance window and a reboot lock: one parser, so that an image is
//! never built with settings its agent refuses.

/// Day names as settings write them, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A lock's lease TTL unless `ttl` says otherwise: 15 minutes.
pub const DEFAULT_TTL_SECS: u64 = 900;

/// `days` as settings write them (`["mon", "Friday"]`; none: every day),
/// Monday first.
pub fn parse_days(days: &[String]) -> Result<[bool; 7], String> {
    if days.is_empty() {
        return Ok([true; 7]);
    }
    let mut set = [false; 7];
    for d in days {
        let l = d.to_ascii_lowercase();
        let i = (0..7)
            .find(|i| l == DAYS[*i] || l == FULL_DAYS[*i])
            .ok_or_else(|| format!("{d:?} is not a day of the week (mon, tue, ... sun)"))?;
        set[i] = true;
    }
    Ok(set)
}

/// `"HH:MM"` as minutes after midnight.
pub fn parse_start(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day (HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&x.len()) && x.chars().all(|c| c.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad());
    }
    match (h.parse::<u32>(), m.parse::<u32>()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// A window's length in seconds: from a minute to a week.
pub fn check_length(secs: u64) -> Result<u64, String> {
    match (60..=7 * 86_400).contains(&secs) {
        true => Ok(secs),
        false => Err("from 1 minute to 7 days".into()),
    }
}

/// A time zone as settings write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneSpec {
    /// `UTC` (or `Z`).
    Utc,
    /// `+HH:MM` / `-HH:MM`: seconds east of UTC.
    Fixed(i32),
    /// A tz database name such as `Europe/Berlin` (its file is the agent's
    /// to read, below /usr/share/zoneinfo).
    Named(String),
}

/// Parse `UTC`, an offset or a tz database name (not its file).
pub fn parse_zone(s: &str) -> Result<ZoneSpec, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(ZoneSpec::Utc);
    }
    if let Some(sign) = s.chars().next().filter(|c| *c == '+' || *c == '-') {
        let (h, m) = s[1..]
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: write offsets as +HH:MM"))?;
        let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if h <= 14 && m < 60 => (h, m),
            _ => return Err(format!("{s:?}: not an offset from -14:00 to +14:00")),
        };
        let secs = h * 3600 + m * 60;
        return Ok(ZoneSpec::Fixed(if sign == '-' { -secs } else { secs }));
    }
    let word = |p: &str| {
        !p.is_empty()
            && p != ".."
            && p != "."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
    };
    if !s.split('/').all(word) {
        return Err(format!(
            "{s:?}: not a time zone (a tz database name such as Europe/Berlin, UTC or +HH:MM)"
        ));
    }
    Ok(ZoneSpec::Named(s.to_string()))
}

/// A lock group: it becomes part of etcd keys.
pub fn check_group(g: &str) -> Result<(), String> {
    let ok = !g.is_empty()
        && g.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{g:?} is not a group name (letters, digits, . _ -)"
        )),
    }
}

/// Slots per group: at least one.
pub fn check_slots(n: i64) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{n}: at least 1")),
    }
}

/// A lease TTL in seconds: at least 2 (and longer than a reboot).
pub fn check_ttl(secs: u64) -> Result<u64, String> {
    match secs >= 2 {
        true => Ok(secs),
        false => Err("at least 2 seconds (and longer than a reboot)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_start_times_parse() {
        assert_eq!(parse_days(&[]).unwrap(), [true; 7]);
        let d = parse_days(&["Mon".into(), "friday".into()]).unwrap();
        assert_eq!(d, [true, false, false, false, true, false, false]);
        assert!(parse_days(&["funday".into()]).is_err());
        assert!(parse_days(&["mo".into()]).is_err());
        assert_eq!(parse_start("02:30").unwrap(), 150);
        for bad in [
            "2", "24:00", "12:60", "1:2:3", "ab:cd", "12:005", "+1:30", "1:5",
        ] {
            assert!(parse_start(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zones_parse_by_syntax() {
        assert_eq!(parse_zone("UTC").unwrap(), ZoneSpec::Utc);
        assert_eq!(parse_zone("+01:30").unwrap(), ZoneSpec::Fixed(5400));
        assert_eq!(parse_zone("-05:00").unwrap(), ZoneSpec::Fixed(-18000));
        assert_eq!(
            parse_zone("America/Argentina/Buenos_Aires").unwrap(),
            ZoneSpec::Named("America/Argentina/Buenos_Aires".into())
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "Europe/../x",
            "+1",
            "+15:00",
            "a b",
        ] {
            assert!(parse_zone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_values_are_bounded() {
        assert!(check_group("workers-1").is_ok());
        assert!(check_group("a/b").is_err());
        assert!(check_group("").is_err());
        assert_eq!(check_slots(2), Ok(2));
        assert!(check_slots(0).is_err());
        assert!(check_slots(-1).is_err());
        assert!(check_ttl(1).is_err());
        assert!(check_length(59).is_err());
        assert!(check_length(7 * 86_400 + 1).is_err());
    }
}
