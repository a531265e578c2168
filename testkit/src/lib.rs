//! What several crates' tests need and must not copy: a CA and
//! certificates made with `openssl` ([`Pki`]), real etcd members with TLS
//! on 127.0.0.1 ([`EtcdMember`], [`etcd_cluster`]), `etcdctl` with the test
//! client certificate, free ports, JUnit and SPDX validation, a static
//! HTTP server for fixtures, tiny OCI images, a real containerd and a
//! real registry. Used as a
//! dev-dependency only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod apt;
pub mod containerd;
pub mod fuzz;
pub mod oci;
pub mod registry;

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// openssl arguments for a new unencrypted P-256 key.
const NEW_EC_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

fn run(dir: &Path, argv: &[&str]) -> Output {
    let o = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", argv[0]));
    assert!(
        o.status.success(),
        "{} failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A CA and the certificates it signed, as files in `dir`.
#[derive(Clone)]
pub struct Pki {
    /// Where `ca.crt`, `NAME.crt` and `NAME.key` are.
    pub dir: PathBuf,
}

impl Pki {
    /// A fresh CA in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let subject = ["-subj", "/CN=atomicbuild test CA", "-days", "2"];
        let files = ["-keyout", "ca.key", "-out", "ca.crt"];
        run(
            dir,
            &[
                &["openssl", "req", "-x509"][..],
                NEW_EC_KEY,
                &subject,
                &files,
            ]
            .concat(),
        );
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// `NAME.crt`/`NAME.key` signed by the CA for server and client use,
    /// valid for `ips` (none: a pure client certificate).
    pub fn issue(&self, name: &str, ips: &[&str]) {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let mut e =
            String::from("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n");
        if ips.is_empty() {
            e.push_str("extendedKeyUsage=clientAuth\n");
        } else {
            e.push_str("extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=");
            let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
            e.push_str(&sans.join(","));
            e.push('\n');
        }
        std::fs::write(self.dir.join(&ext), e).unwrap();
        let subject = format!("/CN={name}");
        let files = ["-keyout", &key, "-out", &csr];
        let req = ["openssl", "req", "-subj", &subject];
        run(&self.dir, &[&req[..], NEW_EC_KEY, &files].concat());
        run(
            &self.dir,
            &[
                "openssl",
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        );
    }

    /// A file of the PKI.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A file of the PKI, as text.
    pub fn pem(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap()
    }

    /// kubeadm's pin of the CA, computed the way its documentation says.
    pub fn ca_pin(&self) -> String {
        let o = Command::new("sh")
            .arg("-c")
            .arg("openssl x509 -in ca.crt -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum")
            .current_dir(&self.dir)
            .output()
            .unwrap();
        let hex = String::from_utf8_lossy(&o.stdout);
        format!("sha256:{}", hex.split_whitespace().next().unwrap())
    }
}

/// How one etcd member is started.
pub struct MemberSpec<'a> {
    /// `--name`.
    pub name: &'a str,
    /// The host in the URLs it advertises (it listens on 127.0.0.1).
    pub advertise: &'a str,
    /// Its client port.
    pub client_port: u16,
    /// Its peer port.
    pub peer_port: u16,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// The PKI name of its server/peer certificate.
    pub cert: &'a str,
    /// `--heartbeat-interval` and `--election-timeout` (ms).
    pub timers_ms: (u32, u32),
}

/// An etcd member on this machine (killed when dropped).
pub struct EtcdMember {
    child: Option<Child>,
    /// `--name`.
    pub name: String,
    /// Its client port on 127.0.0.1.
    pub client_port: u16,
    /// Its log.
    pub log: PathBuf,
}

impl EtcdMember {
    /// Start a member (data in `dir/NAME`, log in `dir/NAME.log`); does
    /// not wait for it.
    pub fn spawn(pki: &Pki, dir: &Path, s: &MemberSpec) -> EtcdMember {
        let log = dir.join(format!("{}.log", s.name));
        let p = |f: &str| pki.path(f).display().to_string();
        let (crt, key) = (p(&format!("{}.crt", s.cert)), p(&format!("{}.key", s.cert)));
        let child = Command::new("etcd")
            .args(["--name", s.name])
            .arg("--data-dir")
            .arg(dir.join(s.name))
            .arg(format!(
                "--listen-client-urls=https://127.0.0.1:{}",
                s.client_port
            ))
            .arg(format!(
                "--advertise-client-urls=https://{}:{}",
                s.advertise, s.client_port
            ))
            .arg(format!(
                "--listen-peer-urls=https://127.0.0.1:{}",
                s.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=https://{}:{}",
                s.advertise, s.peer_port
            ))
            .arg(format!("--initial-cluster={}", s.initial_cluster))
            .args(["--initial-cluster-state", "new", "--enable-grpc-gateway"])
            .arg(format!("--heartbeat-interval={}", s.timers_ms.0))
            .arg(format!("--election-timeout={}", s.timers_ms.1))
            .args(["--cert-file", &crt, "--key-file", &key])
            .args(["--trusted-ca-file", &p("ca.crt"), "--client-cert-auth"])
            .args(["--peer-cert-file", &crt, "--peer-key-file", &key])
            .args([
                "--peer-trusted-ca-file",
                &p("ca.crt"),
                "--peer-client-cert-auth",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting etcd (Debian package etcd-server)");
        EtcdMember {
            child: Some(child),
            name: s.name.to_string(),
            client_port: s.client_port,
            log,
        }
    }

    /// Wait until `etcdctl endpoint health` succeeds (at most `limit`).
    pub fn wait_healthy(&self, pki: &Pki, limit: Duration) {
        let t = Instant::now();
        while etcdctl(pki, self.client_port, &["endpoint", "health"]).is_err() {
            assert!(
                t.elapsed() < limit,
                "etcd member {} did not become healthy in {}s:\n{}",
                self.name,
                limit.as_secs(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stop it at once (SIGKILL), as a crashed host's member.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of members `names` on 127.0.0.1 (server certificates
/// `member.crt` issued for 127.0.0.1, client certificate `client.crt`),
/// healthy.
pub fn etcd_cluster(pki: &Pki, dir: &Path, names: &[&str]) -> Vec<EtcdMember> {
    std::fs::create_dir_all(dir).unwrap();
    pki.issue("member", &["127.0.0.1"]);
    pki.issue("client", &[]);
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let initial = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, peer))| format!("{n}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<EtcdMember> = names
        .iter()
        .zip(&ports)
        .map(|(n, (client, peer))| {
            EtcdMember::spawn(
                pki,
                dir,
                &MemberSpec {
                    name: n,
                    advertise: "127.0.0.1",
                    client_port: *client,
                    peer_port: *peer,
                    initial_cluster: initial.clone(),
                    cert: "member",
                    timers_ms: (100, 1000),
                },
            )
        })
        .collect();
    for m in &members {
        m.wait_healthy(pki, Duration::from_secs(60));
    }
    members
}

/// etcdctl's arguments for 127.0.0.1:`port` with the test client
/// certificate, added to `cmd` (etcdctl, or a wrapper that runs it).
fn client_args<'a>(cmd: &'a mut Command, pki: &Pki, port: u16) -> &'a mut Command {
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://127.0.0.1:{port}"))
        .arg(format!("--cacert={}", pki.path("ca.crt").display()))
        .arg(format!("--cert={}", pki.path("client.crt").display()))
        .arg(format!("--key={}", pki.path("client.key").display()))
}

/// `etcdctl` against 127.0.0.1:`port` with the test client certificate
/// (`client.crt`).
pub fn etcdctl(pki: &Pki, port: u16, args: &[&str]) -> Result<String, String> {
    let o = client_args(&mut Command::new("etcdctl"), pki, port)
        .args(["--dial-timeout=5s", "--command-timeout=15s"])
        .args(args)
        .output()
        .map_err(|e| format!("running etcdctl (Debian package etcd-client): {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// What etcd's history (a watch from revision 1) shows of the keys below
/// `prefix`, read as slots: the most keys that existed at once, and how
/// many times one was created.
pub fn slot_history(pki: &Pki, port: u16, prefix: &str) -> (usize, usize) {
    // A watch never ends by itself: stopped after 5 s of replaying history.
    let o = client_args(Command::new("timeout").args(["5", "etcdctl"]), pki, port)
        .args(["watch", "--prefix", prefix, "--rev=1", "-w", "json"])
        .output()
        .expect("running etcdctl watch");
    let text = String::from_utf8_lossy(&o.stdout);
    let (mut held, mut most, mut takes) = (std::collections::BTreeSet::new(), 0, 0);
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        for e in v["Events"].as_array().into_iter().flatten() {
            let key = e["kv"]["key"].as_str().unwrap_or_default().to_string();
            if e["type"].as_i64() == Some(1) {
                held.remove(&key);
            } else if held.insert(key) {
                takes += 1;
            }
            most = most.max(held.len());
        }
    }
    (most, takes)
}

/// Jenkins' JUnit schema, as `scripts/install-deps` puts it.
pub const JUNIT_SCHEMA: &str = "/opt/atomicbuild-test-venv/share/junit-10.xsd";

/// Validate the JUnit XML at `path` against [`JUNIT_SCHEMA`] with xmllint.
pub fn junit_valid(path: &Path) -> Result<(), String> {
    if !Path::new(JUNIT_SCHEMA).is_file() {
        return Err(format!(
            "{JUNIT_SCHEMA} is missing: run scripts/install-deps"
        ));
    }
    let o = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", JUNIT_SCHEMA])
        .arg(path)
        .output()
        .map_err(|e| format!("xmllint (libxml2-utils): {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} does not validate against the JUnit schema:\n{}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// The SPDX project's validator, as `scripts/install-deps` installs it.
pub const PYSPDXTOOLS: &str = "/opt/atomicbuild-test-venv/bin/pyspdxtools";

/// Validate the SPDX document at `path` with the SPDX project's tools.
pub fn spdx_valid(path: &Path) -> Result<(), String> {
    let o = std::process::Command::new(PYSPDXTOOLS)
        .arg("--infile")
        .arg(path)
        .output()
        .map_err(|e| format!("{PYSPDXTOOLS} (run scripts/install-deps): {e}"))?;
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{} is not valid SPDX:\n{out}", path.display()))
    }
}

/// Serve `dir` over HTTP on 127.0.0.1 (GET only) from a thread.
pub fn serve_dir(dir: std::path::PathBuf) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let dir = dir.clone();
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/");
                let file = dir.join(path.trim_start_matches('/'));
                let resp = match (path.contains(".."), std::fs::read(&file)) {
                    (false, Ok(body)) if file.is_file() => {
                        let mut v = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        v.extend(body);
                        v
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = s.write_all(&resp);
            });
        }
    });
    port
}

/// A tmpfs mounted on a directory while the value lives (unmounted when
/// dropped): another file system than the cache, or a small one that fills.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (mount's syntax: `8m`, `2g`) on `dir`.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }

    /// Grow or shrink it.
    pub fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Flip one bit of the byte at `at` in `p`, in place (same size, same
/// inode): the damage a fault test plants in a cache.
pub fn flip_byte(p: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
}
