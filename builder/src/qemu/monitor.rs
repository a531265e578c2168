//! Watching a running VM: QEMU's machine protocol (QMP) on a Unix socket,
//! polled for the run state, so that a guest that stopped — a KVM internal
//! error, a kernel panic reported through the pvpanic device, an I/O error —
//! ends the wait with an error at once instead of at a timeout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A QMP connection.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connect to `socket` and leave capabilities negotiation mode.
    pub fn connect(socket: &Path) -> Result<Qmp> {
        let s = UnixStream::connect(socket)
            .with_context(|| format!("connecting to QMP at {}", socket.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut q = Qmp {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        };
        let greeting = q.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("QEMU did not greet with QMP: {greeting}");
        }
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn read_message(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QEMU closed the QMP connection");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    /// Run a command and return its `return` value (events are skipped).
    pub fn execute(&mut self, command: &str) -> Result<serde_json::Value> {
        writeln!(self.writer, "{{\"execute\":\"{command}\"}}")?;
        loop {
            let m = self.read_message()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                bail!("QMP {command}: {e}");
            }
        }
    }

    /// The VM's run state (`running`, `paused`, `internal-error`, ...).
    pub fn status(&mut self) -> Result<String> {
        let r = self.execute("query-status")?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_string())
    }
}

/// What a stopped guest's run state means, for the states that never
/// resume by themselves; `None` for every other state.
pub fn stopped_reason(status: &str) -> Option<&'static str> {
    Some(match status {
        "internal-error" => "QEMU reports an internal error: the accelerator could not run the guest's code (with KVM: set ATOMICBUILD_ACCEL=tcg)",
        "guest-panicked" => "the guest kernel panicked (reported through the pvpanic device; see the console)",
        "io-error" => "the guest stopped on a disk I/O error (is the disk image's file system full?)",
        "shutdown" => "the guest shut down and QEMU is holding it",
        _ => return None,
    })
}

/// A started VM: the QEMU process and its monitor.
pub struct Running {
    child: Child,
    qmp_socket: PathBuf,
    qmp: Option<Qmp>,
    started: Instant,
}

/// How long QEMU may take to open its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(30);

impl Running {
    /// Watch `child`, whose QMP server listens on `qmp_socket`.
    pub fn new(child: Child, qmp_socket: PathBuf) -> Running {
        Running {
            child,
            qmp_socket,
            qmp: None,
            started: Instant::now(),
        }
    }

    /// The QEMU process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Ok(Some(status))` when QEMU has exited, `Ok(None)` while the guest
    /// runs (or is paused by a user), an error when the guest stopped for
    /// good (QEMU is then terminated).
    pub fn check(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(Some(st));
        }
        if self.qmp.is_none() {
            match Qmp::connect(&self.qmp_socket) {
                Ok(q) => self.qmp = Some(q),
                Err(e) if self.started.elapsed() > QMP_WAIT => {
                    self.stop();
                    return Err(e.context("QEMU's monitor never answered"));
                }
                Err(_) => return Ok(None),
            }
        }
        let status = match self.qmp.as_mut().map(Qmp::status) {
            Some(Ok(s)) => s,
            // QEMU is exiting (closed the socket): the next check sees it.
            Some(Err(_)) | None => {
                self.qmp = None;
                return Ok(self.child.try_wait()?);
            }
        };
        if let Some(reason) = stopped_reason(&status) {
            self.stop();
            bail!("the guest stopped ({status}): {reason}");
        }
        Ok(None)
    }

    /// Wait until QEMU exits (its status) or the guest stops (an error),
    /// checking every `interval`.
    pub fn wait(&mut self, interval: Duration) -> Result<ExitStatus> {
        loop {
            if let Some(st) = self.check()? {
                return Ok(st);
            }
            std::thread::sleep(interval);
        }
    }

    /// Terminate QEMU: SIGTERM first (it restores the terminal it put in
    /// raw mode), SIGKILL after 5 s.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_reasons() {
        assert!(stopped_reason("internal-error")
            .unwrap()
            .contains("ATOMICBUILD_ACCEL=tcg"));
        assert!(stopped_reason("guest-panicked")
            .unwrap()
            .contains("panicked"));
        assert!(stopped_reason("running").is_none());
        assert!(stopped_reason("paused").is_none());
    }
}
