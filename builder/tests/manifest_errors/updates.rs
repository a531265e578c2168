//! `[updates]`, its window and lock, and `[signing]`.

use super::{after_good as at, good, rejects};

#[test]
fn updates_and_signing_are_checked_with_positions() {
    let t = format!(
        "{}\n[updates]\nurl = \"ftp://example.com/repo\"\nkeys = [\"missing.asc\"]\ntries = 12\nstrategy = \"whenever\"\npoll_interval = \"soon\"\n\n[signing]\nkey_id = \"ABCD1234\"\nkey_file = \"k.asc\"\n",
        good()
    );
    rejects(
        &t,
        &[
            &format!(
                "{} updates.url: \"ftp://example.com/repo\" is not",
                at(3, 1)
            ),
            &format!("{} updates.keys[0]: cannot read", at(4, 9)),
            &format!("{} updates.tries: 12: use 1 to 9", at(5, 1)),
            &format!("{} updates.strategy", at(6, 1)),
            &format!("{} updates.poll_interval", at(7, 1)),
            &format!("{} signing.key_file: give either key_id", at(11, 1)),
        ],
    );
    // No keys at all: updates could never be verified.
    let t = format!(
        "{}\n[updates]\nurl = \"http://x/repo\"\nkeys = []\n",
        good()
    );
    rejects(&t, &["updates.keys: no keys"]);
}

#[test]
fn update_windows_and_locks_are_checked_with_positions() {
    let head = |strategy: &str| {
        format!("{}\n[updates]\nurl = \"http://x/repo\"\nkeys = [\"missing.asc\"]\nstrategy = \"{strategy}\"\n", good())
    };
    let lines = good().lines().count();
    let at = |k: usize| format!("host.toml:{}:", lines + k);
    // Every field wrong, each named with its line.
    let t = format!(
        "{}\n[updates.window]\ndays = [\"sat\", \"caturday\"]\nstart = \"25:00\"\nlength = \"8d\"\ntime_zone = \"../etc/passwd\"\n\n[updates.lock]\ngroup = \"a/b\"\nslots = 0\nttl = \"1s\"\n",
        head("window+etcd-lock")
    );
    rejects(
        &t,
        &[
            &format!("{}1: updates.window.days: \"caturday\" is not a day", at(8)),
            &format!("{}1: updates.window.start: \"25:00\" is not a time", at(9)),
            &format!(
                "{}1: updates.window.length: from 1 minute to 7 days",
                at(10)
            ),
            &format!("{}1: updates.window.time_zone: \"../etc/passwd\"", at(11)),
            &format!("{}1: updates.lock.group: \"a/b\" is not a group", at(14)),
            &format!("{}1: updates.lock.slots: 0: at least 1", at(15)),
            &format!("{}1: updates.lock.ttl: at least 2 seconds", at(16)),
        ],
    );
    // A window strategy without its table; tables the strategy ignores.
    rejects(
        &head("window"),
        &["updates.strategy: \"window\" needs an [updates.window]"],
    );
    let t = format!(
        "{}\n[updates.window]\nstart = \"02:00\"\nlength = \"2h\"\n\n[updates.lock]\nslots = 2\n",
        head("immediate")
    );
    rejects(
        &t,
        &[
            "updates.window: strategy \"immediate\" has no window",
            "updates.lock: strategy \"immediate\" takes no lock",
        ],
    );
}

/// What the builder writes from `[updates.window]` and `[updates.lock]` is
/// what the agent reads (its own settings parser, with the drop-in first
/// boot adds for etcd).
#[test]
fn the_image_settings_of_a_window_and_a_lock_are_what_the_agent_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ov")).unwrap();
    std::fs::write(
        dir.path().join("k.asc"),
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
    )
    .unwrap();
    let mf = dir.path().join("host.toml");
    std::fs::write(
        &mf,
        format!(
            "{}\n[updates]\nurl = \"http://x/repo\"\nkeys = [\"k.asc\"]\nstrategy = \"window+etcd-lock\"\n\n[updates.window]\ndays = [\"sat\", \"Sunday\"]\nstart = \"02:30\"\nlength = \"3h\"\ntime_zone = \"+01:00\"\n\n[updates.lock]\ngroup = \"workers\"\nslots = 2\nttl = \"20m\"\n",
            good()
        ),
    )
    .unwrap();
    let m = atomicbuild::manifest::load(&mf).unwrap();
    let image = dir.path().join("usr");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        image.join("00-image.toml"),
        m.updates.unwrap().settings_toml(),
    )
    .unwrap();
    std::fs::write(
        etc.join("20-etcd.toml"),
        "[lock]\nendpoints = [\"https://127.0.0.1:2379\"]\nmember = \"m1\"\n",
    )
    .unwrap();
    let s = updater::settings::load(&[image, etc]).unwrap().unwrap();
    assert_eq!(s.strategy.to_string(), "window+etcd-lock");
    let w = s.window.expect("a window");
    assert_eq!(w.days, [false, false, false, false, false, true, true]);
    assert_eq!((w.start, w.length.as_secs()), (150, 3 * 3600));
    assert_eq!(w.zone, updater::tz::Zone::Fixed(3600));
    let l = s.lock.expect("a lock");
    assert_eq!(
        (l.group.as_str(), l.slots, l.ttl.as_secs()),
        ("workers", 2, 1200)
    );
    assert_eq!(l.member.as_deref(), Some("m1"));
}

#[test]
fn budgets_are_checked_with_positions() {
    let t = format!(
        "{}\n[budgets]\nraw_allocated = \"lots\"\nboot_time_tcg = \"fast\"\n\n[budgets.outputs]\nvhd = \"1GiB\"\n",
        good()
    );
    let lines = good().lines().count();
    let at = |k: usize| format!("host.toml:{}:", lines + k);
    // The first problem found by the parser stops it (a size that does
    // not parse is a type error); the rest are found together.
    rejects(&t, &[&format!("{}17: budgets.raw_allocated", at(3))]);
    let t = t.replace("\"lots\"", "\"1GiB\"");
    rejects(
        &t,
        &[
            &format!("{}1: budgets.boot_time_tcg", at(4)),
            &format!(
                "{}1: budgets.outputs.vhd: no [[output]] is labelled \"vhd\"",
                at(7)
            ),
        ],
    );
}
