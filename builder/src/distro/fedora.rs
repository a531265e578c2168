//! Fedora (RPM) backend: dnf from Debian's `dnf` package.
//!
//! 1. Resolve with dnf's solver (its Python API, `dnf_resolve.py`) against
//!    the manifest's repositories only (`reposdir=` empty, the host's
//!    repositories never used), repo metadata signatures checked
//!    (`repo_gpgcheck`), weak dependencies off. With `--lock` the locked
//!    NEVRAs are resolved instead: a missing one is named.
//! 2. Download the resolved packages into the cache, addressed by the
//!    sha256 the repository metadata gives (the lock records it).
//! 3. Import the repositories' keys into the new root's rpmdb and install
//!    the downloaded files with `dnf install` (`localpkg_gpgcheck`: an
//!    unsigned or unknown-key package stops the build, named with its key).
//!
//! The rpmdb goes to `/usr/lib/sysimage/rpm` (Debian's rpm defaults to
//! `~/.rpmdb`; a private `HOME` with an `.rpmmacros` moves it).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::lock::{Lock, LockedPackage};
use super::spec::Base;
use super::{Backend, Install};
use crate::model::Package;
use crate::progress::StageProgress;
use common::cmd::Cmd;

/// Where the rpmdb lives in the image.
pub const RPMDB: &str = "usr/lib/sysimage/rpm";

const RESOLVE_PY: &str = include_str!("dnf_resolve.py");

/// Bump when the way an RPM root is installed changes.
const RECIPE: &str = "fedora-install-v1";

pub struct Fedora;

/// Private state for dnf and rpm: the config, a HOME whose `.rpmmacros`
/// puts the rpmdb into /usr, resolver state, fetched keys.
struct DnfEnv {
    conf: PathBuf,
    home: PathBuf,
    state: PathBuf,
    keys: PathBuf,
}

impl DnfEnv {
    fn new(base: &Base, lean: &crate::model::Lean, workdir: &Path) -> Result<DnfEnv> {
        let dir = workdir.join("dnf");
        fs::create_dir_all(dir.join("home"))?;
        let env = DnfEnv {
            conf: dir.join("dnf.conf"),
            home: dir.join("home"),
            state: dir.join("state"),
            keys: dir.join("keys"),
        };
        fs::write(
            env.home.join(".rpmmacros"),
            format!("%_dbpath /{RPMDB}\n{}", super::leave_out::rpm_macros(lean)),
        )?;
        let mut pinned = BTreeMap::new();
        for r in &base.repos {
            if let (Some(fpr), Some(k)) = (&r.fingerprint, &r.gpgkey) {
                let src = super::repos::KeySource::Url(k.clone());
                let form = super::repokey::Form::Armored;
                let key = super::repokey::pinned(&r.name, &src, fpr, &dir.join("pinned"), form)?;
                pinned.insert(r.name.clone(), format!("file://{}", key.display()));
            }
        }
        fs::write(&env.conf, dnf_conf(base, &pinned, lean))?;
        Ok(env)
    }

    fn cmd(&self, program: &str) -> Cmd {
        Cmd::new(program)
            .env("HOME", self.home.to_string_lossy().to_string())
            .env("LC_ALL", "C.UTF-8")
    }
}

/// dnf's configuration: only the manifest's repositories, strict, bounded
/// (`pinned`: repository → the checked local copy of its key).
fn dnf_conf(base: &Base, pinned: &BTreeMap<String, String>, lean: &crate::model::Lean) -> String {
    let mut s = String::from(
        "# Written by atomicbuild.\n[main]\nreposdir=/nonexistent\ngpgcheck=1\nlocalpkg_gpgcheck=1\n\
         install_weak_deps=0\nplugins=0\nstrict=1\nbest=1\nskip_if_unavailable=0\n\
         timeout=15\nretries=3\nminrate=1000\nkeepcache=0\n",
    );
    if !lean.docs {
        s.push_str("tsflags=nodocs\n");
    }
    for r in &base.repos {
        s.push_str(&format!("\n[{}]\nname={}\n", r.name, r.name));
        if let Some(u) = &r.baseurl {
            s.push_str(&format!("baseurl={u}\n"));
        }
        if let Some(u) = &r.metalink {
            s.push_str(&format!("metalink={u}\n"));
        }
        let check = if r.gpgcheck { 1 } else { 0 };
        s.push_str(&format!("gpgcheck={check}\nrepo_gpgcheck={check}\n"));
        if let Some(k) = pinned.get(&r.name).or(r.gpgkey.as_ref()) {
            s.push_str(&format!("gpgkey={k}\n"));
        }
    }
    s
}

