//! Provisioning: a validated [`Config`] applied under a root, as a flat list
//! of steps — preflight, hostname, users, files, registries, etcd, kubelet,
//! units, stamp.
//!
//! Preflight checks everything that can be checked without changing the
//! host (groups exist, certificates parse and match their keys, the
//! kubelet CA pin, the etcd cluster answers and trusts us), so most
//! failures happen before anything is written. Each step checks whether its
//! effect is already there, so a rerun after a failure is safe. The stamp
//! is written last.

pub mod etcd;
pub mod files;
pub mod kubelet;
mod materials;
mod plan;
pub mod services;
mod system;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use plan::plan;

use crate::config::{Config, Material};
use crate::error::{InStep, StepError};
use crate::fsutil::{self, under, Attrs};
use crate::retry::Retry;
use services::ServiceManager;

/// The stamp that makes the agent run once (under the root).
pub const STAMP: &str = "/var/lib/atomic-firstboot/done";

/// etcd's config file (also the drop-in's `ConditionPathExists=`): written
/// by the etcd step, read by a directly started etcd.
pub const ETCD_CONFIG_FILE: &str = "/etc/etcd/etcd.conf.yml";

/// Where and how to apply.
pub struct Context<'a> {
    /// The provisioning root (`/` on a host).
    pub root: PathBuf,
    /// Starts and enables units.
    pub services: &'a dyn ServiceManager,
    /// Bounds for every network wait.
    pub retry: Retry,
}

/// Whether the stamp exists under `root`.
pub fn is_done(root: &Path) -> bool {
    under(root, Path::new(STAMP)).exists()
}

/// What preflight found out, for the steps.
struct Checked {
    etcd_pki: Option<etcd::Pki>,
    kubelet_ca: Option<String>,
}

fn load(m: &Material, cfg: &Config, root: &Path) -> Result<Option<Vec<u8>>, StepError> {
    materials::load(m, root, &cfg.files).in_step("preflight", &m.field)
}

fn preflight(cfg: &Config, ctx: &Context) -> Result<Checked, StepError> {
    let root = &ctx.root;
    for (i, u) in cfg.users.iter().enumerate() {
        if let Some(g) = system::missing_groups(u, root).first() {
            let j = u.groups.iter().position(|x| x == g).unwrap_or(0);
            return Err(StepError::new(
                "preflight",
                format!("users[{i}].groups[{j}]"),
                &anyhow::anyhow!("group {g} does not exist on this host"),
            ));
        }
    }
    for (i, f) in cfg.files.iter().enumerate() {
        files::check_parents(&f.path, root).in_step("preflight", format!("files[{i}].path"))?;
    }
    for m in cfg.registries.iter().filter_map(|r| r.ca.as_ref()) {
        if let Some(pem) = load(m, cfg, root)? {
            crate::tls::parse_certs(&pem).in_step("preflight", &m.field)?;
        }
    }
    let mut etcd_pki = None;
    if let Some(e) = &cfg.etcd {
        let mats = [
            &e.ca,
            &e.client_cert,
            &e.client_key,
            &e.server_cert,
            &e.server_key,
            &e.peer_cert,
            &e.peer_key,
        ];
        let mut loaded = Vec::new();
        for m in mats {
            loaded.push(load(m, cfg, root)?);
        }
        if loaded.iter().all(Option::is_some) {
            let mut it = loaded.into_iter().flatten();
            let mut next = || it.next().unwrap_or_default();
            let pki = etcd::Pki {
                ca: next(),
                client_cert: next(),
                client_key: next(),
                server_cert: next(),
                server_key: next(),
                peer_cert: next(),
                peer_key: next(),
            };
            check_pki(e, &pki)?;
            etcd::preflight(e, &pki, &ctx.retry).in_step("preflight", etcd_field(e))?;
            etcd_pki = Some(pki);
        }
    }
    let mut kubelet_ca = None;
    if let Some(k) = &cfg.kubelet {
        let configured = match &k.ca {
            Some(m) => load(m, cfg, root)?,
            None => None,
        };
        if k.ca.is_none() || configured.is_some() {
            let ca = kubelet::resolve_ca(k, configured.as_deref(), &ctx.retry)
                .in_step("preflight", "kubelet.ca_cert_hash")?;
            kubelet_ca = Some(ca);
        }
    }
    Ok(Checked {
        etcd_pki,
        kubelet_ca,
    })
}

/// The field blamed for failures talking to the cluster.
fn etcd_field(e: &crate::config::Etcd) -> &'static str {
    match e.mode {
        crate::config::EtcdMode::Join { .. } => "etcd.endpoints",
        crate::config::EtcdMode::Bootstrap => "etcd.client_urls",
    }
}

