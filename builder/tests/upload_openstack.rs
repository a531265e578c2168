//! `atomicbuild upload openstack` against a real Keystone (30.0.0) and a
//! real Glance (33.0.0), both from PyPI in one venv that
//! `scripts/install-deps` makes, started here on 127.0.0.1 ports: Keystone
//! with sqlite + fernet tokens under gunicorn, provisioned over its API
//! (service user for Glance, a demo project and user, the image service in
//! the catalog, an application credential); Glance with sqlite, the file
//! store and keystonemiddleware validating every token against Keystone.
//! Nothing is faked.

mod clouds;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use clouds::{OpenStack, APPCRED_SECRET, DEMO_PW};

/// Glance here refuses image data above this (the failure case sends more).
const SIZE_CAP: u64 = 32 << 20;
use sha2::{Digest, Sha512};

/// A raw image with data here and there and holes between.
fn write_raw(p: &Path, size: u64, seed: u8) {
    let f = std::fs::File::create(p).unwrap();
    f.set_len(size).unwrap();
    let mut w = std::io::BufWriter::new(&f);
    let mut x = 0x9e3779b97f4a7c15u64 ^ seed as u64;
    let chunk: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    use std::io::Seek;
    for off in (0..size).step_by(5 << 20) {
        w.seek(std::io::SeekFrom::Start(off)).unwrap();
        w.write_all(&chunk[..chunk.len().min((size - off) as usize)])
            .unwrap();
    }
    w.flush().unwrap();
    f.sync_all().unwrap();
}

fn sha512(p: &Path) -> String {
    hex::encode(Sha512::digest(std::fs::read(p).unwrap()))
}

/// `atomicbuild` with only the given OS_* variables (the caller's are
/// removed so nothing leaks in from the machine).
fn atomicbuild(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomicbuild"));
    c.args(args).current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", cwd).env_remove("XDG_CONFIG_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `atomicbuild upload openstack --image IMAGE --name NAME EXTRA...`.
fn upload(image: &Path, name: &str, extra: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut args = vec![
        "upload",
        "openstack",
        "--image",
        image.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend(extra);
    atomicbuild(&args, env, cwd)
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "atomicbuild failed:\n{err}");
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn uploads_to_glance_authenticated_by_keystone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t = Instant::now();
    let os = OpenStack::start_with_cap(dir, SIZE_CAP);
    eprintln!("keystone + glance up in {:.1} s", t.elapsed().as_secs_f64());
    let demo = os.demo_token();
    let openrc = [
        ("OS_AUTH_URL", format!("{}/v3", os.auth_url)),
        ("OS_USERNAME", "demo".into()),
        ("OS_PASSWORD", DEMO_PW.into()),
        ("OS_PROJECT_NAME", "demo".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_ID", "default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
    ];
    let env: Vec<(&str, &str)> = openrc.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // 1. A raw image with the openrc variables (password auth).
    let raw = dir.join("host.raw");
    write_raw(&raw, 24 << 20, 1);
    let t = Instant::now();
    let o = upload(
        &raw,
        "host-raw",
        &[
            "--firmware",
            "bios",
            "--os-distro",
            "fedora",
            "--os-version",
            "45",
            "--json",
        ],
        &env,
        dir,
    );
    // --json: the upload's record, as the build metadata keeps it.
    let rec: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(rec["target"], "openstack", "{rec}");
    assert_eq!(rec["name"], "host-raw", "{rec}");
    let id = rec["image_id"].as_str().unwrap().to_string();
    eprintln!(
        "24 MiB raw uploaded in {:.2} s:\n{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&o.stderr)
    );
    let img = os.glance(&demo, &format!("/v2/images/{id}"));
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512(&raw).as_str());
    assert_eq!(img["size"], 24 << 20);
    for (k, v) in [
        ("disk_format", "raw"),
        ("container_format", "bare"),
        ("visibility", "private"),
        ("architecture", "x86_64"),
        ("hw_firmware_type", "bios"),
        ("hw_machine_type", "q35"),
        ("os_distro", "fedora"),
        ("os_version", "45"),
    ] {
        assert_eq!(img[k], v, "{k} in {img}");
    }
    assert_eq!(
        (img["min_disk"].as_u64(), img["min_ram"].as_u64()),
        (Some(1), Some(1024))
    );
    // Glance's copy is our file.
    let mut back = Vec::new();
    use std::io::Read;
    ureq::get(&format!("{}/v2/images/{id}/file", os.glance_url))
        .set("x-auth-token", &demo)
        .call()
        .unwrap()
        .into_reader()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        back == std::fs::read(&raw).unwrap(),
        "Glance's data differs"
    );

    // 2. The same again: found, nothing uploaded, still one image.
    let o = upload(&raw, "host-raw", &["--firmware", "bios"], &env, dir);
    assert_eq!(ok(&o), id);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing uploaded"));
    assert_eq!(os.images_named(&demo, "host-raw").len(), 1);
    assert_eq!(
        os.glance(&demo, &format!("/v2/images/{id}"))["updated_at"],
        img["updated_at"]
    );

    // 3. A wrong password: refused with Keystone named, the password never shown.
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "OS_PASSWORD");
    bad.push(("OS_PASSWORD", "not-the-Password-4711"));
    let o = upload(&raw, "host-bad", &[], &bad, dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains(&os.auth_url), "{err}");
    assert!(!err.contains("not-the-Password-4711"), "{err}");
    assert!(os.images_named(&demo, "host-bad").is_empty());

    // 4. A qcow2 (written by atomicbuild convert) through clouds.yaml with
    //    the application credential; secret in secure.yaml.
    let qcow2 = dir.join("host.qcow2");
    ok(&atomicbuild(
        &[
            "convert",
            "--image",
            raw.to_str().unwrap(),
            "--format",
            "qcow2",
            "--compression",
            "zstd",
            "--output",
            qcow2.to_str().unwrap(),
        ],
        &[],
        dir,
    ));
    std::fs::write(
        dir.join("clouds.yaml"),
        format!(
            "clouds:\n  lab:\n    auth_type: v3applicationcredential\n    region_name: RegionOne\n    \
             auth:\n      auth_url: {}/v3\n      application_credential_id: {}\n",
            os.auth_url, os.appcred_id
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("secure.yaml"),
        format!(
            "clouds:\n  lab:\n    auth:\n      application_credential_secret: {APPCRED_SECRET}\n"
        ),
    )
    .unwrap();
    let o = upload(&qcow2, "host-qcow2", &["--cloud", "lab"], &[], dir);
    let qid = ok(&o);
    let img = os.glance(&demo, &format!("/v2/images/{qid}"));
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["hw_firmware_type"], "uefi");
    assert_eq!(img["os_hash_value"], sha512(&qcow2).as_str());
    // An unknown cloud names the file and the clouds in it.
    let o = upload(&qcow2, "x", &["--cloud", "nope"], &[], dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no cloud \"nope\" (clouds there: lab)"),
        "{err}"
    );

    // 5. Glance refuses the data (over its size cap): the queued image is
    //    deleted, nothing is left under the name.
    let big = dir.join("big.raw");
    write_raw(&big, SIZE_CAP + (8 << 20), 2);
    let o = upload(&big, "host-big", &[], &env, dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "an image over Glance's cap was accepted"
    );
    assert!(
        err.contains("uploading the image data") && err.contains("was deleted again"),
        "{err}"
    );
    assert!(
        os.images_named(&demo, "host-big").is_empty(),
        "a refused image was left behind"
    );
}
