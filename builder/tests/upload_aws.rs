//! `atomicbuild upload aws` against moto, the AWS API emulator (a real
//! server process on 127.0.0.1; `scripts/install-deps` puts it in a venv).
//! moto neither verifies SigV4 signatures nor block checksums, so the test
//! reads every block of the snapshot back and compares it with the image,
//! and checks RegisterImage's parameters in moto's request recorder. A
//! proxy in front of moto injects a throttling response and a 503 to prove
//! retries, and a hard failure to prove nothing is left registered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod clouds;

use clouds::{ec2, ec2_in, Moto};

const BLOCK: u64 = 512 * 1024;

fn ebs_get(moto: &str, path: &str) -> ureq::Response {
    ureq::get(&format!("{moto}{path}"))
        .set(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ebs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .call()
        .unwrap()
}

/// An 8 MiB image: data in blocks 0, 3 and 9 (one byte at its very end),
/// block 5 written with zeros (not a hole, still skipped), the rest holes.
fn image(dir: &Path) -> PathBuf {
    let p = dir.join("small.raw");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(10 * BLOCK).unwrap();
    let pattern: Vec<u8> = (0..BLOCK).map(|i| (i % 253) as u8 + 1).collect();
    f.write_all_at(&pattern, 0).unwrap();
    f.write_all_at(&pattern[..1000], 3 * BLOCK + 4096).unwrap();
    f.write_all_at(&vec![0u8; BLOCK as usize], 5 * BLOCK)
        .unwrap();
    f.write_all_at(b"end", 10 * BLOCK - 3).unwrap();
    p
}

/// A proxy to moto that answers the Nth PutSnapshotBlock requests itself.
struct Proxy {
    port: u16,
    seen_blocks: Arc<AtomicUsize>,
}

fn proxy(target: u16, fail: Vec<(usize, u16)>) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    let fail = Arc::new(fail);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let seen = seen2.clone();
            let fail = fail.clone();
            std::thread::spawn(move || handle(s, target, &seen, &fail));
        }
    });
    Proxy {
        port,
        seen_blocks: seen,
    }
}

/// One request (Connection: close on both sides, so one per connection).
fn handle(s: TcpStream, target: u16, seen: &AtomicUsize, fail: &[(usize, u16)]) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        let end = l == "\r\n";
        if !l.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&l);
        }
        if end {
            break;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    let mut s = s;
    if head.starts_with("PUT /snapshots/") {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if let Some((_, code)) = fail.iter().find(|(i, _)| *i == n) {
            let reason = if *code == 400 {
                "Bad Request"
            } else {
                "Slow Down"
            };
            let msg = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            let _ = s.write_all(msg.as_bytes());
            return;
        }
    }
    let head = head.trim_end_matches("\r\n").to_string() + "\r\nConnection: close\r\n\r\n";
    let mut up = TcpStream::connect(("127.0.0.1", target)).unwrap();
    up.write_all(head.as_bytes()).unwrap();
    up.write_all(&body).unwrap();
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let _ = s.write_all(&resp);
}

/// The body of the last recorded request whose body contains `needle`.
fn recorded(moto: &str, needle: &str) -> String {
    recorded_request(moto, needle).1
}

/// The headers and body of the last recorded request whose body contains
/// `needle`.
fn recorded_request(moto: &str, needle: &str) -> (serde_json::Value, String) {
    use base64::Engine as _;
    // Block bodies make it large: read it whole, not with into_string's cap.
    let mut rec = String::new();
    ureq::get(&format!("{moto}/moto-api/recorder/download-recording"))
        .call()
        .unwrap()
        .into_reader()
        .read_to_string(&mut rec)
        .unwrap();
    rec.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| {
            let body = e["body"].as_str()?.to_string();
            let body = if e["body_encoded"] == true {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .ok()?;
                String::from_utf8_lossy(&b).into_owned()
            } else {
                body
            };
            Some((e["headers"].clone(), body))
        })
        .find(|(_, b)| b.contains(needle))
        .unwrap_or_else(|| panic!("no recorded request with {needle}"))
}