/// One package as the resolver reports it.
#[derive(serde::Deserialize)]
struct Resolved {
    name: String,
    epoch: u64,
    version: String,
    release: String,
    arch: String,
    sha256: String,
    #[serde(default)]
    repo: String,
}

impl Resolved {
    fn evr(&self) -> String {
        format!("{}:{}-{}", self.epoch, self.version, self.release)
    }
}

/// `name-epoch:version-release.arch` of a locked package (dnf's NEVRA spec).
fn nevra(p: &LockedPackage) -> String {
    format!("{}-{}.{}", p.name, p.version, p.arch)
}

fn repo_urls(base: &Base) -> String {
    base.repos
        .iter()
        .map(|r| {
            format!(
                "{} ({})",
                r.name,
                r.baseurl.as_deref().or(r.metalink.as_deref()).unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turn the resolver's failure line into the error a user can act on.
fn resolve_error(base: &Base, stderr: &str, locked: bool) -> anyhow::Error {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("atomicbuild-dnf: "))
        .unwrap_or("")
        .to_string();
    let (kind, msg) = line.split_once(": ").unwrap_or(("", line.as_str()));
    match kind {
        "no match" if locked => anyhow::anyhow!(
            "the lock no longer resolves: the repositories do not have {msg} any more; build once without --lock to write a new lock"
        ),
        "no match" => anyhow::anyhow!(
            "no package {msg} in the repositories {} (check packages.include)",
            repo_urls(base)
        ),
        "unsolvable" => anyhow::anyhow!("the package set cannot be installed: {msg}"),
        "repo" => anyhow::anyhow!(
            "cannot read the repository metadata ({msg}); repositories: {}; librepo tried each URL 4 times",
            repo_urls(base)
        ),
        "download" => anyhow::anyhow!("downloading packages: {msg}"),
        "key" => anyhow::anyhow!("{msg}"),
        _ => anyhow::anyhow!("resolving the package set with dnf failed:\n{stderr}"),
    }
}

/// Which key signed an RPM file, as rpm reports it.
fn signature_of(file: &Path) -> String {
    Cmd::new("rpm")
        .args(["-qp", "--nosignature", "--qf"])
        .arg("%|RSAHEADER?{%{RSAHEADER:pgpsig}}:{%|DSAHEADER?{%{DSAHEADER:pgpsig}}:{unsigned}|}|")
        .arg(file)
        .output_string()
        .unwrap_or_else(|_| "unknown".into())
}

/// From dnf's output, the packages whose signature check failed.
fn gpg_failures(out: &str) -> Vec<String> {
    let mut v = Vec::new();
    for l in out.lines() {
        let name = if let Some(r) = l.strip_prefix("Public key for ") {
            r.split(" is not installed").next()
        } else if let Some(r) = l.strip_prefix("Package ") {
            r.split(" is not signed")
                .next()
                .filter(|_| l.contains(" is not signed"))
        } else {
            None
        };
        if let Some(n) = name {
            v.push(n.trim().to_string());
        }
    }
    v
}

/// From dnf's output, packages whose scriptlets failed (dnf still exits 0).
fn scriptlet_failures(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let i = l.find("scriptlet in rpm package ")?;
            l.starts_with("Error in ").then(|| {
                l[i + "scriptlet in rpm package ".len()..]
                    .trim()
                    .to_string()
            })
        })
        .collect()
}

impl Fedora {
    fn resolve(
        &self,
        base: &Base,
        env: &DnfEnv,
        specs: &[String],
        download: &Path,
        locked: bool,
    ) -> Result<Vec<Resolved>> {
        let script = env.state.with_extension("py");
        fs::create_dir_all(&env.state)?;
        fs::write(&script, RESOLVE_PY)?;
        let out = env
            .cmd("/usr/bin/python3")
            .arg(&script)
            .arg(&env.conf)
            .arg(&base.release)
            .arg(&env.state)
            .arg(&env.keys)
            .arg(download)
            .args(specs)
            .output_full()
            .context("running dnf's resolver (is python3-dnf installed?)")?;
        if !out.status.success() {
            return Err(resolve_error(base, &out.stderr, locked));
        }
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("resolver output {l:?}")))
            .collect()
    }
}

