//! The network clients the on-host agents share (`atomic-firstboot` and
//! `atomic-update`): HTTP/1.1 over rustls with deadlines ([`http`]),
//! certificate handling ([`tls`], [`x509`]), bounded retries ([`retry`])
//! and a client for etcd's v3 JSON gateway ([`etcd`]). No async runtime and
//! no HTTP framework: the agents ship in every image and stay small.
#![deny(missing_docs)]

pub mod etcd;
pub mod http;
pub mod retry;
pub mod tls;
pub mod x509;

/// A progress line on stdout (the journal), prefixed with the program's
/// name as the agents print theirs.
pub fn log(msg: &str) {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent".into());
    println!("{name}: {msg}");
}
