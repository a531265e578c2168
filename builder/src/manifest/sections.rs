//! Checks of the sections the manifest module owns itself: `[image]`,
//! `[packages]`, `[system]`, `[units]`, `[[users]]`, `[ostree]` and
//! `[firstboot]`. Each reports into the scope of its section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::raw::{
    Platform, RawFirstboot, RawImage, RawKernel, RawOstree, RawPackages, RawSystem, RawUnits,
    RawUser,
};
use super::{Firstboot, OstreeSpec, Units, User};
use crate::distro::spec::is_name;
use crate::model::{Lean, Scope};

/// `[image]`.
pub fn image(i: &RawImage, p: &mut Scope) {
    if !is_name(&i.name) {
        p.bad(
            "name",
            format!("\"{}\" is not a valid image name: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (it becomes part of file names)", i.name),
        );
    }
    let version_ok = !i.version.is_empty()
        && i.version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~-".contains(c));
    if !version_ok {
        p.bad(
            "version",
            format!("\"{}\" is not a valid version: use letters, digits and . _ + ~ - (for example \"1.0.0\")", i.version),
        );
    }
}

fn is_package_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

/// `[packages]` (the base's own rules are the distro module's).
pub fn packages(pk: &RawPackages, p: &mut Scope) {
    if pk.include.is_empty() {
        p.bad(
            "",
            "no packages listed: an image needs at least a kernel, systemd and ostree",
        );
    }
    let mut seen = BTreeMap::new();
    for (i, name) in pk.include.iter().enumerate() {
        let field = format!("[{i}]");
        if !is_package_name(name) {
            p.bad(&field, format!("\"{name}\" is not a valid package name (lowercase letters, digits, + - . and no spaces)"));
        } else if let Some(first) = seen.insert(name.clone(), i) {
            p.bad(&field, format!("package \"{name}\" is listed twice (also packages.include[{first}]); remove one"));
        }
    }
}

/// The lean settings: `[packages] docs, languages, leave_out` and
/// `[kernel]`.
pub fn lean(pk: &RawPackages, k: &RawKernel, p: &mut Scope) -> Lean {
    let d = Lean::default();
    let languages = pk.languages.clone().unwrap_or_default();
    for (i, l) in languages.iter().enumerate() {
        if !is_language(l) {
            p.bad(
                &format!("packages.languages[{i}]"),
                format!(
                    "\"{l}\" is not a language code: use ISO 639 codes such as \"de\" or \"pt_BR\""
                ),
            );
        }
    }
    let leave_out = pk.leave_out.clone().unwrap_or_default();
    for (i, l) in leave_out.iter().enumerate() {
        if let Err(why) = check_left_out_path(l) {
            p.bad(
                &format!("packages.leave_out[{i}]"),
                format!("\"{l}\" {why}"),
            );
        }
    }
    Lean {
        docs: pk.docs.unwrap_or(d.docs),
        languages,
        leave_out,
        modules: k.modules.unwrap_or(d.modules),
        module_compression: k.module_compression.unwrap_or(d.module_compression),
    }
}

/// A path for `leave_out`: absolute, plain (no `.`/`..`/empty parts, no
/// glob characters, which dpkg and rpm read differently), not `/`.
fn check_left_out_path(s: &str) -> Result<(), &'static str> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err("is not an absolute path");
    };
    if rest.is_empty() {
        return Err("would leave out everything");
    }
    if s.contains(['*', '?', '[', ']', ':', '\\']) || s.chars().any(char::is_whitespace) {
        return Err("has glob or separator characters: name plain paths (a directory leaves out all under it)");
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("is not a plain path (empty, . or .. parts, or a trailing /)");
    }
    Ok(())
}

