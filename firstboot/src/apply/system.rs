//! Hostname and users: `/etc/hostname` (and the running hostname when
//! provisioning `/`), accounts through `useradd`/`usermod` (with `--prefix`
//! for another root), and SSH keys appended to `~/.ssh/authorized_keys`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::config::User;
use crate::fsutil::{self, under, Attrs};

/// Write `/etc/hostname`; on the live system also set the kernel hostname.
pub fn hostname(name: &str, root: &Path) -> Result<()> {
    let changed = fsutil::write(
        &root.join("etc/hostname"),
        format!("{name}\n").as_bytes(),
        Attrs::root(0o644),
    )?;
    if root == Path::new("/") {
        // SAFETY: a pointer and length of a live byte slice.
        let r = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
        if r != 0 {
            bail!("sethostname: {}", std::io::Error::last_os_error());
        }
    }
    crate::log(&format!(
        "hostname: {name}{}",
        if changed { "" } else { " (already set)" }
    ));
    Ok(())
}

/// Groups `user` needs that do not exist under `root` (checked in preflight).
pub fn missing_groups<'a>(user: &'a User, root: &Path) -> Vec<&'a str> {
    user.groups
        .iter()
        .filter(|g| fsutil::group_members(root, g).is_none())
        .map(String::as_str)
        .collect()
}

fn with_prefix<'a>(root: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![args[0]];
    if root != "/" {
        v.extend(["--prefix", root]);
    }
    v.extend(&args[1..]);
    v
}

/// Create or update one user and install its keys.
pub fn user(u: &User, root: &Path) -> Result<()> {
    let r = root.to_string_lossy();
    let groups = u.groups.join(",");
    if fsutil::lookup_user(root, &u.name).is_none() {
        let mut args = vec![
            "useradd",
            "--create-home",
            "--user-group",
            "--shell",
            "/bin/bash",
        ];
        if !groups.is_empty() {
            args.extend(["--groups", groups.as_str()]);
        }
        args.push(&u.name);
        cmd::run(&with_prefix(&r, &args))?;
        crate::log(&format!("users: created {}", u.name));
    } else {
        let missing: Vec<&str> = u
            .groups
            .iter()
            .filter(|g| {
                !fsutil::group_members(root, g)
                    .unwrap_or_default()
                    .contains(&u.name)
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let m = missing.join(",");
            cmd::run(&with_prefix(
                &r,
                &["usermod", "--append", "--groups", &m, &u.name],
            ))?;
        }
        crate::log(&format!("users: {} exists", u.name));
    }
    if !u.ssh_authorized_keys.is_empty() {
        keys(u, root)?;
    }
    Ok(())
}

/// Append the keys that are not there yet to the user's authorized_keys.
fn keys(u: &User, root: &Path) -> Result<()> {
    let (uid, gid, home) =
        fsutil::lookup_user(root, &u.name).context("the user vanished after useradd")?;
    let ssh = under(root, &home).join(".ssh");
    fs::create_dir_all(&ssh).with_context(|| format!("cannot create {}", ssh.display()))?;
    std::os::unix::fs::chown(&ssh, Some(uid), Some(gid))?;
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700))?;
    let path = ssh.join("authorized_keys");
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    let mut added = 0;
    for k in &u.ssh_authorized_keys {
        if !text.lines().any(|l| l.trim() == k.trim()) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(k.trim());
            text.push('\n');
            added += 1;
        }
    }
    fsutil::write(
        &path,
        text.as_bytes(),
        Attrs {
            mode: 0o600,
            uid,
            gid,
        },
    )?;
    crate::log(&format!("users: {}: {added} key(s) added", u.name));
    Ok(())
}
