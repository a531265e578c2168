//! Customize stage: turn the installed root into this manifest's host:
//! scrub build-host leftovers and per-machine secrets, hostname and hosts,
//! fstab, overlays, users with their SSH keys, and unit presets.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Env, Outcome};
use crate::fsutil;
use crate::manifest::Manifest;
use common::cmd::Cmd;

/// tmpfiles.d snippet that creates users' homes and SSH keys under /var.
pub const USERS_TMPFILES: &str = "usr/lib/tmpfiles.d/atomicbuild-users.conf";

/// The customized root and what was learned from it.
pub struct Customized {
    /// Installed packages.
    pub packages: Vec<crate::model::Package>,
}

impl Outcome for Customized {}

/// Apply the manifest to the staging root.
pub fn run(env: &Env, m: &Manifest) -> Result<Customized> {
    let root = env.root();
    let stage = env.progress.stage("customize");
    if !fsutil::mounts_under(&root)?.is_empty() {
        bail!(
            "something is still mounted below {}; refusing to modify it",
            root.display()
        );
    }
    // Tools run in the root below (useradd's backups, lastlog) write into
    // existing files; in the hard-linked checkout those are the cache's
    // objects. Give /etc and /var private copies first.
    stage.message("unsharing /etc and /var from the cache");
    for d in ["etc", "var"] {
        fsutil::unshare_tree(&root.join(d))?;
    }
    stage.message("cleaning build-host leftovers");
    scrub(&root)?;
    identity(&root, &m.hostname)?;
    for o in &m.overlays {
        stage.message(&format!("overlay {}", o.display()));
        fsutil::copy_tree(o, &root).with_context(|| format!("applying overlay {}", o.display()))?;
    }
    crate::failpoint::hit("customize.overlays-applied");
    users(env, m, &root, &|msg| stage.message(msg))?;
    stage.message("first-boot agent");
    super::agent::install(&root, m.updates.as_ref())?;
    let node = super::node::wire(&root, &m.overlays, &|msg| stage.message(msg))?;
    let locate = |i: usize, field: &str, msg: String| {
        let f = format!("container_images[{i}].{field}");
        anyhow::Error::new(crate::manifest::problem_at(&m.path, &f, msg))
    };
    let (preloaded, bytes) =
        crate::containers::preload(&root, &m.container_images, &locate, &|msg| {
            stage.message(msg)
        })?;
    crate::containers::registries::install(&root, &m.registries, &|msg| stage.message(msg))?;
    units(m, &root, &node, &|msg| stage.message(msg))?;
    let packages = crate::distro::package_list(&root)?;
    let images = match preloaded.len() {
        0 => String::new(),
        n => format!(", {n} container images ({})", crate::budgets::mib(bytes)),
    };
    stage.finish(&format!("{} packages{images}", packages.len()));
    Ok(Customized { packages })
}

/// Remove what belongs to the build host, and per-machine identity, which
/// must be created on first boot, never shipped.
fn scrub(root: &Path) -> Result<()> {
    for d in super::install::BUILD_HOST_DIRS {
        fsutil::empty_dir(&root.join(d))?;
    }
    fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )?;
    for top in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        let p = root.join(top);
        if fs::symlink_metadata(&p).is_ok() {
            fs::remove_file(&p)?;
        }
    }
    for e in fs::read_dir(root.join("etc/ssh")).into_iter().flatten() {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(e.path())?;
        }
    }
    fsutil::replace_file(&root.join("etc/machine-id"), b"")?;
    let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
    fsutil::replace_file(&root.join("etc/resolv.conf"), b"")
}

/// Hostname, hosts and fstab.
fn identity(root: &Path, hostname: &str) -> Result<()> {
    fsutil::replace_file(&root.join("etc/hostname"), format!("{hostname}\n"))?;
    let short = hostname.split('.').next().unwrap_or(hostname);
    fsutil::replace_file(
        &root.join("etc/hosts"),
        format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname} {short}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        ),
    )?;
    fsutil::replace_file(
        &root.join("etc/fstab"),
        "# Written by atomicbuild. The root is mounted by ostree-prepare-root.\nLABEL=boot /boot ext4 defaults,nodev,nosuid 0 2\n",
    )
}

/// The manifest's users, their homes and SSH keys (under /var, made by
/// tmpfiles.d on boot).
fn users(env: &Env, m: &Manifest, root: &Path, say: &dyn Fn(&str)) -> Result<()> {
    let mut tmpfiles = String::from("# Written by atomicbuild: users' homes and SSH keys.\n");
    for u in &m.users {
        say(&format!("user {}", u.name));
        let mut c = Cmd::new("chroot")
            .arg(root)
            .args(["useradd", "--no-create-home", "--user-group"])
            .args(["--home-dir", &format!("/home/{}", u.name)])
            .args(["--shell", &u.shell]);
        if !u.groups.is_empty() {
            c = c.args(["--groups", &u.groups.join(",")]);
        }
        c.arg(&u.name).run().with_context(|| {
            format!(
                "creating user {} (are its groups installed in the image?)",
                u.name
            )
        })?;
        if let Some(h) = &u.password_hash {
            Cmd::new("chroot")
                .arg(root)
                .args(["usermod", "--password", h, &u.name])
                .env("SOURCE_DATE_EPOCH", env.epoch.to_string())
                .run()
                .with_context(|| format!("setting the password of {}", u.name))?;
        }
        let (uid, gid) = lookup_ids(root, &u.name)?;
        let home = format!("/var/home/{}", u.name);
        tmpfiles.push_str(&format!("d {home} 0700 {uid} {gid} -\n"));
        if !u.ssh_authorized_keys.is_empty() {
            let mut keys = u.ssh_authorized_keys.join("\\n");
            keys.push_str("\\n");
            tmpfiles.push_str(&format!("d {home}/.ssh 0700 {uid} {gid} -\n"));
            tmpfiles.push_str(&format!(
                "f {home}/.ssh/authorized_keys 0600 {uid} {gid} - {keys}\n"
            ));
        }
    }
    let tf = root.join(USERS_TMPFILES);
    fs::create_dir_all(tf.parent().expect("has parent"))?;
    fsutil::replace_file(&tf, tmpfiles)
}

/// The agent's units, the node's and the manifest's `[units]` (which
/// come last, so that they win), through systemctl.
fn units(m: &Manifest, root: &Path, node: &super::node::Units, say: &dyn Fn(&str)) -> Result<()> {
    let mut enable: Vec<String> = super::agent::UNITS.iter().map(|u| u.to_string()).collect();
    enable.extend(
        node.enable
            .iter()
            .filter(|u| !m.units.disable.contains(u))
            .cloned(),
    );
    enable.extend(m.units.enable.iter().cloned());
    let mut mask = node.mask.clone();
    mask.extend(m.units.mask.iter().cloned());
    for (verb, units) in [
        ("enable", &enable),
        ("disable", &m.units.disable),
        ("mask", &mask),
    ] {
        if units.is_empty() {
            continue;
        }
        say(&format!("systemctl {verb}"));
        Cmd::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .arg(verb)
            .args(units)
            .run()
            .with_context(|| {
                format!(
                    "systemctl {verb} {} (is the unit installed in the image?)",
                    units.join(" ")
                )
            })?;
    }
    Ok(())
}

/// uid and gid of `name` from the root's /etc/passwd.
pub fn lookup_ids(root: &Path, name: &str) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string(root.join("etc/passwd"))?;
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("user {name} is not in {}/etc/passwd", root.display())
}
