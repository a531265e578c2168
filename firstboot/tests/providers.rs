//! Each provider against a fixture: fw_cfg and config-drive directories,
//! and metadata services on 127.0.0.1 (IMDSv2 with its token, IMDSv1
//! refused by default, the OpenStack metadata fallback). Retries are
//! bounded: an unreachable port fails within the configured time.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{closed_port, run_agent, Req, Resp, Server};
use firstboot::http::Url;
use firstboot::providers::{for_platform, ConfigDrive, FileConfig, Options};
use firstboot::retry::Retry;

const CONFIG: &str = "version = 1\nhostname = \"from-provider\"\n";

fn opts() -> Options {
    Options {
        retry: Retry {
            max_attempts: 5,
            max_total: Duration::from_secs(10),
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        device_wait: Duration::from_millis(300),
        ..Options::default()
    }
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

#[test]
fn qemu_reads_the_fw_cfg_entry() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts();
    // No fw_cfg device at all (VirtualBox, bare metal): no user data.
    o.fw_cfg_root = d.path().join("no-such-device");
    let start = Instant::now();
    assert_eq!(for_platform("qemu", &o).unwrap().user_data().unwrap(), None);
    // The device without the entry (QEMU without -fw_cfg): no user data,
    // at once (the device wait is not spent).
    o.fw_cfg_root = d.path().to_owned();
    std::fs::create_dir_all(d.path().join("by_name/etc")).unwrap();
    let p = for_platform("qemu", &o).unwrap();
    assert_eq!(p.user_data().unwrap(), None);
    assert!(start.elapsed() < o.device_wait, "{:?}", start.elapsed());
    write(
        &d.path().join("by_name/opt/org.atomicbuild/config/raw"),
        CONFIG,
    );
    assert_eq!(p.user_data().unwrap().unwrap(), CONFIG.as_bytes());
}

#[test]
fn openstack_prefers_the_config_drive() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("openstack/latest/user_data"), CONFIG);
    let mut o = opts();
    o.config_drive = ConfigDrive::Dir(d.path().to_owned());
    // A metadata service that must not be asked.
    let srv = Server::start(|_| Resp::new(500, "no"));
    o.openstack_url = Url::parse(&srv.url).unwrap();
    assert_eq!(
        for_platform("openstack", &o)
            .unwrap()
            .user_data()
            .unwrap()
            .unwrap(),
        CONFIG.as_bytes()
    );
    assert!(srv.requests().is_empty());
    // A drive without user_data is an error, not a silent fallback.
    let empty = tempfile::tempdir().unwrap();
    o.config_drive = ConfigDrive::Dir(empty.path().to_owned());
    let e = for_platform("openstack", &o)
        .unwrap()
        .user_data()
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("no openstack/latest/user_data"),
        "{e:#}"
    );
}

#[test]
fn openstack_falls_back_to_the_metadata_service() {
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let srv = Server::start(move |r: &Req| {
        // First a 503 (transient), then the data, chunked.
        if h.fetch_add(1, Ordering::SeqCst) == 0 {
            return Resp::new(503, "busy");
        }
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/openstack/latest/user_data")
        );
        Resp {
            status: 200,
            body: CONFIG.into(),
            chunked: true,
        }
    });
    let mut o = opts();
    o.config_drive = ConfigDrive::Dir("/nonexistent/config-drive".into());
    o.openstack_url = Url::parse(&srv.url).unwrap();
    assert_eq!(
        for_platform("openstack", &o)
            .unwrap()
            .user_data()
            .unwrap()
            .unwrap(),
        CONFIG.as_bytes()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // An instance without user data: the service answers 404.
    let none = Server::start(|_| Resp::new(404, "not found"));
    o.openstack_url = Url::parse(&none.url).unwrap();
    assert_eq!(
        for_platform("openstack", &o).unwrap().user_data().unwrap(),
        None
    );
}

/// An IMDSv2 service: a token from PUT, required on GET.
fn imdsv2() -> Server {
    Server::start(|r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => match r.header("x-aws-ec2-metadata-token-ttl-seconds") {
            Some(_) => Resp::new(200, "TOKEN-123"),
            None => Resp::new(400, "missing ttl"),
        },
        ("GET", "/latest/user-data")
            if r.header("x-aws-ec2-metadata-token") == Some("TOKEN-123") =>
        {
            Resp::new(200, CONFIG)
        }
        ("GET", _) => Resp::new(401, "no token"),
        _ => Resp::new(405, "no"),
    })
}

