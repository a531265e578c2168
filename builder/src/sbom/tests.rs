use super::*;

fn pkg(name: &str, version: &str, source: &str, source_version: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        installed_bytes: 1024,
        source: source.into(),
        source_version: source_version.into(),
    }
}

fn doc(files: &[FileEntry]) -> Value {
    let packages = [
        pkg(
            "libstdc++6",
            "12.2.0-14+deb12u1",
            "gcc-12",
            "12.2.0-14+deb12u1",
        ),
        pkg(
            "libgcc-s1",
            "12.2.0-14+deb12u1",
            "gcc-12",
            "12.2.0-14+deb12u1",
        ),
        pkg("bash", "5.2.15-2+b7", "bash", "5.2.15-2"),
    ];
    let sums: BTreeMap<(String, String), String> =
        [(("bash".to_string(), "amd64".to_string()), "ab".repeat(32))].into();
    let licences: BTreeMap<String, String> =
        [("bash".to_string(), "GPL-3.0-or-later".to_string())].into();
    spdx(&Input {
        name: "host",
        version: "1",
        distro: "debian",
        distro_version: "12",
        epoch: 1_700_000_000,
        packages: &packages,
        archive_sha256: &sums,
        licences: &licences,
        files,
        outputs: &[("host-1.raw".to_string(), "cd".repeat(32))],
    })
}

#[test]
fn purls_encode_what_the_purl_spec_reserves() {
    assert_eq!(
        purl("debian", "12", "libstdc++6", "1:12.2.0-14+deb12u1", "amd64"),
        "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        purl("fedora", "45", "bash", "0:5.2.26-3.fc45", "x86_64"),
        "pkg:rpm/fedora/bash@0%3A5.2.26-3.fc45?arch=x86_64&distro=fedora-45"
    );
}

#[test]
fn packages_sources_and_files_are_related_and_the_document_is_stable() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f"), b"hello").unwrap();
    let f = FileEntry::of(&d.path().join("f"), "./etc/f", "overlay").unwrap();
    assert_eq!(f.sha1, "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
    let v = doc(std::slice::from_ref(&f));
    assert_eq!(v, doc(std::slice::from_ref(&f)), "not deterministic");
    let pk = v["packages"].as_array().unwrap();
    // The image, 3 binary packages, 2 source packages, 1 output.
    assert_eq!(pk.len(), 7);
    let raw = &pk[6];
    assert_eq!(raw["packageFileName"], "host-1.raw");
    assert_eq!(raw["checksums"][0]["checksumValue"], "cd".repeat(32));
    assert_eq!(pk[0]["SPDXID"], "SPDXRef-Image");
    let bash = pk
        .iter()
        .find(|p| p["name"] == "bash" && p["primaryPackagePurpose"].is_null())
        .unwrap();
    assert_eq!(bash["licenseDeclared"], "GPL-3.0-or-later");
    assert_eq!(bash["checksums"][0]["checksumValue"], "ab".repeat(32));
    assert_eq!(
        bash["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64&distro=debian-12"
    );
    let gcc: Vec<&Value> = pk.iter().filter(|p| p["name"] == "gcc-12").collect();
    assert_eq!(gcc.len(), 1, "one source package for two binaries");
    assert_eq!(gcc[0]["primaryPackagePurpose"], "SOURCE");
    let rel = v["relationships"].as_array().unwrap();
    let from_gcc = rel
        .iter()
        .filter(|r| {
            r["relationshipType"] == "GENERATED_FROM" && r["relatedSpdxElement"] == gcc[0]["SPDXID"]
        })
        .count();
    assert_eq!(from_gcc, 2);
    assert_eq!(v["files"][0]["checksums"][0]["algorithm"], "SHA1");
    assert_eq!(v["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    // Every SPDXID is a valid one.
    for p in pk {
        let id = p["SPDXID"].as_str().unwrap();
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            "{id}"
        );
    }
}

#[test]
fn the_document_validates_with_the_spdx_projects_tools() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f"), b"x").unwrap();
    let f = FileEntry::of(
        &d.path().join("f"),
        "./usr/libexec/atomic-firstboot",
        "atomicbuild agent",
    )
    .unwrap();
    let path = d.path().join("sbom.spdx.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc(&[f])).unwrap()).unwrap();
    testkit::spdx_valid(&path).unwrap();
    // A broken one does not.
    let mut bad = doc(&[]);
    bad["packages"][1]["SPDXID"] = json!("not an id");
    std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(testkit::spdx_valid(&path).is_err());
}

#[test]
fn licences_come_only_from_machine_readable_copyright_files() {
    let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: debian/*\nLicense: GPL-2+\n\nFiles: *\nCopyright: someone\nLicense: LGPL-2.1+ or Expat\n\nLicense: LGPL-2.1+\n text\n";
    assert_eq!(
        debian_licence(dep5).as_deref(),
        Some("LGPL-2.1-or-later OR MIT")
    );
    let unknown = dep5.replace("LGPL-2.1+ or Expat", "Artistic or GPL-1+");
    assert_eq!(debian_licence(&unknown), None);
    assert_eq!(
        debian_licence("This package was debianized by ...\nLicense: GPL-2\n"),
        None
    );
}

#[test]
fn source_rpms_split_into_name_and_version() {
    assert_eq!(
        crate::distro::split_source_rpm("bash-5.2.26-3.fc40.src.rpm"),
        Some(("bash".into(), "5.2.26-3.fc40".into()))
    );
    assert_eq!(
        crate::distro::split_source_rpm("python-foo-bar-1.0-1.src.rpm"),
        Some(("python-foo-bar".into(), "1.0-1".into()))
    );
    assert_eq!(crate::distro::split_source_rpm("(none)"), None);
}