fn check_pki(e: &crate::config::Etcd, p: &etcd::Pki) -> Result<(), StepError> {
    crate::tls::parse_certs(&p.ca).in_step("preflight", &e.ca.field)?;
    for (c, k, cm, km) in [
        (&p.client_cert, &p.client_key, &e.client_cert, &e.client_key),
        (&p.server_cert, &p.server_key, &e.server_cert, &e.server_key),
        (&p.peer_cert, &p.peer_key, &e.peer_cert, &e.peer_key),
    ] {
        crate::tls::parse_certs(c).in_step("preflight", &cm.field)?;
        crate::tls::check_pair(c, k).in_step("preflight", &km.field)?;
    }
    // Each certificate must be what etcd and its peers will accept.
    let tls = crate::tls::verify_client_cert;
    tls(&p.ca, &p.client_cert).in_step("preflight", &e.client_cert.field)?;
    tls(&p.ca, &p.peer_cert).in_step("preflight", &e.peer_cert.field)?;
    // Clients reach the advertised URLs, this host its own listener.
    for u in e.client_urls.iter().chain(&etcd::local_client_urls(e)) {
        crate::tls::verify_server_cert(&p.ca, &p.server_cert, &u.host)
            .in_step("preflight", &e.server_cert.field)?;
    }
    for u in &e.peer_urls {
        crate::tls::verify_server_cert(&p.ca, &p.peer_cert, &u.host)
            .in_step("preflight", &e.peer_cert.field)?;
    }
    Ok(())
}

/// Apply `cfg` under `ctx.root`, then write the stamp.
pub fn provision(cfg: &Config, ctx: &Context) -> Result<(), StepError> {
    let root = &ctx.root;
    let checked = preflight(cfg, ctx)?;
    if let Some(h) = &cfg.hostname {
        system::hostname(h, root).in_step("hostname", "hostname")?;
    }
    for (i, u) in cfg.users.iter().enumerate() {
        system::user(u, root).in_step("users", format!("users[{i}]"))?;
    }
    for (i, f) in cfg.files.iter().enumerate() {
        let field = match f.source {
            crate::config::FileSource::Url { .. } => format!("files[{i}].url"),
            crate::config::FileSource::Contents(_) => format!("files[{i}].contents"),
        };
        files::apply(f, root, &ctx.retry).in_step("files", field)?;
    }
    for (i, r) in cfg.registries.iter().enumerate() {
        registry(r, root).in_step("registries", format!("registries[{i}]"))?;
    }
    if let Some(e) = &cfg.etcd {
        let pki = match checked.etcd_pki {
            Some(p) => p,
            None => load_pki_late(e, root)?,
        };
        etcd::apply(e, &pki, root, ctx.services, &ctx.retry).in_step("etcd", etcd_field(e))?;
    }
    if let Some(k) = &cfg.kubelet {
        let ca = match checked.kubelet_ca {
            Some(ca) => ca,
            None => {
                let m =
                    k.ca.as_ref()
                        .expect("only a configured CA is resolved late");
                let pem = materials::load_now(m, root).in_step("kubelet", &m.field)?;
                kubelet::resolve_ca(k, Some(&pem), &ctx.retry)
                    .in_step("kubelet", "kubelet.ca_cert_hash")?
            }
        };
        kubelet::apply(k, &ca, root).in_step("kubelet", "kubelet")?;
    }
    for (j, u) in cfg.units.enable.iter().enumerate() {
        ctx.services
            .enable(u)
            .in_step("units", format!("units.enable[{j}]"))?;
    }
    for (j, u) in cfg.units.start.iter().enumerate() {
        ctx.services
            .start_no_block(u)
            .in_step("units", format!("units.start[{j}]"))?;
    }
    let stamp = format!(
        "provisioned by atomic-firstboot {}\n",
        env!("CARGO_PKG_VERSION")
    );
    fsutil::write(
        &under(root, Path::new(STAMP)),
        stamp.as_bytes(),
        Attrs::root(0o644),
    )
    .context("cannot write the stamp")
    .in_step("stamp", STAMP)?;
    Ok(())
}

/// Write one registry's settings under containerd's `certs.d`: containerd
/// reads them at each pull, so nothing needs restarting.
fn registry(r: &crate::config::Registry, root: &Path) -> anyhow::Result<()> {
    use common::registries::{self, CERTS_DIR};
    let mut s = r.settings.clone();
    if let Some(m) = &r.ca {
        let pem = materials::load_now(m, root)?;
        crate::tls::parse_certs(&pem)?;
        s.ca_pem = Some(String::from_utf8(pem).context("the CA is not text")?);
    }
    registries::write(&under(root, Path::new(CERTS_DIR)), &s)
}

/// etcd material that a `[[files]]` download provided: read after the files step.
fn load_pki_late(e: &crate::config::Etcd, root: &Path) -> Result<etcd::Pki, StepError> {
    let l = |m: &Material| materials::load_now(m, root).in_step("etcd", &m.field);
    let pki = etcd::Pki {
        ca: l(&e.ca)?,
        client_cert: l(&e.client_cert)?,
        client_key: l(&e.client_key)?,
        server_cert: l(&e.server_cert)?,
        server_key: l(&e.server_key)?,
        peer_cert: l(&e.peer_cert)?,
        peer_key: l(&e.peer_key)?,
    };
    check_pki(e, &pki).map_err(|mut err| {
        err.step = "etcd".into();
        err
    })?;
    Ok(pki)
}
