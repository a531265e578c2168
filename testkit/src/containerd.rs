//! A real containerd started by a test (Debian's, with its own root, state
//! and socket in a temporary directory; the CRI plugin off, so that it
//! needs nothing from the host), and `ctr` pointed at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The running daemon; killed when dropped.
pub struct Containerd {
    child: Child,
    /// What `containerd` and `ctr` run under (e.g. `nsenter` into a
    /// network namespace), empty for none.
    prefix: Vec<String>,
    /// Its socket.
    pub socket: PathBuf,
    /// The namespace `ctr` uses.
    pub namespace: String,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Containerd {
    /// Start one in `dir` (created), using `namespace`; waits (at most
    /// 30 s) until `ctr version` answers.
    pub fn start(dir: &Path, namespace: &str) -> Containerd {
        Containerd::start_under(dir, namespace, &[])
    }

    /// Like [`Containerd::start`], with `containerd` and every `ctr` run
    /// under `prefix` (such as `nsenter -t PID -n -m`).
    pub fn start_under(dir: &Path, namespace: &str, prefix: &[&str]) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        let child = command(&prefix, "containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (scripts/install-deps installs it)");
        let c = Containerd {
            child,
            prefix,
            socket: dir.join("c.sock"),
            namespace: namespace.to_string(),
        };
        let t = Instant::now();
        while !c.socket.exists() || c.ctr(&["version"]).status.code() != Some(0) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "containerd did not come up:\n{}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    /// `ctr ARGS` against this daemon and namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        command(&self.prefix, "ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", &self.namespace])
            .args(args)
            .output()
            .unwrap()
    }

    /// Image name → digest, as `ctr images ls` lists them.
    pub fn images(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.ctr(&["images", "ls"]).stdout)
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[2].to_string())
            })
            .collect()
    }
}

/// `program` under `prefix`.
fn command(prefix: &[String], program: &str) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}
