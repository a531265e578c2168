//! Update strategies: when a staged update may reboot a host. The builder
//! checks `[updates] strategy` with the same parser the agent uses.

/// When a staged update may reboot the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    /// Only inside `[window]`.
    pub window: bool,
    /// Only holding a slot of `[lock]`'s group.
    pub lock: bool,
}

impl Strategy {
    /// Parse `immediate`, `window`, `etcd-lock` or `window+etcd-lock`.
    pub fn parse(s: &str) -> Result<Strategy, String> {
        let mut st = Strategy {
            window: false,
            lock: false,
        };
        if s == "immediate" {
            return Ok(st);
        }
        for part in s.split('+') {
            match part {
                "window" if !st.window => st.window = true,
                "etcd-lock" if !st.lock => st.lock = true,
                _ => {
                    return Err(format!(
                        "{s:?} is not a strategy (immediate, window, etcd-lock, window+etcd-lock)"
                    ))
                }
            }
        }
        Ok(st)
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match (self.window, self.lock) {
            (false, false) => "immediate",
            (true, false) => "window",
            (false, true) => "etcd-lock",
            (true, true) => "window+etcd-lock",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_and_print_back() {
        for s in ["immediate", "window", "etcd-lock", "window+etcd-lock"] {
            assert_eq!(Strategy::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Strategy::parse("etcd-lock+window").unwrap().to_string(),
            "window+etcd-lock"
        );
        for bad in ["", "now", "window+window", "immediate+window"] {
            assert!(Strategy::parse(bad).is_err(), "{bad}");
        }
    }
}