/// `de`, `pt_BR`, `sr@latin`.
fn is_language(s: &str) -> bool {
    let (main, variant) = s.split_once('@').unwrap_or((s, "a"));
    let (lang, country) = main.split_once('_').unwrap_or((main, "AA"));
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && country.len() == 2
        && country.chars().all(|c| c.is_ascii_uppercase())
        && !variant.is_empty()
        && variant.chars().all(|c| c.is_ascii_lowercase())
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `[system]`: (hostname, overlays resolved against `dir`).
pub fn system(
    s: &RawSystem,
    image_name: &str,
    dir: &Path,
    p: &mut Scope,
) -> (String, Vec<PathBuf>) {
    let hostname = s.hostname.clone().unwrap_or_else(|| image_name.to_string());
    if !is_hostname(&hostname) {
        p.bad(
            "hostname",
            format!("\"{hostname}\" is not a valid hostname: use labels of letters, digits and '-', separated by dots, at most 253 characters"),
        );
    }
    let mut overlays = Vec::new();
    for (i, o) in s.overlays.iter().enumerate() {
        let path = dir.join(o);
        if !path.is_dir() {
            p.bad(
                &format!("overlays[{i}]"),
                format!("overlay directory \"{o}\" does not exist (looked for {}); paths are relative to the manifest's directory", path.display()),
            );
        } else {
            overlays.push(path.canonicalize().unwrap_or(path));
        }
    }
    for (i, a) in s.kernel_args.iter().enumerate() {
        let field = format!("kernel_args[{i}]");
        if a.is_empty() || a.chars().any(char::is_whitespace) {
            p.bad(&field, format!("kernel argument \"{a}\" is empty or contains whitespace; write each argument as its own list item"));
        } else if ["root=", "ostree=", "BOOT_IMAGE="]
            .iter()
            .any(|x| a.starts_with(x))
        {
            p.bad(&field, format!("\"{a}\" is set by atomicbuild itself (root, ostree and BOOT_IMAGE arguments come from the disk layout); remove it"));
        } else if a.starts_with("atomic.") {
            p.bad(
                &field,
                format!("\"{a}\" is the first-boot agent's; set it through the [firstboot] table"),
            );
        }
    }
    (hostname, overlays)
}

/// Unit types systemd knows.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "path",
    "swap",
    "slice",
    "scope",
    "device",
];

fn is_unit_name(s: &str) -> bool {
    let Some((stem, ty)) = s.rsplit_once('.') else {
        return false;
    };
    UNIT_TYPES.contains(&ty)
        && !stem.is_empty()
        && s.len() <= 255
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c))
        && stem.matches('@').count() <= 1
}

/// `[units]`.
pub fn units(u: RawUnits, p: &mut Scope) -> Units {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (list, names) in [
        ("enable", &u.enable),
        ("disable", &u.disable),
        ("mask", &u.mask),
    ] {
        for (i, n) in names.iter().enumerate() {
            let field = format!("{list}[{i}]");
            if !is_unit_name(n) {
                p.bad(&field, format!("\"{n}\" is not a systemd unit name: write the full name with its type, like \"etcd.service\" or \"fstrim.timer\""));
            } else if let Some(prev) = seen.insert(n.clone(), format!("units.{field}")) {
                p.bad(&field, format!("unit \"{n}\" already appears at {prev}; a unit can be in only one of enable, disable and mask"));
            }
        }
    }
    Units {
        enable: u.enable,
        disable: u.disable,
        mask: u.mask,
    }
}

fn is_user_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f == '_')
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

/// Accounts every image already has.
const SYSTEM_ACCOUNTS: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "nobody",
    "sshd",
    "etcd",
    "messagebus",
];

/// `[[users]]` (`p` is the `users` list scope).
pub fn users(users: Vec<RawUser>, p: &mut Scope) -> Vec<User> {
    let mut names = BTreeMap::new();
    (users.into_iter().enumerate())
        .map(|(i, u)| user(u, i, &mut names, &mut p.scope(&format!("[{i}]"))))
        .collect()
}