/// An IMDSv1-only service: token requests refused, GET without token works.
fn imdsv1_only() -> Server {
    Server::start(|r: &Req| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", _) => Resp::new(403, "forbidden"),
        ("GET", "/latest/user-data") => Resp::new(200, CONFIG),
        _ => Resp::new(404, ""),
    })
}

#[test]
fn aws_uses_imdsv2_with_its_token() {
    let srv = imdsv2();
    let mut o = opts();
    o.aws_url = Url::parse(&srv.url).unwrap();
    assert_eq!(
        for_platform("aws", &o)
            .unwrap()
            .user_data()
            .unwrap()
            .unwrap(),
        CONFIG.as_bytes()
    );
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "PUT");
    assert_eq!(
        reqs[1].header("x-aws-ec2-metadata-token"),
        Some("TOKEN-123")
    );
}

#[test]
fn aws_instance_without_user_data_is_not_an_error() {
    let srv = Server::start(|r: &Req| match r.method.as_str() {
        "PUT" => Resp::new(200, "TOKEN-123"),
        _ => Resp::new(404, "not found"),
    });
    let mut o = opts();
    o.aws_url = Url::parse(&srv.url).unwrap();
    assert_eq!(for_platform("aws", &o).unwrap().user_data().unwrap(), None);
}

#[test]
fn aws_imdsv1_fallback_is_refused_by_default() {
    let srv = imdsv1_only();
    let mut o = opts();
    o.aws_url = Url::parse(&srv.url).unwrap();
    let e = for_platform("aws", &o).unwrap().user_data().unwrap_err();
    assert!(
        format!("{e:#}").contains("IMDSv1 fallback is disabled"),
        "{e:#}"
    );
    assert!(
        srv.requests().iter().all(|r| r.method == "PUT"),
        "user data fetched without a token"
    );
    o.imdsv1 = true;
    assert_eq!(
        for_platform("aws", &o)
            .unwrap()
            .user_data()
            .unwrap()
            .unwrap(),
        CONFIG.as_bytes()
    );
}

