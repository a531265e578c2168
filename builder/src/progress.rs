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
