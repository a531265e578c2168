//! atomic-update against the image's own sysroot without booting it: the
//! root and /boot partitions are copied out of the raw image (debugfs, no
//! mounts of the image), and the agent runs chrooted into the deployment
//! with the physical root at /sysroot, /boot bound and /run/ostree-booted,
//! which is all libostree needs to see a booted deployment. Real libostree,
//! real GPG checks, real `ostree admin finalize-staged`; what a boot adds
//! (GRUB, the counter going down) is the VM scenario's part. A run takes
//! seconds, so the deployment-juggling paths are checked on every run:
//! staging keeps the booted kernel arguments, a rollback that GRUB made is
//! finished with the booted deployment not first in the list, the bad
//! commit is remembered, and `rollback` with nothing to go back to fails
//! clearly.

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cmd::tail;

/// The chrooted run of `atomic-update ARGS` in the deployment.
const ENTER: &str = r#"set -e
phys=$1; boot=$2; dep=$3; shift 3
mount --bind "$boot" "$phys/boot"
mount --bind "$dep" "$dep"
mount --bind "$phys" "$dep/sysroot"
mount --bind "$phys/boot" "$dep/boot"
mount --bind "$phys/ostree/deploy/$(basename "$(dirname "$(dirname "$dep")")")/var" "$dep/var"
mount -t proc proc "$dep/proc"
mount --rbind /dev "$dep/dev"
mount -t sysfs sys "$dep/sys"
mount -t tmpfs tmpfs "$dep/run"
touch "$dep/run/ostree-booted"
if [ -d "$phys.run/ostree" ]; then cp -a "$phys.run/ostree" "$dep/run/"; fi
set +e
chroot "$dep" "$@"
rc=$?
rm -rf "$phys.run"; mkdir -p "$phys.run"
if [ -d "$dep/run/ostree" ]; then cp -a "$dep/run/ostree" "$phys.run/"; fi
exit $rc
"#;

struct Sysroot {
    phys: PathBuf,
    boot: PathBuf,
    dep: PathBuf,
}

impl Sysroot {
    /// Run `args` chrooted in the booted deployment (in a private mount and
    /// PID namespace: the mounts go when it ends); exit code and output.
    fn run(&self, args: &[&str]) -> (i32, String) {
        let o = Command::new("unshare")
            .args([
                "-m",
                "-p",
                "-f",
                "--propagation",
                "private",
                "sh",
                "-c",
                ENTER,
                "enter",
            ])
            .arg(&self.phys)
            .arg(&self.boot)
            .arg(&self.dep)
            .args(args)
            .output()
            .expect("running unshare");
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.code().unwrap_or(-1), text)
    }

    fn agent(&self, args: &[&str]) -> (i32, String) {
        let mut all = vec!["/usr/libexec/atomic-update"];
        all.extend(args);
        self.run(&all)
    }

    /// Write the counter as GRUB's save_env does.
    fn set_counter(&self, counter: u32) {
        let block = common::grub::envblk(&[("boot_counter", &counter.to_string())]).unwrap();
        std::fs::write(self.boot.join(common::grub::GRUBENV), block).unwrap();
    }

    /// The BLS entries' text, newest first as libostree orders them.
    fn entries(&self) -> String {
        let dir = self.boot.join("loader/entries");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names.reverse();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Copy partition `n` of `raw` into `img`, then its files into `dir`.
fn extract(raw: &Path, n: usize, img: &Path, dir: &Path) {
    let o = Command::new("sfdisk")
        .arg("--json")
        .arg(raw)
        .output()
        .unwrap();
    let table: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let part = &table["partitiontable"]["partitions"][n - 1];
    let (start, size) = (
        part["start"].as_u64().unwrap(),
        part["size"].as_u64().unwrap(),
    );
    let st = Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", img.display()))
        .args(["bs=512", "conv=sparse", "status=none"])
        .arg(format!("skip={start}"))
        .arg(format!("count={size}"))
        .status()
        .unwrap();
    assert!(st.success(), "dd of partition {n} failed");
    std::fs::create_dir_all(dir).unwrap();
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dir.display()))
        .arg(img)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "debugfs rdump failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(img).unwrap();
}

