//! The `atomic-update` binary as ostree's grub2 backend and a person run it
//! (on this machine, which is not an OSTree host: the commands that need
//! one must say so in one line). Also makes `cargo test --workspace` build
//! the binary the builder installs into images.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atomic-update"))
}

#[test]
fn grub_mkconfig_writes_the_menu_for_the_new_boot_entries() {
    let d = tempfile::tempdir().unwrap();
    let entries = d.path().join("loader.0/entries");
    std::fs::create_dir_all(&entries).unwrap();
    for (n, v) in [("ostree-1-debian.conf", 2), ("ostree-2-debian.conf", 1)] {
        std::fs::write(
            entries.join(n),
            format!("title Debian (ostree:{v})\nversion {v}\nlinux /ostree/d-{v}/vmlinuz\ninitrd /ostree/d-{v}/initramfs.img\noptions root=LABEL=root console=ttyS0 ostree=/ostree/boot.0/d/{v}/0\n"),
        )
        .unwrap();
    }
    let out = d.path().join("loader.0/grub.cfg");
    let o = bin()
        .arg("grub-mkconfig")
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = std::fs::read_to_string(&out).unwrap();
    assert_eq!(cfg.matches("menuentry ").count(), 2, "{cfg}");
    assert!(cfg.find("(ostree:2)").unwrap() < cfg.find("(ostree:1)").unwrap());
    assert!(cfg.contains("console=ttyS0"), "{cfg}");
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "entries" && n != "grub.cfg")
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");

    let missing = d.path().join("loader.1/grub.cfg");
    let o = bin()
        .arg("grub-mkconfig")
        .arg("-o")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.starts_with("atomic-update: ") && err.contains("loader.1"),
        "{err}"
    );
    assert!(!missing.exists());
}

#[test]
fn help_names_every_command_and_host_commands_fail_in_one_line_elsewhere() {
    let o = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for c in [
        "agent", "status", "upgrade", "rollback", "pause", "resume", "settings",
    ] {
        assert!(help.contains(c), "--help lacks {c}:\n{help}");
    }
    for args in [&["status"][..], &["upgrade"], &["rollback"]] {
        let o = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("atomic-update: ") && err.trim_end().lines().count() == 1,
            "{args:?} should fail in one line: {err}"
        );
    }
}