impl Fedora {
    /// Resolve the set (the lock's NEVRAs when given) and the lock of it.
    fn resolve_lock(&self, req: &Install, env: &DnfEnv, rpms: &Path) -> Result<Vec<Resolved>> {
        let specs: Vec<String> = match req.lock {
            Some(l) => l.packages.iter().map(nevra).collect(),
            None => req.packages.to_vec(),
        };
        self.resolve(req.base, env, &specs, rpms, req.lock.is_some())
    }

    /// Import the repositories' keys into the new root; the key files.
    fn import_keys(env: &DnfEnv, root: &Path) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(root.join(RPMDB))?;
        let mut keys: Vec<PathBuf> = match fs::read_dir(&env.keys) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        keys.sort();
        for k in &keys {
            env.cmd("rpm")
                .arg(format!("--root={}", root.display()))
                .arg("--import")
                .arg(k)
                .run()
                .with_context(|| format!("importing the repository key {}", k.display()))?;
        }
        Ok(keys)
    }

    /// `dnf install` of the downloaded files, failing on a bad signature
    /// (named with its key) or a failed scriptlet.
    fn dnf_install(
        env: &DnfEnv,
        req: &Install,
        resolved: &[Resolved],
        rpms: &Path,
        keys: &[PathBuf],
    ) -> Result<()> {
        let root = req.root;
        // Cache file name (what dnf names in its messages) -> (NEVRA, path).
        let files: BTreeMap<String, (String, PathBuf)> = resolved
            .iter()
            .map(|p| {
                let name = format!("{}.rpm", p.sha256);
                let nevra = format!("{}-{}.{}", p.name, p.evr(), p.arch);
                (name.clone(), (nevra, rpms.join(name)))
            })
            .collect();
        // kernel-core's scriptlets run kernel-install, whose dracut and
        // loader-entry plugins would build an initramfs and boot entries
        // now; the initramfs stage builds it once, OSTree writes the entries.
        let masks = mask_kernel_install(root)?;
        let out = env
            .cmd("dnf")
            .args(["-y", "-c"])
            .arg(&env.conf)
            .arg(format!("--installroot={}", root.display()))
            .arg(format!("--releasever={}", req.base.release))
            .args(["--disablerepo=*", "install"])
            .args(files.values().map(|(_, f)| f))
            .env("SOURCE_DATE_EPOCH", super::INSTALL_EPOCH.to_string())
            .env("KERNEL_INSTALL_BYPASS", "1")
            .output_full()
            .context("running dnf")?;
        unmask_kernel_install(root, &masks)?;
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let gpg = gpg_failures(&text);
        if !gpg.is_empty() {
            let named: Vec<String> = gpg
                .iter()
                .map(|n| match files.get(n) {
                    Some((nevra, f)) => format!("{nevra} (signature: {})", signature_of(f)),
                    None => n.clone(),
                })
                .collect();
            bail!(
                "package signature check failed for {}: not signed by a key of its repository ({}); nothing was committed",
                named.join(", "),
                keys.iter()
                    .map(|k| k.file_name().unwrap_or_default().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !out.status.success() {
            bail!("dnf install failed:\n{}", common::cmd::tail(&text, 30));
        }
        let bad = scriptlet_failures(&text);
        if !bad.is_empty() {
            bail!(
                "a package scriptlet failed in {}; the root would be half set up:\n{}",
                bad.join(", "),
                common::cmd::tail(&text, 20)
            );
        }
        Ok(())
    }
}

impl Backend for Fedora {
    fn key_parts(&self, base: &Base) -> Vec<String> {
        let mut v = vec![RECIPE.to_string(), base.release.clone(), RESOLVE_PY.into()];
        for r in &base.repos {
            v.push(format!(
                "{}|{:?}|{:?}|{:?}|{}|{:?}",
                r.name, r.baseurl, r.metalink, r.gpgkey, r.gpgcheck, r.fingerprint
            ));
        }
        v
    }

    fn install(&self, req: &Install, stage: &StageProgress) -> Result<Lock> {
        let (base, root) = (req.base, req.root);
        let env = DnfEnv::new(base, req.lean, req.scratch)?;
        let rpms = req
            .downloads
            .join("rpms")
            .join(format!("fedora-{}", base.release));
        stage.message("resolving the package set with dnf");
        let resolved = self.resolve_lock(req, &env, &rpms)?;
        let new_lock = Lock {
            version: super::lock::LOCK_VERSION,
            distro: "fedora".into(),
            release: base.release.clone(),
            packages: resolved
                .iter()
                .map(|p| LockedPackage {
                    name: p.name.clone(),
                    version: p.evr(),
                    arch: p.arch.clone(),
                    sha256: p.sha256.clone(),
                    origin: p.repo.clone(),
                })
                .collect(),
        };
        if let Some(l) = req.lock {
            l.check_installed(&new_lock)
                .context("the repositories resolve the lock to a different set")?;
        }
        stage.message(&format!("installing {} packages", resolved.len()));
        let keys = Self::import_keys(&env, root)?;
        Self::dnf_install(&env, req, &resolved, &rpms, &keys)?;
        finish_root(root)?;
        // Checksums are not in the rpmdb; check_installed compares versions.
        let installed = Lock {
            packages: self
                .package_list(root)?
                .into_iter()
                .map(|p| LockedPackage {
                    name: p.name,
                    version: p.version,
                    arch: p.arch,
                    sha256: String::new(),
                    origin: String::new(),
                })
                .collect(),
            ..new_lock.clone()
        };
        new_lock
            .check_installed(&installed)
            .context("dnf installed a different set than it resolved")?;
        Ok(new_lock)
    }

    fn left_out(&self, req: &Install, _lock: &Lock) -> Result<Vec<crate::model::Saving>> {
        let out = Cmd::new("rpm")
            .arg(format!("--root={}", req.root.display()))
            .arg(format!("--dbpath=/{RPMDB}"))
            .args(["-qa", "--qf", super::leave_out::RPM_FILES_QUERY])
            .output_string()
            .context("listing the files rpm left out")?;
        Ok(super::leave_out::rpm_savings(&out, req.lean))
    }

    fn package_list(&self, root: &Path) -> Result<Vec<Package>> {
        let out = Cmd::new("rpm")
            .arg(format!("--root={}", root.display()))
            .arg(format!("--dbpath=/{RPMDB}"))
            .args(["-qa", "--qf"])
            .arg(
                "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SIZE}\\t%{SOURCERPM}\\n",
            )
            .output_string()
            .context("listing installed packages with rpm")?;
        let mut v = super::parse_package_list(&out, 1);
        v.retain(|p| p.name != "gpg-pubkey");
        // The fifth column was the source rpm's file name.
        for p in &mut v {
            if let Some((name, version)) = super::split_source_rpm(&p.source) {
                (p.source, p.source_version) = (name, version);
            }
        }
        Ok(v)
    }
}

/// kernel-install plugins masked while packages install (a link to
/// /dev/null in /etc/kernel/install.d masks the plugin of that name).
const KERNEL_INSTALL_PLUGINS: &[&str] = &[
    "50-dracut.install",
    "51-dracut-rescue.install",
    "90-loaderentry.install",
    "90-uki-copy.install",
    "92-tuned.install",
];

fn mask_kernel_install(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("etc/kernel/install.d");
    fs::create_dir_all(&dir)?;
    let mut made = Vec::new();
    for p in KERNEL_INSTALL_PLUGINS {
        let l = dir.join(p);
        if fs::symlink_metadata(&l).is_err() {
            std::os::unix::fs::symlink("/dev/null", &l)?;
            made.push(l);
        }
    }
    Ok(made)
}

fn unmask_kernel_install(root: &Path, masks: &[PathBuf]) -> Result<()> {
    for l in masks {
        fs::remove_file(l).with_context(|| format!("removing {}", l.display()))?;
    }
    // Directories made for the masks only.
    for d in ["etc/kernel/install.d", "etc/kernel"] {
        let _ = fs::remove_dir(root.join(d));
    }
    Ok(())
}

/// What dnf and rpm leave in the root that is not the system: dnf's
/// cache, history and logs, gpg-agents of its repo keyrings, the rpmdb's
/// write-ahead log (a read-only /usr cannot replay it).
fn finish_root(root: &Path) -> Result<()> {
    let pubrings = Cmd::new("find")
        .arg(root)
        .args(["-type", "d", "-name", "pubring"])
        .output_string()
        .unwrap_or_default();
    for d in pubrings.lines() {
        let _ = Cmd::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", d)
            .run();
    }
    for d in ["var/cache/dnf", "var/lib/dnf", "var/log"] {
        let p = root.join(d);
        if p.exists() {
            crate::fsutil::empty_dir(&p)?;
        }
    }
    let db = root.join(RPMDB).join("rpmdb.sqlite");
    if db.exists() {
        Cmd::new("/usr/bin/python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=DELETE'); c.close()",
            ])
            .arg(&db)
            .run()
            .context("closing the rpmdb's write-ahead log")?;
    }
    // Empty directories dnf made for itself (a dnf package would fill them).
    for d in ["etc/dnf/modules.d", "etc/dnf"] {
        let _ = fs::remove_dir(root.join(d));
    }
    for f in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal", ".rpm.lock"] {
        let _ = fs::remove_file(root.join(RPMDB).join(f));
    }
    // Fedora keeps /var/lib/rpm as a link to the database in /usr.
    let var_rpm = root.join("var/lib/rpm");
    if fs::symlink_metadata(&var_rpm).is_err() {
        fs::create_dir_all(root.join("var/lib"))?;
        std::os::unix::fs::symlink(format!("../../{RPMDB}"), &var_rpm)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnf_messages_name_the_packages() {
        let out = "Public key for fx-rogue-1.0-1.noarch.rpm is not installed. Failing package is: fx-rogue-1.0-1.noarch\n\
                   Package fx-base-1.0-1.noarch.rpm is not signed\nError: GPG check FAILED\n";
        assert_eq!(
            gpg_failures(out),
            vec!["fx-rogue-1.0-1.noarch.rpm", "fx-base-1.0-1.noarch.rpm"]
        );
        let s = "Error in POSTIN scriptlet in rpm package fx-badpost\nerror: lua script failed\n";
        assert_eq!(scriptlet_failures(s), vec!["fx-badpost"]);
        assert!(scriptlet_failures("Package fx installed\n").is_empty());
    }

    #[test]
    fn lock_nevra_is_what_dnf_accepts() {
        let p = LockedPackage {
            name: "fx-app".into(),
            version: "2:0.5-3".into(),
            arch: "noarch".into(),
            sha256: String::new(),
            origin: String::new(),
        };
        assert_eq!(nevra(&p), "fx-app-2:0.5-3.noarch");
    }
}
