//! Cache faults with real parts: a cache on a full file system (a small
//! tmpfs mounted for the test) and `atomicbuild cache fsck` on a cache with
//! a flipped byte in a stage entry, an OSTree object (real libostree) and a
//! downloaded package. The same faults inside whole builds are judged in
//! the VM test binary (`qemu_boot`), which has a built image to work on.

use std::path::Path;
use std::process::Command;

use atomicbuild::cache::StageCache;
use testkit::{flip_byte, Tmpfs};

#[test]
fn a_full_cache_fails_naming_it_and_stays_valid() {
    let d = tempfile::tempdir().unwrap();
    let cache_dir = d.path().join("cache");
    let fs = Tmpfs::mount(&cache_dir, "8m");
    let src = d.path().join("image.raw");
    std::fs::write(
        &src,
        (0..16u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let c = StageCache::new(&cache_dir);
    let err = format!(
        "{:#}",
        c.put("disk", "k1", &[("image.raw", &src)]).unwrap_err()
    );
    let stages = cache_dir.join("stages/disk");
    assert!(
        err.contains(&format!(
            "storing the disk cache entry in {}",
            stages.display()
        )) && err.contains("file system is full")
            && err.contains("No space left on device"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&stages)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "a failed put left {left:?}");
    assert!(c.get("disk", "k1").unwrap().is_none());
    let r = atomicbuild::cache::fsck(&cache_dir).unwrap();
    assert!(!r.damaged(), "{r:?}");
    // With space, the same put succeeds and reads back.
    fs.resize("64m");
    c.put("disk", "k1", &[("image.raw", &src)]).unwrap();
    let e = c.get("disk", "k1").unwrap().unwrap();
    assert_eq!(
        std::fs::read(e.join("image.raw")).unwrap(),
        std::fs::read(&src).unwrap()
    );
}

/// A cache with an initramfs entry, an installed root (a commit in the
/// object store, its entry and lock) and two downloaded packages.
fn cache_with_a_root(cache: &Path, scratch: &Path) -> (String, std::path::PathBuf) {
    let tree = scratch.join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::fs::write(tree.join("usr/bin/other"), b"other file\n").unwrap();
    let repo = atomicbuild::objects::open_or_create(&cache.join("repo")).unwrap();
    let commit = atomicbuild::objects::commit_tree(
        &repo,
        &tree,
        None,
        &atomicbuild::objects::CommitSpec {
            ref_: "atomicbuild/install/k",
            subject: "installed root",
            metadata: &[],
            timestamp: 0,
            sepolicy: None,
        },
    )
    .unwrap();
    let debs = cache.join("debs/debian-bookworm");
    std::fs::create_dir_all(&debs).unwrap();
    let mut lock = String::from("version = 1\ndistro = \"debian\"\nrelease = \"bookworm\"\n");
    for (name, body) in [
        ("good", "a good package"),
        ("bad", "a package that will rot"),
    ] {
        let f = debs.join(format!("{name}_1%3a1.0_amd64.deb"));
        std::fs::write(&f, body).unwrap();
        let sum = atomicbuild::fsutil::sha256_file(&f).unwrap();
        lock.push_str(&format!("\n[[package]]\nname = \"{name}\"\nversion = \"1:1.0\"\narch = \"amd64\"\nsha256 = \"{sum}\"\n"));
    }
    let files = scratch.join("entry");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("commit"), &commit).unwrap();
    std::fs::write(files.join("lock.toml"), lock).unwrap();
    std::fs::write(files.join("initramfs.img"), vec![3u8; 100_000]).unwrap();
    let c = StageCache::new(cache);
    c.put(
        "install",
        "k",
        &[
            ("commit", &files.join("commit")),
            ("lock.toml", &files.join("lock.toml")),
        ],
    )
    .unwrap();
    c.put(
        "initramfs",
        "i",
        &[("initramfs.img", &files.join("initramfs.img"))],
    )
    .unwrap();
    (commit, debs)
}

fn fsck_json(cache: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(["cache", "--cache-dir"])
        .arg(cache)
        .args(["fsck", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn cache_fsck_drops_damaged_entries_objects_and_packages() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let (commit, debs) = cache_with_a_root(&cache, d.path());
    let clean = fsck_json(&cache);
    assert_eq!(clean["entries"], 2, "{clean}");
    assert_eq!(clean["packages"], 2, "{clean}");
    assert_eq!(
        clean["entries_dropped"].as_array().unwrap().len(),
        0,
        "{clean}"
    );
    // One flipped byte each: the initramfs, a file object, a package.
    flip_byte(&cache.join("stages/initramfs/i/initramfs.img"), 5000);
    let obj = Command::new("ostree")
        .arg(format!("--repo={}", cache.join("repo").display()))
        .args(["ls", "-C", &commit, "/usr/bin/tool"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&obj.stdout).into_owned();
    let sum = line.split_whitespace().nth(4).unwrap().to_string();
    flip_byte(
        &cache.join(format!("repo/objects/{}/{}.file", &sum[..2], &sum[2..])),
        3,
    );
    flip_byte(&debs.join("bad_1%3a1.0_amd64.deb"), 2);
    let r = fsck_json(&cache);
    let dropped: Vec<&str> = r["entries_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        dropped.len() == 2
            && dropped[0].starts_with("initramfs/i: initramfs.img does not match its checksum")
            && dropped[1].starts_with("install/k: its root's commit is damaged"),
        "{r}"
    );
    assert_eq!(r["objects_deleted"], 1, "{r}");
    assert_eq!(r["commits_dropped"], serde_json::json!([commit]), "{r}");
    assert_eq!(
        r["packages_dropped"],
        serde_json::json!(["bad_1%3a1.0_amd64.deb"]),
        "{r}"
    );
    assert!(debs.join("good_1%3a1.0_amd64.deb").is_file());
    // What is left is sound, and the object store says so too.
    let again = fsck_json(&cache);
    assert_eq!(again["entries"], 0, "{again}");
    assert_eq!(again["objects_deleted"], 0, "{again}");
    assert_eq!(again["commits_dropped"], serde_json::json!([]), "{again}");
    let st = Command::new("ostree")
        .arg(format!("--repo={}", cache.join("repo").display()))
        .args(["fsck", "--quiet"])
        .status()
        .unwrap();
    assert!(st.success(), "ostree fsck still finds damage");
}

#[test]
fn a_checkout_from_a_cache_on_another_file_system_has_the_objects_mtimes() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let _fs = Tmpfs::mount(&cache, "64m");
    let (commit, _) = cache_with_a_root(&cache, d.path());
    let repo = atomicbuild::objects::open_or_create(&cache.join("repo")).unwrap();
    let dest = d.path().join("checkout");
    atomicbuild::objects::checkout_linked(&repo, &commit, &dest).unwrap();
    // Copies (the links a same-file-system checkout makes have mtime 0).
    let md = std::fs::symlink_metadata(dest.join("usr/bin/tool")).unwrap();
    assert_eq!(md.nlink(), 1, "a cross-file-system checkout copies");
    assert_eq!(md.mtime(), 0, "the copy should have its object's mtime");
}
