//! A real container registry started by a test: Debian's `docker-registry`
//! (distribution v2) on 127.0.0.1, serving TLS with a certificate from a
//! test [`crate::Pki`] and requiring a login from an htpasswd file (bcrypt,
//! made by `htpasswd -B`). Its access log shows what was fetched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Pki;

/// The running registry; killed when dropped.
pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as image references name it.
    pub host: String,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Registry {
    /// Start one in `dir` (created) with the certificate `pki` issued as
    /// `NAME` for `ips` (127.0.0.1 among them), letting in `user` with
    /// `password`; waits (at most 30 s) until it answers.
    pub fn start(dir: &Path, pki: &Pki, name: &str, user: &str, password: &str) -> Registry {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let o = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (apache2-utils; scripts/install-deps installs it)");
        assert!(o.status.success());
        std::fs::write(dir.join("htpasswd"), o.stdout).unwrap();
        let port = crate::free_port();
        let d = dir.display();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n\
             http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n    key: {key}\n\
             auth:\n  htpasswd:\n    realm: atomicbuild-test\n    path: {d}/htpasswd\n",
            crt = pki.path(&format!("{name}.crt")).display(),
            key = pki.path(&format!("{name}.key")).display(),
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = dir.join("registry.log");
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("docker-registry (scripts/install-deps installs it)");
        let r = Registry {
            child: Some(child),
            host: format!("127.0.0.1:{port}"),
            log,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "docker-registry did not come up:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    /// The registry's log so far (its access log among it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
