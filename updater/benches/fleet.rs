//! How long a fleet takes to update through the reboot semaphore: many
//! agents (threads, each with the agent's own coordinator and settings
//! parser) against one real etcd, every host with an update staged at the
//! start. A "reboot" holds the slot for the boot time plus the health
//! checks, as a real host does; time runs SCALE times faster than real.
//! Prints figures; asserts nothing about speed.
//!
//! cargo bench -p updater --bench fleet [-- HOSTS SLOTS BOOT_S CHECK_S POLL_S]
//! (defaults: 50 hosts, 2 slots, 180 s boots as under TCG, 30 s of checks,
//! a 10 s poll interval)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Simulated seconds per real second.
const SCALE: f64 = 60.0;

fn real(sim_secs: f64) -> Duration {
    Duration::from_secs_f64(sim_secs / SCALE)
}

fn main() {
    let a: Vec<f64> = std::env::args()
        .skip(1)
        .filter(|x| !x.starts_with('-'))
        .filter_map(|x| x.parse().ok())
        .collect();
    let arg = |i: usize, d: f64| a.get(i).copied().unwrap_or(d);
    let (hosts, slots) = (arg(0, 50.0) as usize, arg(1, 2.0) as u32);
    let (boot, check, poll) = (arg(2, 180.0), arg(3, 30.0), arg(4, 10.0));

    let tmp = tempfile::tempdir().unwrap();
    let pki = testkit::Pki::new(&tmp.path().join("pki"));
    let etcd = testkit::etcd_cluster(&pki, &tmp.path().join("etcd"), &["sim"]);
    let port = etcd[0].client_port;
    let settings = |host: &str| {
        let d = tmp.path().join(format!("settings-{host}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("50-sim.toml"),
            format!(
                "remote = \"atomic\"\nref = \"sim\"\nstrategy = \"etcd-lock\"\n[lock]\ngroup = \"sim\"\nslots = {slots}\nttl = 60\nhost = \"{host}\"\nendpoints = [\"https://127.0.0.1:{port}\"]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
                pki.path("ca.crt"),
                pki.path("client.crt"),
                pki.path("client.key")
            ),
        )
        .unwrap();
        updater::settings::load(&[d]).unwrap().unwrap()
    };
    let waits = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let done: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..hosts)
            .map(|i| {
                let st = settings(&format!("host-{i:02}"));
                let waits = waits.clone();
                s.spawn(move || {
                    let coord = updater::coord::Coordinator::new(&st).unwrap();
                    loop {
                        match coord.may_reboot(&st, "2").unwrap() {
                            None => {
                                std::thread::sleep(real(boot + check));
                                coord.release("updated").unwrap();
                                return start.elapsed();
                            }
                            Some(_) => {
                                waits.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(real(poll));
                            }
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = done.iter().max().copied().unwrap_or_default();
    let (most, takes) = testkit::slot_history(&pki, port, "/atomic-update/reboot/sim/");
    let sim = last.as_secs_f64() * SCALE;
    let ideal = (hosts as f64 / slots as f64).ceil() * (boot + check);
    println!(
        "fleet: {hosts} hosts, {slots} slot(s), {boot:.0} s boot + {check:.0} s checks, polling every {poll:.0} s"
    );
    println!(
        "  updated in {:.0} min simulated ({:.1} s real at 1:{SCALE:.0}); back to back it would be {:.0} min",
        sim / 60.0,
        last.as_secs_f64(),
        ideal / 60.0
    );
    println!(
        "  etcd's history: {takes} slot takes, at most {most} holders at once; {} waits",
        waits.load(Ordering::Relaxed)
    );
}
