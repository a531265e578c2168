//! Test support: certificates made with openssl, a tiny HTTP server on
//! 127.0.0.1, and running the agent binary.
#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Run openssl, panicking with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key algorithm for generated certificates.
#[derive(Clone, Copy, Debug)]
pub enum Alg {
    /// EC P-256.
    Ec,
    /// RSA 2048.
    Rsa,
}

fn newkey(alg: Alg) -> Vec<&'static str> {
    match alg {
        Alg::Ec => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Alg::Rsa => vec!["-newkey", "rsa:2048"],
    }
}

/// A certificate and its key on disk.
#[derive(Clone, Debug)]
pub struct Cert {
    /// PEM certificate.
    pub crt: PathBuf,
    /// PEM key.
    pub key: PathBuf,
}

impl Cert {
    /// The certificate's PEM text.
    pub fn crt_pem(&self) -> String {
        std::fs::read_to_string(&self.crt).unwrap()
    }
    /// The key's PEM text.
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).unwrap()
    }
}

/// A self-signed CA named `name` in `dir`.
pub fn ca(dir: &Path, name: &str, alg: Alg) -> Cert {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    let mut args = vec!["req", "-x509"];
    args.extend(newkey(alg));
    let subj = format!("/CN={name}");
    args.extend([
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subj,
        "-keyout",
        &key,
        "-out",
        &crt,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
    Cert {
        crt: dir.join(crt),
        key: dir.join(key),
    }
}

/// A leaf signed by `ca`, valid for server and client auth, with IP SANs.
pub fn leaf(dir: &Path, ca: &Cert, name: &str, ips: &[&str], alg: Alg) -> Cert {
    let (crt, key, csr, ext) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    let mut args = vec!["req", "-new"];
    args.extend(newkey(alg));
    let subj = format!("/CN={name}");
    args.extend(["-nodes", "-subj", &subj, "-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    let mut ext_text = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n".to_string();
    if !ips.is_empty() {
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        ext_text.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    std::fs::write(dir.join(&ext), ext_text).unwrap();
    let (ca_crt, ca_key) = (ca.crt.to_string_lossy(), ca.key.to_string_lossy());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    );
    Cert {
        crt: dir.join(crt),
        key: dir.join(key),
    }
}

/// What openssl says the CA pin is:
/// `openssl x509 -pubkey -noout -in C | openssl pkey -pubin -outform DER | sha256sum`.
pub fn openssl_pin(cert: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform DER | sha256sum",
            cert.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// The agent binary.
pub fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atomic-firstboot"))
}

/// Run the agent with `args`, returning its output.
pub fn run_agent(args: &[&str]) -> Output {
    agent().args(args).output().expect("the agent runs")
}

/// `atomic-firstboot run` with `cfg` (written to `dir/config.toml`) under
/// `root`, services started directly, retries bounded at 5 s.
pub fn run_config(dir: &Path, root: &Path, cfg: &str, extra: &[&str]) -> Output {
    let f = dir.join("config.toml");
    std::fs::write(&f, cfg).unwrap();
    let mut args = vec![
        "run",
        "--config",
        f.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ];
    args.extend(["--service-manager", "direct", "--retry-secs", "5"]);
    args.extend(extra);
    run_agent(&args)
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A request the test server received.
#[derive(Clone, Debug)]
pub struct Req {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lowercase header names and values.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Req {
    /// Header value by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response for the test server to send.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// Send chunked instead of Content-Length.
    pub chunked: bool,
}

impl Resp {
    /// A Content-Length response.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Resp {
        Resp {
            status,
            body: body.into(),
            chunked: false,
        }
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 (one thread, one request per connection).
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    log: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

fn read_req(s: &mut TcpStream) -> Option<Req> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

impl Server {
    /// Serve `handler` until dropped.
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                let Some(req) = read_req(&mut s) else {
                    continue;
                };
                log2.lock().unwrap().push(req.clone());
                let resp = handler(&req);
                let mut out =
                    format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status).into_bytes();
                if resp.chunked {
                    out.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                    for c in resp.body.chunks(7) {
                        out.extend(format!("{:x}\r\n", c.len()).as_bytes());
                        out.extend(c);
                        out.extend(b"\r\n");
                    }
                    out.extend(b"0\r\nX-Trailer: t\r\n\r\n");
                } else {
                    out.extend(format!("Content-Length: {}\r\n\r\n", resp.body.len()).as_bytes());
                    out.extend(&resp.body);
                }
                let _ = s.write_all(&out);
            }
        });
        Server {
            url: format!("http://127.0.0.1:{port}"),
            log,
            stop,
            port,
            thread: Some(thread),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A 127.0.0.1 port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