fn user(u: RawUser, i: usize, names: &mut BTreeMap<String, usize>, p: &mut Scope) -> User {
    if !is_user_name(&u.name) {
        p.bad("name", format!("\"{}\" is not a valid user name: start with a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most 32 characters", u.name));
    } else if SYSTEM_ACCOUNTS.contains(&u.name.as_str()) {
        p.bad(
            "name",
            format!(
                "\"{}\" is a system account that already exists in the image; choose another name",
                u.name
            ),
        );
    } else if let Some(first) = names.insert(u.name.clone(), i) {
        p.bad(
            "name",
            format!(
                "user \"{}\" is defined twice (also users[{first}]); merge the two entries",
                u.name
            ),
        );
    }
    for (j, g) in u.groups.iter().enumerate() {
        if !is_user_name(g) {
            p.bad(
                &format!("groups[{j}]"),
                format!("\"{g}\" is not a valid group name"),
            );
        }
    }
    for (j, k) in u.ssh_authorized_keys.iter().enumerate() {
        if let Err(why) = common::sshkey::check(k) {
            p.bad(&format!("ssh_authorized_keys[{j}]"), format!("malformed SSH public key: {why}; paste one line of a .pub file, like \"ssh-ed25519 AAAAC3Nza... you@host\""));
        }
    }
    if let Some(h) = &u.password_hash {
        let ok = h.starts_with('$')
            && h.split('$').count() >= 4
            && !h.contains(char::is_whitespace)
            && !h.contains(':');
        if !ok {
            p.bad("password_hash", "not a crypt(3) hash: write a hash such as the output of `mkpasswd -m yescrypt` or `openssl passwd -6`, never a plain password");
        }
    }
    let shell = u.shell.unwrap_or_else(|| "/bin/bash".into());
    if !shell.starts_with('/') {
        p.bad(
            "shell",
            format!("shell \"{shell}\" must be an absolute path such as /bin/bash"),
        );
    }
    User {
        name: u.name,
        groups: u.groups,
        ssh_authorized_keys: u.ssh_authorized_keys,
        password_hash: u.password_hash,
        shell,
    }
}

/// `[firstboot]`.
pub fn firstboot(f: RawFirstboot, p: &mut Scope) -> Firstboot {
    let platform = f.platform.unwrap_or_default();
    if f.aws_imdsv1.is_some() && platform != Platform::Aws {
        p.bad(
            "aws_imdsv1",
            "only the aws platform has IMDSv1; remove it or set platform = \"aws\"",
        );
    }
    for (k, v) in [
        ("config_label", &f.config_label),
        ("config_path", &f.config_path),
    ] {
        let Some(v) = v else { continue };
        if platform != Platform::File {
            p.bad(
                k,
                "only the file platform reads a config file; remove it or set platform = \"file\"",
            );
        } else if v.is_empty() || v.chars().any(|c| c.is_whitespace()) {
            p.bad(
                k,
                "must be non-empty and without spaces (it becomes a kernel argument)",
            );
        } else if k == "config_path" && !v.starts_with('/') {
            p.bad(k, format!("\"{v}\" is not an absolute path"));
        }
    }
    Firstboot {
        platform,
        aws_imdsv1: f.aws_imdsv1.unwrap_or(false),
        config_label: f.config_label,
        config_path: f.config_path,
    }
}

/// `[ostree]`.
pub fn ostree(o: RawOstree, p: &mut Scope) -> OstreeSpec {
    let ref_ok = !o.ref_.is_empty()
        && !o.ref_.starts_with('/')
        && !o.ref_.ends_with('/')
        && !o.ref_.contains("//")
        && o.ref_
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        && o.ref_.split('/').all(|s| !s.starts_with('.'));
    if !ref_ok {
        p.bad("ref", format!("\"{}\" is not a valid OSTree ref: use path segments of letters, digits, '.', '_' and '-' separated by '/', like \"debian/bookworm/x86_64/k8s-host\"", o.ref_));
    }
    let osname_ok = !o.osname.is_empty()
        && o.osname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if !osname_ok {
        p.bad(
            "osname",
            format!(
                "\"{}\" is not a valid OS name (letters, digits, '_' and '-')",
                o.osname
            ),
        );
    }
    OstreeSpec {
        ref_: o.ref_,
        osname: o.osname,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_need_a_type() {
        assert!(is_unit_name("etcd.service"));
        assert!(is_unit_name("getty@ttyS0.service"));
        assert!(!is_unit_name("etcd"));
        assert!(!is_unit_name("etcd.servic"));
        assert!(!is_unit_name("bad name.service"));
    }
}