/// A value of an `a=b&c=d` form (as sent: still percent-encoded).
fn form_value(form: &str, key: &str) -> String {
    form.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

fn upload(endpoint: &str, image: &Path, name: &str) -> std::process::Output {
    upload_cmd(endpoint, image, name)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-never-printed")
        .output()
        .unwrap()
}

/// `upload aws` to `endpoint`, with no credentials from this machine and
/// the instance metadata service pointed at 127.0.0.1 (never 169.254.169.254).
fn upload_cmd(endpoint: &str, image: &Path, name: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomicbuild"));
    c.args([
        "upload",
        "aws",
        "--name",
        name,
        "--region",
        "us-east-1",
        "--threads",
        "3",
    ])
    .arg("--image")
    .arg(image)
    .arg("--endpoint-url")
    .arg(endpoint)
    .env_remove("AWS_ACCESS_KEY_ID")
    .env_remove("AWS_SECRET_ACCESS_KEY")
    .env_remove("AWS_SESSION_TOKEN")
    .env_remove("AWS_PROFILE")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9");
    c
}

#[test]
fn upload_to_moto_reads_back_registers_retries_and_cleans_up() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let moto = Moto::start(d.path());
    let m = moto.url();
    ureq::post(&format!("{m}/moto-api/recorder/start-recording"))
        .call()
        .unwrap();

    // Through a proxy that throttles the 2nd block and fails the 4th once.
    let p = proxy(moto.port, vec![(1, 429), (3, 503)]);
    let o = upload(&format!("http://127.0.0.1:{}", p.port), &img, "abtest-ami");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "upload failed:\n{err}");
    assert!(
        !err.contains("testing-secret"),
        "the secret was printed:\n{err}"
    );
    let ami = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(ami.starts_with("ami-"), "{ami:?}");
    // Blocks 0, 3, 9 were sent, plus the two retried requests.
    assert_eq!(p.seen_blocks.load(Ordering::SeqCst), 5, "{err}");

    // What atomicbuild asked moto (moto records every request; its
    // RegisterImage ignores the mapping, so the request is the evidence).
    let reg = recorded(&m, "Action=RegisterImage");
    let snap = form_value(&reg, "BlockDeviceMapping.1.Ebs.SnapshotId");
    assert!(snap.starts_with("snap-"), "{reg}");

    // The snapshot holds exactly the image's data blocks.
    let list: serde_json::Value = serde_json::from_str(
        &ebs_get(&m, &format!("/snapshots/{snap}/blocks"))
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let blocks = list["Blocks"].as_array().cloned().unwrap_or_default();
    let mut indices: Vec<u64> = blocks
        .iter()
        .map(|b| b["BlockIndex"].as_u64().unwrap())
        .collect();
    indices.sort();
    assert_eq!(indices, [0, 3, 9], "{list}");
    let f = std::fs::File::open(&img).unwrap();
    for b in &blocks {
        let i = b["BlockIndex"].as_u64().unwrap();
        let token = b["BlockToken"].as_str().unwrap_or("");
        let mut got = Vec::new();
        ebs_get(
            &m,
            &format!("/snapshots/{snap}/blocks/{i}?blockToken={token}"),
        )
        .into_reader()
        .read_to_end(&mut got)
        .unwrap();
        let mut want = vec![0u8; BLOCK as usize];
        f.read_exact_at(&mut want, i * BLOCK).unwrap();
        assert!(got == want, "block {i} differs from the image");
    }

    // RegisterImage as specified.
    for want in [
        "Name=abtest-ami",
        "Architecture=x86_64",
        "RootDeviceName=%2Fdev%2Fxvda",
        &format!("BlockDeviceMapping.1.Ebs.SnapshotId={snap}"),
        "BlockDeviceMapping.1.Ebs.VolumeType=gp3",
        "BlockDeviceMapping.1.Ebs.DeleteOnTermination=true",
        "EnaSupport=true",
        "BootMode=uefi-preferred",
        "ImdsSupport=v2.0",
    ] {
        assert!(reg.contains(want), "RegisterImage lacks {want}: {reg}");
    }

    // The same image again: found, not uploaded twice (said in --json).
    let p2 = proxy(moto.port, vec![]);
    let o = upload_cmd(&format!("http://127.0.0.1:{}", p2.port), &img, "abtest-ami")
        .arg("--json")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-never-printed")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["image_id"], ami.as_str(), "{rec}");
    assert_eq!(rec["target"], "aws", "{rec}");
    assert_eq!(rec["uploaded"], false, "{rec}");
    assert_eq!(
        p2.seen_blocks.load(Ordering::SeqCst),
        0,
        "the re-run uploaded blocks"
    );

    // The name taken by other contents: refused before any block is sent.
    let other = d.path().join("other.raw");
    std::fs::copy(&img, &other).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&other)
        .unwrap()
        .write_all_at(b"changed", 7 * BLOCK)
        .unwrap();
    let p4 = proxy(moto.port, vec![]);
    let o = upload(
        &format!("http://127.0.0.1:{}", p4.port),
        &other,
        "abtest-ami",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a second image got the same AMI name");
    assert!(
        err.contains(&format!("already exists in us-east-1 ({ami}"))
            && err.contains("other contents"),
        "{err}"
    );
    assert_eq!(
        p4.seen_blocks.load(Ordering::SeqCst),
        0,
        "blocks were sent for a doomed upload"
    );

    // A profile that is named must exist (no fall-through to the
    // instance's role, which moto's IMDS would hand out).
    let o = upload_cmd(&m, &img, "abtest-profile")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &m)
        .args(["--profile", "nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("AWS profile [nope]"),
        "{err}"
    );

    // A hard failure mid-upload: no AMI under the name, the snapshot is gone.
    let before = ec2(&m, &[("Action", "DescribeSnapshots")])
        .matches("<snapshotId>")
        .count();
    let p3 = proxy(moto.port, vec![(1, 400)]);
    let o = upload(
        &format!("http://127.0.0.1:{}", p3.port),
        &img,
        "abtest-broken",
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PutSnapshotBlock") && err.contains("400"),
        "{err}"
    );
    let imgs = ec2(
        &m,
        &[
            ("Action", "DescribeImages"),
            ("Filter.1.Name", "name"),
            ("Filter.1.Value.1", "abtest-broken"),
        ],
    );
    assert!(
        !imgs.contains("<imageId>"),
        "a failed upload registered an image: {imgs}"
    );
    let after = ec2(&m, &[("Action", "DescribeSnapshots")])
        .matches("<snapshotId>")
        .count();
    assert_eq!(
        before, after,
        "the failed upload's snapshot was not deleted"
    );

    // Credentials from the instance metadata service (moto serves IMDSv2),
    // the AMI copied to two regions, launch permissions on all three.
    let copies = || {
        let mut c = upload_cmd(&m, &img, "abtest-copies");
        c.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &m).args([
            "--copy-to-region",
            "eu-west-1",
            "--copy-to-region",
            "us-west-2",
        ]);
        c
    };
    let o = copies()
        .args([
            "--launch-permission",
            "123456789012",
            "--launch-permission",
            "all",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "upload with copies failed:\n{err}");
    assert!(!err.contains("test-secret-key"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let ids: Vec<(String, String)> = std::iter::once("us-east-1")
        .chain(["eu-west-1", "us-west-2"])
        .zip(out.lines())
        .map(|(r, l)| {
            (
                r.to_string(),
                l.split_whitespace().last().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(
        out.lines().nth(1).unwrap().split_whitespace().next(),
        Some("eu-west-1")
    );
    let (headers, _) = recorded_request(&m, "Action=CopyImage");
    let auth = headers["Authorization"].as_str().unwrap_or_default();
    assert!(
        auth.contains("Credential=test-key/"),
        "not signed with the IMDS credentials: {headers}"
    );
    assert_eq!(
        headers["X-Amz-Security-Token"], "test-session-token",
        "{headers}"
    );
    let sha = atomicbuild::fsutil::sha256_file(&img).unwrap();
    for (region, id) in &ids {
        assert!(id.starts_with("ami-"), "{out}");
        let d = ec2_in(
            &m,
            region,
            &[("Action", "DescribeImages"), ("ImageId.1", id)],
        );
        assert!(d.contains("<name>abtest-copies</name>"), "{region}: {d}");
        assert!(
            d.contains(&sha),
            "{region}: the copy lacks the sha256 tag: {d}"
        );
        let a = ec2_in(
            &m,
            region,
            &[
                ("Action", "DescribeImageAttribute"),
                ("ImageId", id),
                ("Attribute", "launchPermission"),
            ],
        );
        assert!(
            a.contains("<userId>123456789012</userId>") && a.contains("<group>all</group>"),
            "{region}: {a}"
        );
    }
    // Again: every region has its image, nothing is copied twice.
    let o = copies().output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), out);
    let named = ec2_in(
        &m,
        "eu-west-1",
        &[
            ("Action", "DescribeImages"),
            ("Filter.1.Name", "name"),
            ("Filter.1.Value.1", "abtest-copies"),
        ],
    );
    assert_eq!(named.matches("<imageId>").count(), 1, "{named}");
}
