//! Starting and enabling units, behind the [`ServiceManager`] trait.
//!
//! [`Systemd`] is what a host uses. [`Direct`] is for tests and hosts
//! without systemd: it starts `etcd.service` itself, as a child process
//! (`etcd --config-file ROOT/etc/etcd/etcd.conf.yml`, log in
//! `ROOT/var/log/etcd.log`, pid in `ROOT/run/etcd.pid`) that outlives the
//! agent, and only records enabling and starting any other unit in
//! `ROOT/var/lib/atomic-firstboot/direct-units.log`. Run inside a network
//! namespace (`ip netns exec`), the etcd it starts lives there too.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::fsutil::under;

/// Starts, stops and enables units.
pub trait ServiceManager {
    /// Enable `unit` at boot.
    fn enable(&self, unit: &str) -> Result<()>;
    /// Start `unit` and wait until it is started.
    fn start(&self, unit: &str) -> Result<()>;
    /// Queue a start of `unit` without waiting (units ordered after us).
    fn start_no_block(&self, unit: &str) -> Result<()>;
    /// Stop `unit` (no error if it is not running).
    fn stop(&self, unit: &str) -> Result<()>;
    /// Reload unit files.
    fn daemon_reload(&self) -> Result<()>;
}

/// `systemctl`. With a root other than `/`, only enabling is possible
/// (`systemctl --root`); starting needs the running host.
#[derive(Debug)]
pub struct Systemd {
    /// The provisioning root.
    pub root: PathBuf,
}

impl Systemd {
    fn live(&self) -> bool {
        self.root == Path::new("/")
    }
}

impl ServiceManager for Systemd {
    fn enable(&self, unit: &str) -> Result<()> {
        if self.live() {
            cmd::run(&["systemctl", "enable", unit])?;
        } else {
            let r = format!("--root={}", self.root.display());
            cmd::run(&["systemctl", &r, "enable", unit])?;
        }
        Ok(())
    }
    fn start(&self, unit: &str) -> Result<()> {
        if !self.live() {
            bail!("cannot start {unit} with --root other than / (use --service-manager direct)");
        }
        cmd::run(&["systemctl", "start", unit]).map(drop)
    }
    fn start_no_block(&self, unit: &str) -> Result<()> {
        if !self.live() {
            bail!("cannot start {unit} with --root other than / (use --service-manager direct)");
        }
        cmd::run(&["systemctl", "start", "--no-block", unit]).map(drop)
    }
    fn stop(&self, unit: &str) -> Result<()> {
        if self.live() {
            cmd::run(&["systemctl", "stop", unit])?;
        }
        Ok(())
    }
    fn daemon_reload(&self) -> Result<()> {
        if self.live() {
            cmd::run(&["systemctl", "daemon-reload"])?;
        }
        Ok(())
    }
}

/// Starts etcd as a child process; records everything else.
#[derive(Debug)]
pub struct Direct {
    /// The provisioning root.
    pub root: PathBuf,
}

/// The log of units [`Direct`] was asked to enable or start.
pub const DIRECT_LOG: &str = "/var/lib/atomic-firstboot/direct-units.log";
/// etcd's pid file under [`Direct`].
pub const ETCD_PID: &str = "/run/etcd.pid";

impl Direct {
    fn record(&self, line: &str) -> Result<()> {
        let p = under(&self.root, Path::new(DIRECT_LOG));
        crate::fsutil::ensure_parent(&p)?;
        let mut f = OpenOptions::new().create(true).append(true).open(&p)?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    fn etcd_pid(&self) -> Option<i32> {
        let s = fs::read_to_string(under(&self.root, Path::new(ETCD_PID))).ok()?;
        let pid: i32 = s.trim().parse().ok()?;
        // Reap it if it is our child and has exited (no-op otherwise).
        // SAFETY: waitpid with WNOHANG on a single pid, no status pointer.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        // Alive (not a zombie) and really etcd?
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        (comm == "etcd" && !rest.starts_with('Z')).then_some(pid)
    }

    fn start_etcd(&self) -> Result<()> {
        if let Some(pid) = self.etcd_pid() {
            crate::log(&format!("etcd already running (pid {pid})"));
            return Ok(());
        }
        let conf = under(&self.root, Path::new(super::ETCD_CONFIG_FILE));
        let log = under(&self.root, Path::new("/var/log/etcd.log"));
        crate::fsutil::ensure_parent(&log)?;
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new("etcd")
            .arg("--config-file")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .context("cannot start etcd (is etcd-server installed?)")?;
        let pidfile = under(&self.root, Path::new(ETCD_PID));
        crate::fsutil::ensure_parent(&pidfile)?;
        fs::write(&pidfile, format!("{}\n", child.id()))?;
        // A config etcd refuses makes it exit at once: report that here.
        std::thread::sleep(Duration::from_millis(300));
        if self.etcd_pid().is_none() {
            bail!("etcd exited right after starting; see {}", log.display());
        }
        Ok(())
    }

    fn stop_etcd(&self) -> Result<()> {
        let Some(pid) = self.etcd_pid() else {
            return Ok(());
        };
        // SAFETY: kill(2) on a pid we started and just checked is etcd.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.etcd_pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.etcd_pid().is_some() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = fs::remove_file(under(&self.root, Path::new(ETCD_PID)));
        Ok(())
    }
}

impl ServiceManager for Direct {
    fn enable(&self, unit: &str) -> Result<()> {
        self.record(&format!("enable {unit}"))
    }
    fn start(&self, unit: &str) -> Result<()> {
        self.record(&format!("start {unit}"))?;
        if unit == "etcd.service" {
            self.start_etcd()?;
        }
        Ok(())
    }
    fn start_no_block(&self, unit: &str) -> Result<()> {
        self.start(unit)
    }
    fn stop(&self, unit: &str) -> Result<()> {
        self.record(&format!("stop {unit}"))?;
        if unit == "etcd.service" {
            self.stop_etcd()?;
        }
        Ok(())
    }
    fn daemon_reload(&self) -> Result<()> {
        Ok(())
    }
}
