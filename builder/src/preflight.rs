//! Preflight: before any work, check every host tool a build (or a boot)
//! needs, and list all missing ones with the Debian package that provides
//! each and why it is needed.

use std::path::Path;

use anyhow::{bail, Result};

use crate::distro::spec::Distro;
use crate::manifest::Manifest;
use common::cmd::which;

/// One requirement on the build host.
struct Need {
    what: &'static str,
    found: bool,
    package: &'static str,
    why: &'static str,
}

fn tool(name: &'static str, package: &'static str, why: &'static str) -> Need {
    Need {
        what: name,
        found: which(name).is_some(),
        package,
        why,
    }
}

fn path(p: &'static str, package: &'static str, why: &'static str) -> Need {
    Need {
        what: p,
        found: Path::new(p).exists(),
        package,
        why,
    }
}

fn report(needs: Vec<Need>) -> Result<()> {
    let missing: Vec<&Need> = needs.iter().filter(|n| !n.found).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = missing.iter().map(|n| n.package).collect();
    pkgs.sort();
    pkgs.dedup();
    let lines: Vec<String> = missing
        .iter()
        .map(|n| format!("  {:<34} package {:<20} {}", n.what, n.package, n.why))
        .collect();
    bail!(
        "this host lacks {} thing{} the build needs:\n{}\ninstall them with:\n  apt-get install --no-install-recommends {}",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        lines.join("\n"),
        pkgs.join(" ")
    )
}

/// What the base's package manager needs.
fn distro_needs(m: &Manifest) -> Vec<Need> {
    let mut v = Vec::new();
    match m.base.distro {
        Distro::Debian => {
            v.push(tool(
                "mmdebstrap",
                "mmdebstrap",
                "installs the Debian packages into the staging root",
            ));
            v.push(path(
                crate::distro::MERGED_USR_HOOKS,
                "mmdebstrap",
                "mmdebstrap's merged-/usr hooks (a root without usrmerge and perl)",
            ));
            v.push(tool(
                "dpkg-query",
                "dpkg",
                "lists installed package versions for the build metadata",
            ));
            if !m.base.apt_repos.is_empty() {
                v.push(tool(
                    "gpg",
                    "gnupg",
                    "checks the fingerprints of the [[base.repos]] keys",
                ));
                v.push(tool(
                    "gpgv",
                    "gpgv",
                    "checks the [[base.repos]] release files' signatures",
                ));
            }
        }
        Distro::Fedora => {
            v.push(tool(
                "dnf",
                "dnf",
                "installs the Fedora packages into the staging root",
            ));
            v.push(tool(
                "rpm",
                "rpm",
                "lists installed package versions for the build metadata",
            ));
            v.push(path(
                "/usr/lib/python3/dist-packages/dnf",
                "python3-dnf",
                "dnf's solver, which resolves the package set and writes the lock",
            ));
        }
    }
    v
}

/// Everything `build` needs for this manifest.
pub fn check_build(m: &Manifest) -> Result<()> {
    let mut needs = vec![
        tool(
            "unshare",
            "util-linux",
            "runs installs and dracut in a private mount namespace",
        ),
        tool(
            "chroot",
            "coreutils",
            "runs dracut, useradd and systemctl inside the new root",
        ),
        tool(
            "mke2fs",
            "e2fsprogs",
            "writes the /boot and root ext4 filesystems into the image",
        ),
        tool(
            "grub-mkimage",
            "grub-common",
            "builds the GRUB EFI and BIOS images",
        ),
        path(
            "/usr/lib/grub/x86_64-efi/linux.mod",
            "grub-efi-amd64-bin",
            "GRUB modules for UEFI boot",
        ),
        path(
            "/usr/lib/grub/i386-pc/boot.img",
            "grub-pc-bin",
            "GRUB modules and boot sector for BIOS boot",
        ),
    ];
    needs.extend(distro_needs(m));
    report(needs)?;
    crate::stage::agent::binary()?;
    crate::stage::agent::update_binary()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("atomicbuild build must run as root: installing packages with their real owners, chroot and dracut need it (try sudo)");
    }
    if let Some(w) = mke2fs_reproducibility_warning() {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// mke2fs before 1.47.1 copies real inode change times into the image.
fn mke2fs_reproducibility_warning() -> Option<String> {
    let (ver, nums) = crate::disk::ext4::mke2fs_version()?;
    if nums.as_slice() < [1, 47, 1].as_slice() {
        Some(format!("mke2fs {ver} does not clamp inode times to SOURCE_DATE_EPOCH; images will build and boot but not be bit-for-bit reproducible (install e2fsprogs >= 1.47.1, e.g. from bookworm-backports; scripts/install-deps does)"))
    } else {
        None
    }
}

/// Everything `boot` needs.
pub fn check_boot(uefi: bool) -> Result<()> {
    let mut needs = vec![tool(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "runs the virtual machine",
    )];
    if uefi {
        needs.push(path(
            crate::qemu::OVMF_CODE,
            "ovmf",
            "UEFI firmware for the virtual machine",
        ));
    }
    report(needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_all_listed_with_packages_and_reasons() {
        let e = report(vec![
            tool(
                "atomicbuild-no-such-tool-1",
                "pkg-one",
                "needed for the first thing",
            ),
            tool("sh", "dash", "present, so not listed"),
            path(
                "/nonexistent/atomicbuild/file",
                "pkg-two",
                "needed for the second thing",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("lacks 2 things"), "{e}");
        assert!(
            e.contains("atomicbuild-no-such-tool-1") && e.contains("needed for the first thing")
        );
        assert!(e.contains("/nonexistent/atomicbuild/file") && e.contains("pkg-two"));
        assert!(!e.contains("dash"), "{e}");
        assert!(
            e.contains("apt-get install --no-install-recommends pkg-one pkg-two"),
            "{e}"
        );
    }

    #[test]
    fn nothing_missing_is_ok() {
        assert!(report(vec![tool("sh", "dash", "shell")]).is_ok());
    }
}
