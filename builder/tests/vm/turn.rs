//! Tests that build or boot take turns: one work directory, two cores.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// One build or boot at a time.
pub fn turn() -> Turn {
    static TURN: Mutex<()> = Mutex::new(());
    let guard = TURN.lock().unwrap_or_else(|e| e.into_inner());
    Turn {
        _guard: guard,
        since: Instant::now(),
    }
}

/// A test's turn; when it ends, how long the test held the machine goes
/// to this process's stderr itself (not libtest's captured output), so a
/// CI log shows where the binary's time went.
pub struct Turn {
    _guard: MutexGuard<'static, ()>,
    since: Instant,
}

impl Drop for Turn {
    fn drop(&mut self) {
        use std::io::Write;
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let _ = writeln!(
            std::io::stderr(),
            "[turn] {name}: {:.0}s",
            self.since.elapsed().as_secs_f64()
        );
    }
}
