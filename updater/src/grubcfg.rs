//! `grub-mkconfig -o BOOT/loader.N/grub.cfg`, as ostree's grub2 backend runs
//! it when it writes new deployments: the menu for the entries in
//! `BOOT/loader.N/entries`, made by the same code the builder uses, written
//! atomically (ostree then switches `BOOT/loader` to `loader.N`).

use std::path::Path;

use anyhow::{Context, Result};

/// Write the grub.cfg at `output` for the BLS entries beside it.
pub fn mkconfig(output: &Path) -> Result<()> {
    let dir = output
        .parent()
        .context("-o names no directory (expected BOOT/loader.N/grub.cfg)")?;
    let entries = common::bls::read_entries_in(&dir.join("entries"))
        .with_context(|| format!("reading the boot entries for {}", output.display()))?;
    let cfg = common::grub::config_from_entries(&entries)?;
    common::atomic::write(output, cfg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_menu_for_the_new_bootversion() {
        let d = tempfile::tempdir().unwrap();
        let entries = d.path().join("loader.1/entries");
        std::fs::create_dir_all(&entries).unwrap();
        for (n, v) in [("ostree-1-debian.conf", 2), ("ostree-2-debian.conf", 1)] {
            std::fs::write(
                entries.join(n),
                format!("title Debian (ostree:{v})\nversion {v}\nlinux /ostree/d-{v}/vmlinuz\ninitrd /ostree/d-{v}/initramfs.img\noptions root=LABEL=root\n"),
            )
            .unwrap();
        }
        let out = d.path().join("loader.1/grub.cfg");
        mkconfig(&out).unwrap();
        let cfg = std::fs::read_to_string(&out).unwrap();
        let first = cfg.find("(ostree:2)").unwrap();
        assert!(
            first < cfg.find("(ostree:1)").unwrap(),
            "newest first:\n{cfg}"
        );
        assert!(cfg.contains("load_env -f ($root)/grub/grubenv boot_counter"));
        assert!(mkconfig(&d.path().join("loader.2/grub.cfg")).is_err());
    }
}
