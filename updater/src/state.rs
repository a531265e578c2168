//! What the agent remembers across boots, under `/var/lib/atomic-update`:
//! the commits found bad (never deployed again until a newer one is
//! published) and whether updates are paused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The state directory.
pub const DIR: &str = "/var/lib/atomic-update";

/// One commit that failed its health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bad {
    /// The commit.
    pub commit: String,
    /// Its version.
    pub version: String,
    /// Why (the check that failed, or "rolled back by GRUB").
    pub reason: String,
}

/// The state file's contents.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    /// Bad commits, oldest first.
    #[serde(default)]
    pub bad: Vec<Bad>,
}

/// The state at `dir`.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// State under `dir` (the default: [`DIR`]).
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("state.toml")
    }

    /// Read it (nothing recorded yet: empty).
    pub fn load(&self) -> Result<State> {
        match std::fs::read_to_string(self.file()) {
            Ok(t) => {
                toml::from_str(&t).with_context(|| format!("reading {}", self.file().display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.file().display())),
        }
    }

    /// Record `bad` (once per commit).
    pub fn mark_bad(&self, bad: Bad) -> Result<()> {
        let mut s = self.load()?;
        if !s.bad.iter().any(|b| b.commit == bad.commit) {
            s.bad.push(bad);
        }
        std::fs::create_dir_all(&self.dir)?;
        let text = toml::to_string(&s).context("writing the state")?;
        common::atomic::write(&self.file(), text.as_bytes())
    }

    /// Whether `commit` is known bad.
    pub fn is_bad(&self, commit: &str) -> Result<bool> {
        Ok(self.load()?.bad.iter().any(|b| b.commit == commit))
    }

    fn paused_flag(&self) -> PathBuf {
        self.dir.join("paused")
    }

    /// Whether updates are paused.
    pub fn paused(&self) -> bool {
        self.paused_flag().exists()
    }

    /// Pause or resume.
    pub fn set_paused(&self, paused: bool) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        match paused {
            true => common::atomic::write(&self.paused_flag(), b"paused\n"),
            false => match std::fs::remove_file(self.paused_flag()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_commits_are_remembered_once_and_pause_toggles() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::new(d.path());
        assert!(!s.is_bad("c3").unwrap());
        let b = Bad {
            commit: "c3".into(),
            version: "3".into(),
            reason: "check failed".into(),
        };
        s.mark_bad(b.clone()).unwrap();
        s.mark_bad(b).unwrap();
        assert!(s.is_bad("c3").unwrap());
        assert_eq!(s.load().unwrap().bad.len(), 1);
        assert!(!s.paused());
        s.set_paused(true).unwrap();
        assert!(s.paused());
        s.set_paused(false).unwrap();
        s.set_paused(false).unwrap();
        assert!(!s.paused());
    }
}
