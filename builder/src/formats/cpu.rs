//! CPU time of one output when several are written at once. Every thread
//! working for an output charges its own CPU time (`RUSAGE_THREAD`) to the
//! output's [`Account`] when it ends: the output's thread, the compression
//! workers it starts ([`current`] is handed to them), and the threads that
//! liblzma and libzstd start inside their multithreaded encoders, which are
//! found by the name they inherit from the output's thread
//! ([`charge_foreign_threads`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// CPU microseconds charged to one output.
#[derive(Debug, Default)]
pub struct Account(AtomicU64);

impl Account {
    /// CPU time charged so far.
    pub fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, d: Duration) {
        self.0.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Account>>> = const { RefCell::new(None) };
}

/// The account of the calling thread, to hand to threads it starts.
pub(super) fn current() -> Option<Arc<Account>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Charges the calling thread to `account` until the guard drops; then adds
/// the thread's CPU time since [`enter`]. `None` charges nothing.
pub(super) fn enter(account: Option<Arc<Account>>) -> Guard {
    let start = thread_cpu();
    CURRENT.with(|c| *c.borrow_mut() = account.clone());
    Guard { account, start }
}

/// See [`enter`].
pub(super) struct Guard {
    account: Option<Arc<Account>>,
    start: Duration,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(a) = self.account.take() {
            a.add(thread_cpu().saturating_sub(self.start));
            CURRENT.with(|c| *c.borrow_mut() = None);
        }
    }
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Charges to the calling thread's account the CPU time of the other
/// threads of this process that carry the calling thread's name: threads a
/// C library started from it (names are inherited) and that are still
/// alive, e.g. an xz or zstd encoder's workers after it finished and before
/// it is dropped. Only meaningful when every output thread has its own
/// name and Rust workers charge themselves (they have ended by then).
pub(super) fn charge_foreign_threads() {
    let Some(account) = current() else { return };
    let me = unsafe { libc::gettid() };
    let Ok(my_name) = std::fs::read_to_string(format!("/proc/self/task/{me}/comm")) else {
        return;
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    // Clock ticks per second, for /proc's utime and stime.
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    for t in tasks.flatten() {
        let tid = t.file_name();
        if tid.to_string_lossy() == me.to_string() {
            continue;
        }
        let dir = t.path();
        if std::fs::read_to_string(dir.join("comm")).ok().as_ref() != Some(&my_name) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let total = ticks(11) + ticks(12);
        account.add(Duration::from_micros(total * 1_000_000 / hz));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spends `d` of this thread's CPU time.
    fn burn(d: Duration) {
        let t = thread_cpu();
        let mut x = 1u64;
        while thread_cpu() - t < d {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    #[test]
    fn threads_charge_their_account_and_workers_inherit_it() {
        let a = Arc::new(Account::default());
        let a2 = a.clone();
        std::thread::spawn(move || {
            let _g = enter(Some(a2));
            burn(Duration::from_millis(150));
            let inherited = current();
            std::thread::spawn(move || {
                let _g = enter(inherited);
                burn(Duration::from_millis(150));
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
        let got = a.get();
        assert!(got >= Duration::from_millis(300), "charged {got:?}");
        assert!(current().is_none());
    }
}
