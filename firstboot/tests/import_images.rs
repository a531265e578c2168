//! `atomic-firstboot import-images` against a real containerd (Debian's,
//! started by the test with its own root, state and socket in a temporary
//! directory; the CRI plugin off): a preloaded OCI archive is imported and
//! named by its reference and by digest, a second run leaves it alone, and
//! an archive whose bytes are not the recorded ones is refused and not
//! imported.

use std::path::Path;
use std::process::{Command, Output};

use common::images::{self, Preloaded};
use testkit::containerd::Containerd;
use testkit::oci::{image, Entry};

/// A root with one preloaded image whose layer holds `text`; the list
/// records `recorded_sha` for it when given, else the archive's own.
fn root_with(dir: &Path, text: &[u8], reference: &str, recorded_sha: Option<&str>) -> Preloaded {
    let img = image(
        &[Entry::File("greeting", text, 0o644)],
        &["/greeting"],
        "v1",
    );
    let d = dir.join(images::DIR);
    std::fs::create_dir_all(&d).unwrap();
    let sha = img.write(&d.join("bb.oci.tar"));
    let p = Preloaded {
        name: "bb".into(),
        file: "bb.oci.tar".into(),
        sha256: recorded_sha.unwrap_or(&sha).to_string(),
        reference: reference.into(),
        digest: img.digest.clone(),
    };
    std::fs::write(
        dir.join(images::LIST),
        images::render(std::slice::from_ref(&p)),
    )
    .unwrap();
    p
}

fn import(root: &Path, c: &Containerd) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atomic-firstboot"))
        .arg("import-images")
        .arg("--root")
        .arg(root)
        .arg("--address")
        .arg(&c.socket)
        .output()
        .unwrap()
}

#[test]
fn preloaded_images_are_imported_once_by_reference_and_digest_and_bad_archives_refused() {
    let tmp = tempfile::Builder::new()
        .prefix("atomicbuild-ctrd.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let c = Containerd::start(&tmp.path().join("ctrd"), images::NAMESPACE);

    let good = tmp.path().join("good");
    let p = root_with(&good, b"hello\n", "10.0.2.2:5000/test/bb:v1", None);
    let o = import(&good, &c);
    let said =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("10.0.2.2:5000/test/bb:v1: imported"),
        "{said}"
    );
    let l = c.images();
    for name in [p.reference.clone(), p.pinned()] {
        assert!(
            l.contains(&(name.clone(), p.digest.clone())),
            "{name} not in {l:?}"
        );
    }
    // Unpacked for the default snapshotter, so that it can run at once.
    let check = String::from_utf8_lossy(&c.ctr(&["images", "check"]).stdout).into_owned();
    assert!(check.contains("complete"), "{check}");

    let o = import(&good, &c);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && said.contains("bb:v1: present"),
        "{said}"
    );

    // Another archive under a recorded sha256 that is not its own.
    let bad = tmp.path().join("bad");
    let q = root_with(
        &bad,
        b"tampered\n",
        "10.0.2.2:5000/test/other:v1",
        Some(&p.sha256),
    );
    let o = import(&bad, &c);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "a tampered archive was imported");
    assert!(
        err.contains("bb.oci.tar has sha256") && err.contains("not importing it"),
        "{err}"
    );
    assert!(
        !c.images().iter().any(|(_, d)| *d == q.digest),
        "the tampered image is in containerd"
    );

    // No list: nothing to do.
    let o = import(&tmp.path().join("none"), &c);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("no preloaded container images"));
}
