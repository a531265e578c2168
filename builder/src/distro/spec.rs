//! The manifest's `[base]` table (where packages come from) and the package
//! list's distribution rules: as written, checked, and as the backends take
//! them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::repos::{self, AptRepo, RawRepo, Repo};
use crate::model::Scope;

/// Which distribution family builds the root.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian via mmdebstrap.
    Debian,
    /// Fedora via dnf.
    Fedora,
}

impl Distro {
    /// `debian` or `fedora`.
    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Fedora => "fedora",
        }
    }
}

/// `[base]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawBase {
    pub distro: Distro,
    pub release: String,
    pub mirror: Option<String>,
    pub security_mirror: Option<String>,
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub repos: Vec<RawRepo>,
}

/// Package source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Base {
    /// Distribution family.
    pub distro: Distro,
    /// Release codename (Debian) or number (Fedora).
    pub release: String,
    /// Main archive URL (Debian).
    pub mirror: Option<String>,
    /// Security archive URL (Debian).
    pub security_mirror: Option<String>,
    /// Archive components (Debian).
    pub components: Vec<String>,
    /// RPM repositories (Fedora).
    pub repos: Vec<Repo>,
    /// Extra apt repositories (Debian).
    pub apt_repos: Vec<AptRepo>,
}

impl Base {
    /// The release as a version number where it is a name (Debian's code
    /// names), as cloud images' os_version properties expect it.
    pub fn os_version(&self) -> String {
        let number = match (self.distro, self.release.as_str()) {
            (Distro::Debian, "bullseye") => "11",
            (Distro::Debian, "bookworm") => "12",
            (Distro::Debian, "trixie") => "13",
            (Distro::Debian, "forky") => "14",
            _ => return self.release.clone(),
        };
        number.to_string()
    }
}

pub use super::names::{is_name, is_url};

/// Check `[base]` (problems go to `p`, the `base` scope); defaults filled.
/// Key files are relative to `dir`, the manifest's directory.
pub fn check(b: RawBase, dir: &Path, p: &mut Scope) -> Option<Base> {
    if b.release.trim().is_empty() {
        p.bad(
            "release",
            "release is empty: name the release, e.g. \"bookworm\" or \"41\"",
        );
    }
    for (field, url) in [
        ("mirror", &b.mirror),
        ("security_mirror", &b.security_mirror),
    ] {
        if let Some(u) = url {
            if !is_url(u) {
                p.bad(
                    field,
                    format!("\"{u}\" is not an http://, https:// or file:// URL"),
                );
            }
        }
    }
    Some(match b.distro {
        Distro::Debian => check_debian(b, dir, p),
        Distro::Fedora => check_fedora(b, p),
    })
}

fn check_debian(b: RawBase, dir: &Path, p: &mut Scope) -> Base {
    let mut names = BTreeMap::new();
    let apt_repos = (b.repos.into_iter().enumerate())
        .map(|(i, r)| repos::check_apt(r, i, &mut names, dir, &mut p.scope(&format!("repos[{i}]"))))
        .collect();
    let components = b.components.unwrap_or_else(|| vec!["main".into()]);
    if components.is_empty() {
        p.bad(
            "components",
            "no components listed; Debian needs at least \"main\"",
        );
    }
    for (i, c) in components.iter().enumerate() {
        if c.is_empty() || !c.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            p.bad(
                &format!("components[{i}]"),
                format!("\"{c}\" is not a valid archive component (e.g. main, contrib, non-free-firmware)"),
            );
        }
    }
    Base {
        distro: b.distro,
        release: b.release,
        mirror: Some(
            b.mirror
                .unwrap_or_else(|| "http://deb.debian.org/debian".into()),
        ),
        security_mirror: Some(
            b.security_mirror
                .unwrap_or_else(|| "http://deb.debian.org/debian-security".into()),
        ),
        components,
        repos: Vec::new(),
        apt_repos,
    }
}

fn check_fedora(b: RawBase, p: &mut Scope) -> Base {
    for (field, set) in [
        ("mirror", b.mirror.is_some()),
        ("security_mirror", b.security_mirror.is_some()),
        ("components", b.components.is_some()),
    ] {
        if set {
            p.bad(field, "this key is for Debian bases; a Fedora base lists its repositories as [[base.repos]]");
        }
    }
    if b.repos.is_empty() {
        p.bad(
            "repos",
            "a Fedora base needs at least one [[base.repos]] entry with a baseurl or metalink",
        );
    }
    let mut names = BTreeMap::new();
    let repos = (b.repos.into_iter().enumerate())
        .map(|(i, r)| repos::check_rpm(r, i, &mut names, &mut p.scope(&format!("repos[{i}]"))))
        .collect();
    Base {
        distro: b.distro,
        release: b.release,
        mirror: None,
        security_mirror: None,
        components: Vec::new(),
        repos,
        apt_repos: Vec::new(),
    }
}

/// The packages a base needs for an image to boot (problems go to `p`, the
/// `packages.include` field).
pub fn check_packages(base: &Base, packages: &[String], p: &mut Scope) {
    if base.distro != Distro::Debian || packages.is_empty() {
        return;
    }
    let has = |name: &str| packages.iter().any(|x| x == name);
    if !packages.iter().any(|p| p.starts_with("linux-image-")) {
        p.bad(
            "",
            "no kernel: the Debian backend needs a linux-image-* package (e.g. linux-image-amd64)",
        );
    }
    for (need, why) in [
        ("systemd-sysv", "systemd as init"),
        (
            "ostree-boot",
            "ostree-prepare-root and the dracut module that boot an OSTree deployment",
        ),
        (
            "dracut",
            "the initramfs generator atomicbuild runs once per build",
        ),
    ] {
        if !has(need) {
            p.bad(
                "",
                format!("the Debian backend needs {need} ({why}); add it to the list"),
            );
        }
    }
}
