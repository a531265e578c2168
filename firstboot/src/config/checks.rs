//! Checks on single values (names, keys, paths, modes), each returning what
//! is wrong in words that never quote the value itself.

use std::path::{Component, Path};

use super::raw::RawMode;

/// A hostname: at most 64 characters, dot-separated labels of 1–63 lowercase
/// letters, digits and hyphens, no label starting or ending with a hyphen.
pub fn hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every dot-separated label must be 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("may contain only lowercase letters, digits, '-' and '.'".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("no label may start or end with '-'".into());
        }
    }
    Ok(())
}

/// A user or group name as useradd accepts it by default.
pub fn account_name(s: &str) -> Result<(), String> {
    let ok_first = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let ok_rest = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if s.is_empty() || s.len() > 32 || !ok_first || !ok_rest {
        return Err(
            "must be 1 to 32 characters: a lowercase letter or '_', then lowercase letters, digits, '_' or '-'"
                .into(),
        );
    }
    Ok(())
}

/// `type base64 [comment]`: the workspace's one SSH public key check.
pub fn ssh_key(s: &str) -> Result<(), String> {
    common::sshkey::check(s)
}

/// An absolute, normalized path (no `.`, `..`, `//` or trailing `/`).
pub fn abs_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    if s == "/" || s.ends_with('/') || s.contains("//") || s.contains('\0') {
        return Err("must name a file: no trailing '/', no '//'".into());
    }
    if Path::new(s)
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err("must not contain '.' or '..' components".into());
    }
    Ok(())
}

/// A path the agent may write: absolute, and not on the read-only OSTree
/// parts of the host.
pub fn writable_path(s: &str) -> Result<(), String> {
    abs_path(s)?;
    for ro in ["/usr", "/sysroot", "/boot", "/proc", "/sys"] {
        if s == ro || s.starts_with(&format!("{ro}/")) {
            return Err(format!(
                "{ro} is not writable on this host (OSTree); write under /etc or /var"
            ));
        }
    }
    Ok(())
}

/// A file mode: an integer or an octal string, at most 0o7777.
pub fn mode(m: &RawMode) -> Result<u32, String> {
    let v = match m {
        RawMode::Int(i) => *i,
        RawMode::Str(s) => {
            if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err("must be octal digits such as \"0644\"".into());
            }
            i64::from_str_radix(s, 8).map_err(|_| "must be octal digits".to_string())?
        }
    };
    if !(0..=0o7777).contains(&v) {
        return Err("must be between 0 and 0o7777".into());
    }
    Ok(v as u32)
}

/// `root` or `uid:gid` (numbers).
pub fn owner(s: &str) -> Result<(u32, u32), String> {
    if s == "root" {
        return Ok((0, 0));
    }
    let parse = |x: &str| {
        x.parse::<u32>()
            .ok()
            .filter(|_| x.bytes().all(|b| b.is_ascii_digit()))
    };
    match s.split_once(':') {
        Some((u, g)) => match (parse(u), parse(g)) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err("must be \"root\" or numeric \"uid:gid\" such as \"1000:1000\"".into()),
        },
        None => Err("must be \"root\" or numeric \"uid:gid\" such as \"1000:1000\"".into()),
    }
}

/// 64 hex digits → 32 bytes.
pub fn sha256_hex(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
        return Err("must be 64 hexadecimal digits".into());
    }
    Ok(out)
}

/// A systemd unit name with a known suffix.
pub fn unit_name(s: &str) -> Result<(), String> {
    const SUFFIXES: &[&str] = &[
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".swap",
        ".slice",
    ];
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":_.\\@-".contains(&b));
    let stem_ok = SUFFIXES
        .iter()
        .any(|suf| s.len() > suf.len() && s.ends_with(suf));
    if s.len() > 255 || !ok_chars || !stem_ok {
        return Err(format!(
            "must be a unit name ending in one of {}",
            SUFFIXES.join(" ")
        ));
    }
    Ok(())
}

/// A kubeadm bootstrap token: `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn bootstrap_token(s: &str) -> Result<(), String> {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match s.split_once('.') {
        Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(()),
        _ => Err("must match [a-z0-9]{6}.[a-z0-9]{16}".into()),
    }
}

/// `sha256:<64 hex>` → 32 bytes.
pub fn ca_cert_hash(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or("must be sha256:<64 hex digits> (as kubeadm prints it)")?;
    sha256_hex(&hex.to_ascii_lowercase())
        .map_err(|_| "must be sha256:<64 hex digits> (as kubeadm prints it)".to_string())
}

/// An etcd member name: it goes into `initial-cluster` as `name=url,...`.
pub fn etcd_name(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 63
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("must be 1 to 63 letters, digits, '-', '_' or '.'".into());
    }
    Ok(())
}
