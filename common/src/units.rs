//! Durations as people write them in settings and manifests.

/// `30s`, `15m`, `2h`, `1d` or plain seconds.
pub fn parse_duration(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let bad = || format!("{t:?} is not a duration such as \"30s\", \"15m\", \"2h\" or \"1d\"");
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("30"), Ok(30));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }
}
