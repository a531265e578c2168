//! Fleet reboots through etcd, against a real 3-member etcd cluster with
//! TLS on 127.0.0.1: agents (the agent's coordination code, one process
//! each: this test binary started again with `--fleet-agent`) contend for
//! one reboot slot;
//! etcd's watch history must never show two holders. A holder killed
//! (SIGKILL) frees its slot after the lease's TTL. With a member stopped,
//! a member's agent takes no slot and says why (quorum guard). Outside its
//! maintenance window an agent waits and says until when. A stuck holder
//! is listed by `atomic-update slots` and freed by `release-slot`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::{etcd_cluster, etcdctl, EtcdMember, Pki};

const GROUP: &str = "fleet-test";
const PREFIX: &str = "/atomic-update/reboot/fleet-test/slot/";

/// The agent's reboot coordination in a loop: read the update settings
/// from a drop-in directory (the real parser), then until a deadline ask
/// the coordinator whether "version 2" may reboot (window, quorum guard,
/// slot); when it may, "reboot" (sleep `hold`), release the slot, start
/// over. Every step is a line on stdout: `TAKEN host`, `RELEASED host`,
/// `WAIT host reason`, `ERROR host reason`.
fn agent_main(dir: &str, secs: &str, hold_ms: &str) {
    let until = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let hold = Duration::from_millis(hold_ms.parse().unwrap());
    let settings = updater::settings::load(&[PathBuf::from(dir)])
        .unwrap_or_else(|e| panic!("{e:#}"))
        .expect("no settings");
    let coord = updater::coord::Coordinator::new(&settings).unwrap_or_else(|e| panic!("{e:#}"));
    let me = coord.semaphore().map(|s| s.me.clone()).unwrap_or_default();
    while Instant::now() < until {
        match coord.may_reboot(&settings, "2") {
            Ok(None) => {
                println!("TAKEN {me}");
                std::thread::sleep(hold);
                match coord.release("the test's reboot is over") {
                    Ok(()) => println!("RELEASED {me}"),
                    Err(e) => println!("ERROR {me} releasing: {e:#}"),
                }
            }
            Ok(Some(why)) => println!("WAIT {me} {why}"),
            Err(e) => println!("ERROR {me} {e:#}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--fleet-agent") {
        return agent_main(&a[2], &a[3], &a[4]);
    }
    // `cargo test -- --list` and filters: this binary is one test.
    if a.iter().any(|x| x == "--list") {
        println!("fleet: test");
        return;
    }
    one_slot_one_holder_dead_holders_expire_the_quorum_guard_and_windows_hold();
    println!("test fleet ... ok");
}

/// One agent process and what it printed.
struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Agent {
    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// Its last lines, for failure messages.
    fn tail(&self) -> String {
        let l = self.lines();
        l[l.len().saturating_sub(6)..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn said(&self, what: &str) -> bool {
        self.lines().iter().any(|(_, l)| l.contains(what))
    }

    /// Wait (at most `limit`) for it to finish on its own.
    fn finish(&mut self, limit: Duration) {
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < limit,
                "an agent did not finish: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Fleet {
    dir: PathBuf,
    pki: Pki,
    members: Vec<EtcdMember>,
}

impl Fleet {
    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("\"https://127.0.0.1:{}\"", m.client_port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Start agent `host` (etcd member `member`, if any) with `extra`
    /// settings, for `secs`, holding a slot `hold_ms` per "reboot".
    fn agent(
        &self,
        host: &str,
        member: Option<&str>,
        ttl: u64,
        extra: &str,
        secs: u64,
        hold_ms: u64,
    ) -> Agent {
        let d = self.settings(host, member, ttl, extra);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--fleet-agent")
            .arg(&d)
            .args([secs.to_string(), hold_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), l));
            }
        });
        Agent { child, lines }
    }

    /// A settings directory for `host`, as the agent reads it.
    fn settings(&self, host: &str, member: Option<&str>, ttl: u64, extra: &str) -> PathBuf {
        let d = self.dir.join(format!("settings-{host}"));
        std::fs::create_dir_all(&d).unwrap();
        let member = member
            .map(|m| format!("member = \"{m}\"\n"))
            .unwrap_or_default();
        let strategy = if extra.contains("[window]") {
            "window+etcd-lock"
        } else {
            "etcd-lock"
        };
        std::fs::write(
            d.join("50-test.toml"),
            format!(
                "remote = \"atomic\"\nref = \"test\"\nstrategy = \"{strategy}\"\n{extra}\n[lock]\ngroup = \"{GROUP}\"\nslots = 1\nttl = {ttl}\nhost = \"{host}\"\n{member}endpoints = [{}]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
                self.endpoints(),
                self.pki.path("ca.crt"),
                self.pki.path("client.crt"),
                self.pki.path("client.key"),
            ),
        )
        .unwrap();
        d
    }

    fn holders(&self) -> Vec<String> {
        let port = self
            .members
            .iter()
            .find(|m| etcdctl(&self.pki, m.client_port, &["endpoint", "health"]).is_ok())
            .unwrap()
            .client_port;
        etcdctl(
            &self.pki,
            port,
            &["get", "--prefix", PREFIX, "--print-value-only"],
        )
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["host"].as_str().map(str::to_string))
        .collect()
    }
}

/// `atomic-update --config-dir DIR ARGS`, as an admin runs it; its stdout.
fn atomic_update(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_atomic-update"))
        .arg("--config-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "atomic-update {args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < limit,
            "{what}: not within {}s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

fn fleet(dir: &Path) -> Fleet {
    let pki = Pki::new(&dir.join("pki"));
    let members = etcd_cluster(&pki, &dir.join("etcd"), &["m1", "m2", "m3"]);
    Fleet {
        dir: dir.to_owned(),
        pki,
        members,
    }
}

fn one_slot_one_holder_dead_holders_expire_the_quorum_guard_and_windows_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = fleet(tmp.path());

    // Three members' agents contend for one slot for 8 s.
    let mut agents: Vec<Agent> = ["a", "b", "c"]
        .iter()
        .zip(["m1", "m2", "m3"])
        .map(|(h, m)| f.agent(h, Some(m), 30, "", 8, 150))
        .collect();
    for a in &mut agents {
        a.finish(Duration::from_secs(30));
    }
    for a in &agents {
        assert!(
            a.said("TAKEN"),
            "an agent never got the slot: {:?}",
            a.lines()
        );
        assert!(!a.said("ERROR"), "{}", a.tail());
    }
    drop(agents);
    let (most, takes) = testkit::slot_history(&f.pki, f.members[0].client_port, PREFIX);
    assert!(takes > 0, "no slot was ever taken in etcd's history");
    eprintln!("contention: {takes} takes of 1 slot by 3 agents, at most {most} holder(s) at once");
    assert_eq!(
        most, 1,
        "etcd's history shows {most} holders of one slot at once"
    );

    // A holder that dies keeps its slot only until its lease's TTL (3 s).
    let mut dead = f.agent("dying", None, 3, "", 60, 60_000);
    wait_until(
        "the dying agent takes the slot",
        Duration::from_secs(15),
        || f.holders() == ["dying"],
    );
    let waiting = f.agent("next", None, 3, "", 30, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.said("waits for a reboot slot: held by dying"),
        "{}",
        waiting.tail()
    );
    dead.kill();
    let freed = wait_until(
        "the dead holder's slot frees itself",
        Duration::from_secs(15),
        || waiting.said("TAKEN next"),
    );
    eprintln!(
        "a dead holder blocked its group for {:.1}s after it died (ttl 3 s)",
        freed.as_secs_f64()
    );
    assert!(
        freed >= Duration::from_millis(1500),
        "freed too soon: {freed:?}"
    );
    // "next" takes and frees the slot in a loop; killed, it may hold it.
    // Let its lease run out before a member stops: a leader change renews
    // every lease for a full TTL (etcd's rule), which would hold it longer.
    drop(waiting);
    wait_until(
        "the slot of the killed agent frees itself",
        Duration::from_secs(15),
        || f.holders().is_empty(),
    );

    // With member m3 stopped, m2's agent takes no slot and says why; a
    // host that is no member is not held back.
    f.members[2].kill();
    let guarded = f.agent("b", Some("m2"), 30, "", 5, 100);
    let plain = f.agent("worker", None, 30, "", 5, 100);
    std::thread::sleep(Duration::from_secs(6));
    assert!(!guarded.said("TAKEN"), "{}", guarded.tail());
    assert!(
        guarded.said("not taking a reboot slot while etcd member m3") && guarded.said("quorum"),
        "{}",
        guarded.tail()
    );
    assert!(plain.said("TAKEN worker"), "{}", plain.tail());
    drop((guarded, plain));

    // A window that opens in two hours: the agent waits and says when.
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
        + 120)
        % (24 * 60);
    let window = format!(
        "[window]\nstart = \"{:02}:{:02}\"\nlength = \"30m\"\ntime_zone = \"UTC\"\n",
        later / 60,
        later % 60
    );
    let closed = f.agent("night", None, 30, &window, 2, 100);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!closed.said("TAKEN"), "{}", closed.tail());
    assert!(
        closed.said("waits for the maintenance window daily")
            && closed.said("it may reboot from")
            && closed.said(&format!("{:02}:{:02} UTC", later / 60, later % 60)),
        "{}",
        closed.tail()
    );
    drop(closed);

    // A stuck holder (alive, its lease kept, its "reboot" never ending):
    // `slots` lists it, `release-slot` frees it, the next host takes it.
    let stuck = f.agent("stuck", None, 60, "", 120, 120_000);
    wait_until(
        "the stuck agent takes the slot",
        Duration::from_secs(15),
        || f.holders() == ["stuck"],
    );
    let admin = f.settings("admin", None, 60, "");
    let held = atomic_update(&admin, &["slots"]);
    assert!(held.contains("held by stuck (slot 0, version 2"), "{held}");
    let mut after = f.agent("after", None, 30, "", 4, 200);
    let freed = atomic_update(&admin, &["release-slot", "stuck"]);
    assert!(freed.contains("released stuck (slot 0"), "{freed}");
    wait_until(
        "the next host takes the released slot",
        Duration::from_secs(10),
        || after.said("TAKEN after"),
    );
    // Its slot gone, the stuck agent holds nothing; "after" frees its own
    // each round and stops after 4 s.
    drop(stuck);
    after.finish(Duration::from_secs(15));
    assert!(!after.said("ERROR"), "{}", after.tail());
    let none = atomic_update(&admin, &["slots"]);
    assert!(
        none.contains("none of the 1 slot(s) of group fleet-test is held"),
        "{none}"
    );
    let nothing = atomic_update(&admin, &["release-slot", "stuck"]);
    assert!(nothing.contains("stuck holds no reboot slot"), "{nothing}");
}
