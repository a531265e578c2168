//! The first-boot half of the boot test: certificates made with openssl, a
//! real etcd on this machine's 127.0.0.1 (the guests see it as 10.0.2.2
//! through QEMU user networking), the agent configs passed by fw_cfg, and
//! the checks made from this side with `etcdctl` while the guests run.
//!
//! Addresses: a guest reaches this machine's 127.0.0.1:P as 10.0.2.2:P;
//! this machine reaches a guest's port G as 127.0.0.1:F through
//! `hostfwd`. So the etcd here listens on 127.0.0.1 and advertises
//! 10.0.2.2; a guest listens on 0.0.0.0 and advertises 127.0.0.1:F.
//! etcd checks a peer's client certificate against the address the
//! connection comes from: the guest sees this side as 10.0.2.2, this side
//! sees the guest as 127.0.0.1, hence the certificates' IP SANs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use testkit::{etcdctl, free_port, Pki};

/// etcd on this machine: a single-member cluster the UEFI guest joins.
pub struct HostEtcd {
    _member: testkit::EtcdMember,
    pub client_port: u16,
    pub log: PathBuf,
}

/// Slow members (TCG guests on two cores) need patient raft timers; the
/// guests get the same through their config.
pub const HEARTBEAT_MS: u32 = 500;
pub const ELECTION_MS: u32 = 5000;

impl HostEtcd {
    pub fn start(pki: &Pki, dir: &Path) -> HostEtcd {
        let (client_port, peer_port) = (free_port(), free_port());
        let member = testkit::EtcdMember::spawn(
            pki,
            dir,
            &testkit::MemberSpec {
                name: "host",
                advertise: "10.0.2.2",
                client_port,
                peer_port,
                initial_cluster: format!("host=https://10.0.2.2:{peer_port}"),
                cert: "host",
                timers_ms: (HEARTBEAT_MS, ELECTION_MS),
            },
        );
        member.wait_healthy(pki, Duration::from_secs(60));
        HostEtcd {
            log: member.log.clone(),
            client_port,
            _member: member,
        }
    }
}

/// One provisioned guest's part: its name, forwarded ports and
/// expectations. It joins the host's etcd.
pub struct Guest {
    /// etcd member name, also in the hostname.
    pub name: String,
    /// 127.0.0.1 ports forwarded to the guest's 2379 and 2380.
    pub client_port: u16,
    pub peer_port: u16,
    /// More files the agent writes: (path, contents).
    pub files: Vec<(String, String)>,
    /// More user data, appended (tables such as `[[registries]]`).
    pub extra: String,
}

/// The second login user the agent creates, and its key.
pub const FB_USER: &str = "ops";
pub const FB_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXDDsG6oVZb1cFI2R0Pp0a81S7JfFSPmP3P2JWl9nKm ops@atomicbuild-test";

impl Guest {
    pub fn new(name: &str) -> Guest {
        Guest {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            files: Vec::new(),
            extra: String::new(),
        }
    }

    pub fn hostname(&self) -> String {
        format!("abtest-{}", self.name)
    }

    pub fn forward(&self) -> Vec<(u16, u16)> {
        vec![(self.client_port, 2379), (self.peer_port, 2380)]
    }