#[test]
fn aws_imdsv1_kernel_argument_through_the_binary() {
    let srv = imdsv1_only();
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    for (cmdline, ok) in [
        ("ro atomic.platform=aws", false),
        ("atomic.platform=aws atomic.aws-imdsv1=1", true),
    ] {
        write(&d.path().join("cmdline"), cmdline);
        let out = run_agent(&[
            "run",
            "--dry-run",
            "--root",
            &root.to_string_lossy(),
            "--cmdline",
            &d.path().join("cmdline").to_string_lossy(),
            "--metadata-url",
            &srv.url,
            "--retry-secs",
            "5",
        ]);
        assert_eq!(
            out.status.success(),
            ok,
            "{cmdline}: {}",
            common::stderr(&out)
        );
        if ok {
            assert!(String::from_utf8_lossy(&out.stdout).contains("hostname: set to from-provider"));
        } else {
            let err = common::stderr(&out);
            assert!(
                err.starts_with("atomic-firstboot: step fetch failed (field user-data): "),
                "{err}"
            );
        }
    }
    // No platform on the command line: nothing to do, success.
    write(&d.path().join("cmdline"), "root=/dev/vda ro");
    let out = run_agent(&[
        "run",
        "--root",
        &root.to_string_lossy(),
        "--cmdline",
        &d.path().join("cmdline").to_string_lossy(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to provision"));
    // An unknown platform is an error.
    write(&d.path().join("cmdline"), "atomic.platform=azure");
    let out = run_agent(&[
        "run",
        "--root",
        &root.to_string_lossy(),
        "--cmdline",
        &d.path().join("cmdline").to_string_lossy(),
    ]);
    assert!(common::stderr(&out)
        .contains("step platform failed (field atomic.platform): unknown platform"));
}

#[test]
fn file_platform_reads_a_path_under_a_directory() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("cfg/firstboot.toml"), CONFIG);
    let mut o = opts();
    o.file = FileConfig {
        label: Some("CFG".into()),
        path: "/cfg/firstboot.toml".into(),
        dir: Some(d.path().to_owned()),
    };
    assert_eq!(
        for_platform("file", &o)
            .unwrap()
            .user_data()
            .unwrap()
            .unwrap(),
        CONFIG.as_bytes()
    );
    // The config disk is there but lacks the file: an error.
    o.file.path = "/missing.toml".into();
    assert!(for_platform("file", &o).unwrap().user_data().is_err());
}

#[test]
fn retries_against_an_unreachable_port_are_bounded() {
    let port = closed_port();
    let mut o = opts();
    o.retry = Retry {
        max_attempts: 1000,
        max_total: Duration::from_secs(3),
        ..o.retry
    };
    o.aws_url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let start = Instant::now();
    let e = for_platform("aws", &o).unwrap().user_data().unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(
        format!("{e:#}").contains("gave up on IMDSv2 token"),
        "{e:#}"
    );
    // And by attempts.
    o.retry = Retry {
        max_attempts: 3,
        max_total: Duration::from_secs(60),
        ..o.retry
    };
    let start = Instant::now();
    let e = for_platform(
        "openstack",
        &Options {
            config_drive: ConfigDrive::Dir("/nonexistent".into()),
            openstack_url: o.aws_url.clone(),
            ..o.clone()
        },
    )
    .unwrap()
    .user_data()
    .unwrap_err();
    assert!(format!("{e:#}").contains("after 3 attempts"), "{e:#}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn qemu_and_config_drive_through_the_binary() {
    let d = tempfile::tempdir().unwrap();
    let fw = d.path().join("fw_cfg");
    write(&fw.join("by_name/opt/org.atomicbuild/config/raw"), CONFIG);
    let drive = d.path().join("config-2");
    write(
        &drive.join("openstack/latest/user_data"),
        &CONFIG.replace("from-provider", "from-drive"),
    );
    for (platform, flag, dir, host) in [
        ("qemu", "--fw-cfg-dir", &fw, "from-provider"),
        ("openstack", "--config-drive-dir", &drive, "from-drive"),
    ] {
        let root = d.path().join(format!("root-{platform}"));
        let out = run_agent(&[
            "run",
            "--platform",
            platform,
            flag,
            &dir.to_string_lossy(),
            "--root",
            &root.to_string_lossy(),
            "--service-manager",
            "direct",
            "--cmdline",
            "/dev/null",
        ]);
        assert!(out.status.success(), "{platform}: {}", common::stderr(&out));
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            format!("{host}\n")
        );
        assert!(root.join("var/lib/atomic-firstboot/done").exists());
    }
    // A qemu guest without the fw_cfg entry, or without fw_cfg at all:
    // no user data, success at once, nothing provisioned, no stamp (a
    // later boot with user data provisions).
    std::fs::create_dir_all(d.path().join("fw-no-entry/by_name/etc")).unwrap();
    for dir in ["fw-no-entry", "no-fw-cfg-device"] {
        let root = d.path().join(format!("root-{dir}"));
        let start = Instant::now();
        let out = run_agent(&[
            "run",
            "--platform",
            "qemu",
            "--fw-cfg-dir",
            &d.path().join(dir).to_string_lossy(),
            "--root",
            &root.to_string_lossy(),
            "--cmdline",
            "/dev/null",
        ]);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(out.status.success(), "{dir}: {}", common::stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("no user data on this platform (qemu)"),
            "{said}"
        );
        assert!(!root.join("var/lib/atomic-firstboot/done").exists());
        assert!(!root.join("etc/hostname").exists());
    }
    // A config that exists but is invalid still fails (fail closed).
    let bad = d.path().join("fw-bad");
    write(
        &bad.join("by_name/opt/org.atomicbuild/config/raw"),
        "version = 1\nhostname = 42\n",
    );
    let root = d.path().join("root-bad");
    let out = run_agent(&[
        "run",
        "--platform",
        "qemu",
        "--fw-cfg-dir",
        &bad.to_string_lossy(),
        "--root",
        &root.to_string_lossy(),
        "--cmdline",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.starts_with(
            "atomic-firstboot: step validate failed (field hostname): user-data(qemu):2:"
        ),
        "{err}"
    );
    assert!(!root.join("var/lib/atomic-firstboot/done").exists());
}
