//! OCI archives made byte by byte ([`testkit::oci`]: a layer, its config,
//! a manifest, the index), then damaged the ways a bad download or a wrong
//! file would be.

use super::*;
use crate::model::Problems;

use testkit::oci::{self as made, sha256 as sha, Entry};

/// A one-file image; `edit` may change the archive's files (name, bytes)
/// before it is written.
fn archive(path: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> String {
    let mut img = made::image(&[Entry::File("hello", b"hi\n", 0o644)], &["/hello"], "v1");
    edit(&mut img.files);
    img.write(path);
    img.digest
}

fn err(path: &Path) -> String {
    format!("{:#}", oci::check_archive(path).unwrap_err())
}

#[test]
fn a_whole_archive_gives_its_image_digest() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tar");
    let digest = archive(&a, |_| {});
    assert_eq!(oci::check_archive(&a).unwrap(), digest);
}

#[test]
fn damaged_incomplete_and_ambiguous_archives_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tar");
    archive(&a, |f| f[2].1[0] ^= 1);
    assert!(err(&a).contains("the archive is damaged"), "{}", err(&a));
    archive(&a, |f| {
        f.remove(2);
    });
    assert!(
        err(&a).contains("is referred to but not in the archive"),
        "{}",
        err(&a)
    );
    archive(&a, |f| {
        let dup = f[1].1.clone();
        let s = String::from_utf8(dup).unwrap();
        let entry = &s[s.find("[{").unwrap() + 1..s.rfind("}]").unwrap() + 1];
        f[1].1 = s.replace(entry, &format!("{entry},{entry}")).into_bytes();
    });
    assert!(err(&a).contains("index.json names 2 images"), "{}", err(&a));
    archive(&a, |f| {
        f.remove(0);
    });
    assert!(err(&a).contains("no oci-layout file"), "{}", err(&a));
    std::fs::write(&a, b"not a tar at all, just some text that is long enough").unwrap();
    assert!(oci::check_archive(&a).is_err());
}

fn raw(name: &str, archive: &str, sha256: &str, reference: &str) -> RawContainerImage {
    RawContainerImage {
        name: name.into(),
        archive: archive.into(),
        sha256: sha256.into(),
        reference: reference.into(),
    }
}

#[test]
fn entries_are_checked_field_by_field() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.tar"), b"x").unwrap();
    let good = "a".repeat(64);
    let mut p = Problems::new();
    let list = check(
        vec![
            raw("pause", "a.tar", &good, "registry.k8s.io/pause:3.10.1"),
            raw("Bad Name", "missing.tar", "ABC", "bb@sha256:00"),
            raw("pause", "a.tar", &good, "registry.k8s.io/pause:3.10.1"),
            raw("bb", "a.tar", &good, "10.0.2.2:5000/test/bb:v1:x"),
        ],
        d.path(),
        &mut p.scope("container_images"),
    );
    assert_eq!(list.len(), 4);
    let fields: Vec<String> = p.into_vec().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "container_images[1].name",
            "container_images[1].archive",
            "container_images[1].sha256",
            "container_images[1].reference",
            "container_images[2].name",
            "container_images[2].reference",
            "container_images[3].reference",
        ]
    );
    let mut p = Problems::new();
    check(
        vec![raw("bb", "a.tar", &good, "10.0.2.2:5000/test/bb")],
        d.path(),
        &mut p.scope("container_images"),
    );
    assert!(p.is_empty());
}

#[test]
fn preloading_checks_the_pin_and_writes_the_list() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("bb.tar");
    let digest = archive(&a, |_| {});
    let pin = sha(&std::fs::read(&a).unwrap());
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(root.join("usr/bin/containerd"), "").unwrap();
    let img = |sha256: &str| ContainerImage {
        name: "bb".into(),
        archive: a.clone(),
        sha256: sha256.into(),
        reference: "10.0.2.2:5000/test/bb:v1".into(),
    };
    let locate = |i: usize, f: &str, m: String| anyhow::anyhow!("container_images[{i}].{f}: {m}");
    let e = preload(&root, &[img(&"0".repeat(64))], &locate, &|_| {}).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.starts_with("container_images[0].sha256: ") && e.contains(&pin),
        "{e}"
    );
    assert!(!root.join(images::DIR).join("bb.oci.tar").exists());
    assert!(!root.join(images::LIST).exists());

    let (list, bytes) = preload(&root, &[img(&pin)], &locate, &|_| {}).unwrap();
    assert_eq!(bytes, std::fs::metadata(&a).unwrap().len());
    assert_eq!(list[0].digest, digest);
    let written = std::fs::read_to_string(root.join(images::LIST)).unwrap();
    assert_eq!(images::parse(&written).unwrap(), list);
    assert_eq!(
        std::fs::read(root.join(images::DIR).join("bb.oci.tar")).unwrap(),
        std::fs::read(&a).unwrap()
    );
}

#[test]
fn registry_settings_are_read_with_their_ca_and_written_into_the_root() {
    let d = tempfile::tempdir().unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(d.path().join("ca.pem"), pem).unwrap();
    let mut p = Problems::new();
    let raw = registries::RawRegistry {
        host: "10.0.2.2:5000".into(),
        mirrors: vec!["https://mirror.example".into()],
        ca: Some("ca.pem".into()),
        insecure: false,
        username: None,
        password: None,
    };
    let list = registries::check(vec![raw], d.path(), &mut p.scope("registries"));
    assert!(p.is_empty(), "{:?}", p.into_vec());
    let root = d.path().join("root");
    registries::install(&root, &list, &|_| {}).unwrap();
    let dir = root.join("etc/containerd/certs.d/10.0.2.2:5000");
    assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), pem);
    let hosts = std::fs::read_to_string(dir.join("hosts.toml")).unwrap();
    assert!(
        hosts.contains("[host.\"https://mirror.example\"]"),
        "{hosts}"
    );
    assert!(
        hosts.contains("server = \"https://10.0.2.2:5000\""),
        "{hosts}"
    );
    assert!(!hosts.contains("header"), "{hosts}");
}