    /// The agent's config for this guest: hostname, a user with a key, a
    /// file, etcd (join the host's cluster) and the
    /// kubelet's bootstrap files.
    pub fn config(&self, pki: &Pki, host_client_port: u16) -> String {
        pki.issue(&self.name, &["127.0.0.1", "10.0.2.15"]);
        let mode =
            format!("mode = \"join\"\nendpoints = [\"https://10.0.2.2:{host_client_port}\"]");
        let files: String = self
            .files
            .iter()
            .map(|(p, c)| format!("\n[[files]]\npath = \"{p}\"\ncontents = \"\"\"\n{c}\"\"\"\n"))
            .collect();
        format!(
            r#"version = 1
hostname = "{hostname}"
{files}

[[users]]
name = "{FB_USER}"
groups = ["sudo"]
ssh_authorized_keys = ["{FB_KEY}"]

# Keeps the test VM running after its checks, for the checks from outside.
[[files]]
path = "/etc/atomicbuild-test/hold"
contents = "hold\n"

[etcd]
{mode}
name = "{name}"
peer_urls = ["https://127.0.0.1:{peer}"]
client_urls = ["https://127.0.0.1:{client}"]
listen_peer_urls = ["https://0.0.0.0:2380"]
listen_client_urls = ["https://0.0.0.0:2379"]
heartbeat_interval_ms = {HEARTBEAT_MS}
election_timeout_ms = {ELECTION_MS}
ca = """
{ca}"""
cert = """
{client_crt}"""
key = """
{client_key}"""
server_cert = """
{crt}"""
server_key = """
{key}"""

[kubelet]
api_server = "https://10.0.2.2:6443"
bootstrap_token = "abcdef.0123456789abcdef"
ca_cert_hash = "{pin}"
ca = """
{ca}"""
{extra}"#,
            extra = self.extra,
            hostname = self.hostname(),
            name = self.name,
            peer = self.peer_port,
            client = self.client_port,
            ca = pki.pem("ca.crt"),
            client_crt = pki.pem("client.crt"),
            client_key = pki.pem("client.key"),
            crt = pki.pem(&format!("{}.crt", self.name)),
            key = pki.pem(&format!("{}.key", self.name)),
            pin = pki.ca_pin(),
        )
    }

    /// Checks from this side while the guest runs; returns every failure:
    /// the host's cluster has two voting members, and data written on
    /// either side is read on the other.
    pub fn check_from_host(&self, pki: &Pki, host_port: u16) -> Vec<String> {
        let mut bad = Vec::new();
        let members = match etcdctl(pki, host_port, &["member", "list", "-w", "json"]) {
            Ok(j) => serde_json::from_str::<serde_json::Value>(&j).unwrap_or_default(),
            Err(e) => {
                return vec![format!("{}: member list failed: {e}", self.name)];
            }
        };
        let members = members["members"].as_array().cloned().unwrap_or_default();
        let mut names: Vec<String> = members
            .iter()
            .map(|m| m["name"].as_str().unwrap_or("").to_string())
            .collect();
        names.sort();
        let mut want = vec![self.name.clone(), "host".into()];
        want.sort();
        if names != want {
            bad.push(format!(
                "{}: members should be {want:?}, got {members:?}",
                self.name
            ));
        }
        if let Some(l) = members.iter().find(|m| m["isLearner"] == true) {
            bad.push(format!("{}: a member is still a learner: {l}", self.name));
        }
        eprintln!(
            "[{}] etcd members seen from this side: {}",
            self.name,
            names.join(", ")
        );
        // Data across members: written on one port, read (serializable:
        // from that member's own copy) on the other.
        let nonce = format!("{}-{}", self.name, std::process::id());
        let pairs = [
            (host_port, self.client_port, "host->guest"),
            (self.client_port, host_port, "guest->host"),
        ];
        for (from, to, what) in pairs {
            let key = format!("abtest/{what}");
            if let Err(e) = etcdctl(pki, from, &["put", &key, &nonce]) {
                bad.push(format!("{}: put {key}: {e}", self.name));
                continue;
            }
            let t = Instant::now();
            let got = loop {
                let g = etcdctl(
                    pki,
                    to,
                    &["get", &key, "--print-value-only", "--consistency=s"],
                );
                match g {
                    Ok(v) if v.trim() == nonce => break Ok(()),
                    other if t.elapsed() > Duration::from_secs(60) => break Err(other),
                    _ => std::thread::sleep(Duration::from_secs(1)),
                }
            };
            if let Err(g) = got {
                bad.push(format!(
                    "{}: {key} written as {nonce:?} was not read back on the other side within 60 s: {g:?}",
                    self.name
                ));
            }
        }
        bad
    }
}