/// Copy the root partition of `raw` out into `dir/phys` (no mounts); the
/// physical root and the deployment in it.
pub fn deployment(raw: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let phys = dir.join("phys");
    extract(raw, 4, &dir.join("root.img"), &phys);
    let osdirs = std::fs::read_dir(phys.join("ostree/deploy")).unwrap();
    let os = osdirs
        .flatten()
        .next()
        .expect("no OS in ostree/deploy")
        .path();
    let dep = std::fs::read_dir(os.join("deploy"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("no deployment");
    (phys, dep)
}

fn sysroot(raw: &Path, dir: &Path) -> Sysroot {
    let (phys, dep) = deployment(raw, dir);
    let boot = dir.join("boot");
    extract(raw, 3, &dir.join("boot.img"), &boot);
    Sysroot { phys, boot, dep }
}

/// The scenario against `raw` (version 1) with `repo` served on `port`
/// (holding versions 1 and 2): every failure.
pub fn scenario(raw: &Path, port: u16, dir: &Path) -> Vec<String> {
    // A broken set-up fails this scenario, not the boots after it.
    let ran = std::panic::catch_unwind(|| run(raw, port, dir)).unwrap_or_else(|p| {
        Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default())
    });
    match ran {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("atomic-update in a chroot of the image: {e}")],
    }
}

fn expect(
    what: &str,
    (code, out): (i32, String),
    ok: bool,
    has: &[&str],
) -> Result<String, String> {
    let missing: Vec<&&str> = has.iter().filter(|h| !out.contains(**h)).collect();
    if (code == 0) != ok || !missing.is_empty() {
        return Err(format!(
            "{what}: exit {code}, expected {}{}; output:\n{}",
            if ok { "success" } else { "failure" },
            if missing.is_empty() {
                String::new()
            } else {
                format!(" and {missing:?}")
            },
            tail(&out, 30)
        ));
    }
    Ok(out)
}

fn run(raw: &Path, port: u16, dir: &Path) -> Result<(), String> {
    let s = sysroot(raw, dir);
    // The image's module set, while its deployment is here anyway.
    let drivers = super::platform::check(&s.dep);
    let updates = updates(&s, port);
    match (updates, drivers.is_empty()) {
        (r, true) => r,
        (Ok(()), false) => Err(drivers.join("\n")),
        (Err(e), false) => Err(format!("{e}\n{}", drivers.join("\n"))),
    }
}

fn updates(s: &Sysroot, port: u16) -> Result<(), String> {
    let conf = s.dep.join("etc/atomic-update/config.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("50-test.toml"),
        format!("url = \"http://127.0.0.1:{port}/\"\ntries = 1\n"),
    )
    .unwrap();
    expect(
        "status",
        s.agent(&["status"]),
        true,
        &["booted:   version 1", "default:  version 1"],
    )?;
    expect(
        "upgrade",
        s.agent(&["upgrade"]),
        true,
        &["staged version 2", "the boot counter has 1 try"],
    )?;
    expect(
        "status after upgrade",
        s.agent(&["status"]),
        true,
        &["staged:   version 2"],
    )?;
    expect(
        "finalize-staged",
        s.run(&["ostree", "admin", "finalize-staged"]),
        true,
        &[],
    )?;
    let entries = s.entries();
    let first = entries.split("\ntitle ").next().unwrap_or_default();
    if !(first.contains("version 2")
        && first.contains("console=ttyS0")
        && first.contains("root=LABEL=root"))
    {
        return Err(format!(
            "version 2's boot entry lacks the booted kernel arguments:\n{entries}"
        ));
    }
    let cfg = std::fs::read_to_string(s.boot.join("loader/grub.cfg")).unwrap_or_default();
    if !cfg.contains("boot_counter") || cfg.matches("menuentry").count() != 2 {
        return Err(format!(
            "grub.cfg was not regenerated for two entries:\n{cfg}"
        ));
    }
    // As GRUB leaves it when version 2 used its try and it booted 1.
    s.set_counter(0);
    expect(
        "the agent after GRUB's rollback",
        s.run(&["timeout", "20", "/usr/libexec/atomic-update", "agent"]),
        false,
        &[
            "rolled back: GRUB booted version 1 after version 2 used its tries",
            "version 2 is marked bad",
        ],
    )?;
    expect(
        "status after the rollback",
        s.agent(&["status"]),
        true,
        &["default:  version 1", "bad:      version 2", "rollback: -"],
    )?;
    expect(
        "upgrade to the bad version",
        s.agent(&["upgrade"]),
        true,
        &["version 2", "is marked bad: waiting for a newer one"],
    )?;
    expect(
        "rollback with nothing to roll back to",
        s.agent(&["rollback"]),
        false,
        &["there is no deployment to roll back to"],
    )?;
    Ok(())
}
