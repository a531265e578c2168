//! Progress reporting: an indicatif spinner per stage on a terminal, plain
//! lines with stage durations otherwise (CI logs, journald).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the stages of one build.
pub struct Progress {
    tty: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Spinners when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Start reporting a stage.
    pub fn stage(&self, name: &str) -> StageProgress {
        let bar = if self.tty {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:<10} {elapsed:>4} {wide_msg}",
                )
                .expect("valid template"),
            );
            b.set_prefix(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            Some(b)
        } else {
            eprintln!("==> {name}");
            None
        };
        StageProgress {
            name: name.to_string(),
            start: Instant::now(),
            bar,
            last_plain: std::cell::Cell::new(Instant::now()),
        }
    }

    /// Print a line without disturbing spinners.
    pub fn println(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// One running stage.
pub struct StageProgress {
    name: String,
    start: Instant,
    bar: Option<ProgressBar>,
    last_plain: std::cell::Cell<Instant>,
}

impl StageProgress {
    /// Show what the stage is doing now. Without a terminal this prints at
    /// most one line every 15 seconds, so CI logs show liveness, not noise.
    pub fn message(&self, msg: &str) {
        let msg = msg.trim();
        if msg.is_empty() {
            return;
        }
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => {
                if self.last_plain.get().elapsed() >= Duration::from_secs(15) {
                    self.last_plain.set(Instant::now());
                    eprintln!(
                        "    {} [{:>5.0}s] {}",
                        self.name,
                        self.start.elapsed().as_secs_f64(),
                        msg
                    );
                }
            }
        }
    }

    /// End the stage; prints its duration and returns it.
    pub fn finish(self, note: &str) -> Duration {
        let d = self.start.elapsed();
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("  ({note})")
        };
        let line = format!("  ✓ {:<10} {:>7.1}s{note}", self.name, d.as_secs_f64());
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        eprintln!("{line}");
        d
    }
}

impl Drop for StageProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A transfer of known size (cloud uploads): a bar with bytes, bytes/s and
/// ETA on a terminal; without one, a line every 10 seconds and one at the
/// end. Shared by upload threads.
pub struct Transfer {
    what: String,
    tty: bool,
    /// Made at the first update, when the total is known.
    bar: std::sync::OnceLock<ProgressBar>,
    start: Instant,
    last_plain: std::sync::Mutex<Instant>,
}

impl Transfer {
    /// Start reporting `what` (the total comes with each `update`).
    pub fn new(what: &str) -> Transfer {
        Transfer {
            what: what.to_string(),
            tty: std::io::stderr().is_terminal(),
            bar: std::sync::OnceLock::new(),
            start: Instant::now(),
            last_plain: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// `done` of `total` bytes are through.
    pub fn update(&self, done: u64, total: u64) {
        if self.tty {
            let b = self.bar.get_or_init(|| {
                let b = ProgressBar::new(total);
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(self.what.clone());
                b
            });
            b.set_length(total);
            b.set_position(done);
            return;
        }
        let mut last = self.last_plain.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(10) && done < total {
            *last = Instant::now();
            eprintln!("    {}", self.line(done, total));
        }
    }

    fn line(&self, done: u64, total: u64) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            format!(", ETA {:.0} s", total.saturating_sub(done) as f64 / rate)
        } else {
            String::new()
        };
        format!(
            "{}: {} / {} MiB, {:.1} MiB/s{eta}",
            self.what,
            done >> 20,
            total >> 20,
            rate / 1048576.0
        )
    }

    /// The transfer is over; returns its duration.
    pub fn finish(&self) -> Duration {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
        self.start.elapsed()
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}

/// A reader that reports what passed through it to a `Transfer`.
pub struct TransferReader<'a, R> {
    /// The data.
    pub inner: R,
    /// Where to report.
    pub transfer: &'a Transfer,
    /// Bytes read so far.
    pub done: u64,
    /// Bytes expected.
    pub total: u64,
}

impl<R: std::io::Read> std::io::Read for TransferReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.transfer.update(self.done, self.total);
        Ok(n)
    }
}
