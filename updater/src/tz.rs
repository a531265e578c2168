//! Time zones for maintenance windows: `UTC`, a fixed offset (`+01:00`,
//! `-05:30`) or a name from the tz database (`Europe/Berlin`), read from
//! `/usr/share/zoneinfo` (TZif, the 64-bit section). Debian's zone files
//! list every transition to 2037; after the last one its offset holds.

use std::path::Path;

use common::fleet::ZoneSpec;

/// A time zone: the UTC offset at any instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// UTC.
    Utc,
    /// A fixed offset, seconds east of UTC.
    Fixed(i32),
    /// Transitions from the tz database.
    Rules {
        /// The zone's name.
        name: String,
        /// Offset before the first transition.
        initial: i32,
        /// (UTC instant, offset from then on), in time order.
        transitions: Vec<(i64, i32)>,
    },
}

/// Where zone files are.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

impl Zone {
    /// Parse a zone as settings write it, reading tz database names below
    /// `zoneinfo`.
    pub fn parse(s: &str, zoneinfo: &Path) -> Result<Zone, String> {
        let s = match common::fleet::parse_zone(s)? {
            ZoneSpec::Utc => return Ok(Zone::Utc),
            ZoneSpec::Fixed(secs) => return Ok(Zone::Fixed(secs)),
            ZoneSpec::Named(s) => s,
        };
        let s = s.as_str();
        let path = zoneinfo.join(s);
        let data = std::fs::read(&path).map_err(|e| {
            format!(
                "{s:?}: cannot read {} ({e}); use a tz database name, UTC or +HH:MM",
                path.display()
            )
        })?;
        let (initial, transitions) =
            parse_tzif(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Zone::Rules {
            name: s.to_string(),
            initial,
            transitions,
        })
    }

    /// Seconds east of UTC at `utc` (seconds since the epoch).
    pub fn offset_at(&self, utc: i64) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Fixed(o) => *o,
            Zone::Rules {
                initial,
                transitions,
                ..
            } => match transitions.partition_point(|(at, _)| *at <= utc) {
                0 => *initial,
                n => transitions[n - 1].1,
            },
        }
    }

    /// The UTC instant of local time `local` (seconds since the epoch as
    /// if local were UTC); in a gap or a repeated hour, the offset in
    /// force just before decides.
    pub fn to_utc(&self, local: i64) -> i64 {
        let guess = local - i64::from(self.offset_at(local - 86_400));
        local - i64::from(self.offset_at(guess))
    }
}

fn be32(d: &[u8], at: usize) -> Result<u32, String> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "truncated TZif file".to_string())
}

/// (initial offset, transitions) of a TZif file, from its 64-bit section.
fn parse_tzif(d: &[u8]) -> Result<(i32, Vec<(i64, i32)>), String> {
    if d.get(..4) != Some(b"TZif") {
        return Err("not a TZif file".into());
    }
    let counts = |base: usize| -> Result<[usize; 6], String> {
        let mut c = [0usize; 6];
        for (i, v) in c.iter_mut().enumerate() {
            *v = be32(d, base + 20 + 4 * i)? as usize;
        }
        Ok(c)
    };
    let [isut, isstd, leap, time, typ, chars] = counts(0)?;
    let v1_len = time * 5 + typ * 6 + chars + leap * 8 + isstd + isut;
    let base = 44 + v1_len;
    if d.get(4).copied().unwrap_or(0) < b'2' || d.get(base..base + 4) != Some(b"TZif") {
        return Err("no 64-bit section (TZif version 1)".into());
    }
    let [_, _, _, time, typ, _] = counts(base)?;
    let times = base + 44;
    let idx = times + time * 8;
    let types = idx + time;
    let offset_of = |t: usize| -> Result<i32, String> { Ok(be32(d, types + t * 6)? as i32) };
    if typ == 0 {
        return Err("no local time types".into());
    }
    let mut transitions = Vec::with_capacity(time);
    for i in 0..time {
        let at = d
            .get(times + i * 8..times + i * 8 + 8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap()))
            .ok_or("truncated TZif file")?;
        let t = *d.get(idx + i).ok_or("truncated TZif file")? as usize;
        if t >= typ {
            return Err("a transition names an unknown type".into());
        }
        transitions.push((at, offset_of(t)?));
    }
    Ok((offset_of(0)?, transitions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_names() {
        let zi = Path::new(ZONEINFO);
        assert_eq!(Zone::parse("UTC", zi).unwrap(), Zone::Utc);
        assert_eq!(Zone::parse("+01:30", zi).unwrap(), Zone::Fixed(5400));
        assert_eq!(Zone::parse("-05:00", zi).unwrap(), Zone::Fixed(-18000));
        for bad in [
            "+25:00",
            "+1",
            "../etc/passwd",
            "/etc/localtime",
            "Nowhere/City",
        ] {
            assert!(Zone::parse(bad, zi).is_err(), "{bad}");
        }
        let berlin = Zone::parse("Europe/Berlin", zi).unwrap();
        // 2026-01-15 12:00 UTC: CET; 2026-07-15 12:00 UTC: CEST.
        assert_eq!(berlin.offset_at(1_768_478_400), 3600);
        assert_eq!(berlin.offset_at(1_784_116_800), 7200);
        // Local 2026-07-15 14:00 in Berlin is 12:00 UTC.
        assert_eq!(berlin.to_utc(1_784_116_800 + 7200), 1_784_116_800);
    }
}
