//! This host's OSTree deployments, through libostree: what is booted,
//! staged and kept for rollback, pulling from the remote (signatures are
//! checked by libostree, as the remote's `gpg-verify` says), staging a
//! commit, and making a deployment the default.

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::glib;

/// One deployment, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// Its commit.
    pub commit: String,
    /// The commit's `version`.
    pub version: String,
    /// `commit.serial`.
    pub id: String,
}

/// The deployments that matter.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// What runs now.
    pub booted: Option<Dep>,
    /// What the next boot runs by default (the first deployment).
    pub default: Option<Dep>,
    /// A deployment waiting to be finalized at shutdown.
    pub staged: Option<Dep>,
    /// The one kept to fall back to.
    pub rollback: Option<Dep>,
}

/// The host.
pub struct Host {
    sysroot: ostree::Sysroot,
}

fn none() -> Option<&'static gio::Cancellable> {
    None
}

impl Host {
    /// The booted system's sysroot (`/`).
    pub fn open() -> Result<Host> {
        let sysroot = ostree::Sysroot::new_default();
        sysroot.load(none()).context("loading the OSTree sysroot")?;
        if sysroot.booted_deployment().is_none() {
            bail!("this system was not booted from an OSTree deployment");
        }
        Ok(Host { sysroot })
    }

    /// Run `f` holding the sysroot's lock, as `ostree admin` does, so a
    /// command run by hand meanwhile waits instead of racing.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.sysroot.lock().context("locking the OSTree sysroot")?;
        let r = f();
        self.sysroot.unlock();
        r
    }

    fn reload(&self) -> Result<()> {
        self.sysroot
            .load(none())
            .context("reloading the OSTree sysroot")
    }

    /// The `version` of `commit` ("" if it has none or is not here).
    pub fn version(&self, commit: &str) -> String {
        let repo = self.sysroot.repo();
        let Ok((v, _)) = repo.load_commit(commit) else {
            return String::new();
        };
        let meta = glib::VariantDict::new(Some(&v.child_value(0)));
        meta.lookup::<String>("version")
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn dep(&self, d: &ostree::Deployment) -> Dep {
        let commit = d.csum().to_string();
        Dep {
            version: self.version(&commit),
            id: format!("{}.{}", &commit[..12.min(commit.len())], d.deployserial()),
            commit,
        }
    }

    /// What is booted, default, staged and kept.
    pub fn status(&self) -> Status {
        let deps = self.sysroot.deployments();
        let booted = self.sysroot.booted_deployment();
        let staged = self.sysroot.staged_deployment();
        // As libostree counts it: the rollback deployment follows the
        // booted one (those before it are pending).
        let after_booted = booted
            .as_ref()
            .and_then(|b| deps.iter().position(|d| d.equal(b)))
            .map_or(0, |i| i + 1);
        let rollback = deps[after_booted.min(deps.len())..]
            .iter()
            .find(|d| !staged.as_ref().is_some_and(|s| d.equal(s)))
            .map(|d| self.dep(d));
        Status {
            booted: booted.as_ref().map(|d| self.dep(d)),
            default: deps.first().map(|d| self.dep(d)),
            staged: staged.as_ref().map(|d| self.dep(d)),
            rollback,
        }
    }

    /// Point the remote at `url` (kept in /ostree/repo/config), if it is
    /// not there already.
    pub fn set_remote_url(&self, remote: &str, url: &str) -> Result<()> {
        let repo = self.sysroot.repo();
        if repo.remote_get_url(remote).ok().as_deref() == Some(url) {
            return Ok(());
        }
        let cfg = repo.copy_config();
        cfg.set_string(&format!("remote \"{remote}\""), "url", url);
        repo.write_config(&cfg)
            .with_context(|| format!("setting the URL of remote {remote}"))?;
        repo.reload_config(none())
            .context("reloading the repository's configuration")
    }

    /// Pull `remote:ref` (only its commit object with `commit_only`); the
    /// commit it points at and the bytes transferred.
    pub fn pull(&self, remote: &str, ref_: &str, commit_only: bool) -> Result<(String, u64)> {
        let repo = self.sysroot.repo();
        let opts = glib::VariantDict::new(None);
        opts.insert("refs", vec![ref_.to_string()]);
        if commit_only {
            opts.insert("flags", ostree::RepoPullFlags::COMMIT_ONLY.bits() as i32);
        }
        let progress = ostree::AsyncProgress::new();
        let pulled = repo
            .pull_with_options(remote, &opts.end(), Some(&progress), none())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("pulling {remote}:{ref_}"));
        // Clear the progress' pending sources from the main context; left
        // there, they fire on the freed object during the next pull.
        progress.finish();
        pulled?;
        let commit = repo
            .resolve_rev(&format!("{remote}:{ref_}"), false)?
            .context("the pulled ref resolves to nothing")?
            .to_string();
        Ok((commit, progress.uint64("bytes-transferred")))
    }

    /// Stage `commit` (from the booted deployment's origin and /etc), to be
    /// finalized when the system shuts down.
    pub fn stage(&self, commit: &str) -> Result<Dep> {
        let booted = self
            .sysroot
            .booted_deployment()
            .context("no booted deployment")?;
        // An empty list here is not "inherit": libostree would stage the
        // deployment with no kernel arguments at all (no root=, no console=),
        // so pass the booted ones on explicitly.
        let options = booted
            .bootconfig()
            .and_then(|b| b.get("options"))
            .context("the booted deployment has no kernel arguments")?;
        let kargs = inherited_kargs(&options);
        let kargs: Vec<&str> = kargs.iter().map(String::as_str).collect();
        let d = self.locked(|| {
            self.sysroot
                .stage_tree(
                    Some(&booted.osname()),
                    commit,
                    booted.origin().as_ref(),
                    Some(&booted),
                    &kargs,
                    none(),
                )
                .with_context(|| format!("staging {commit}"))
        })?;
        let dep = self.dep(&d);
        self.reload()?;
        Ok(dep)
    }

    /// Make the deployment of `commit` the default, keeping the order of
    /// the others (without `drop`, a bad commit); then drop deployments
    /// beyond it and one to fall back to.
    pub fn make_default(&self, commit: &str, drop: Option<&str>) -> Result<()> {
        // libostree knows its deployments by pointer (the booted one must be
        // in the list, as the very object), and `Deployment::clone()` is
        // `ostree_deployment_clone`, a new object: move them, never clone.
        self.locked(|| {
            self.reload()?;
            let mut rest = self.sysroot.deployments();
            let Some(at) = rest.iter().position(|d| d.csum() == commit) else {
                bail!("no deployment of {commit}");
            };
            let mut order = vec![rest.remove(at)];
            order.extend(rest.into_iter().filter(|d| Some(d.csum().as_str()) != drop));
            order.truncate(2);
            self.sysroot
                .write_deployments(&order, none())
                .context("writing the new order of the deployments")
        })?;
        self.reload()
    }

    /// Keep the booted deployment and one to fall back to; remove the rest
    /// (and what only they used).
    pub fn trim(&self) -> Result<()> {
        self.locked(|| {
            self.reload()?;
            let deps = self.sysroot.deployments();
            if deps.len() > 2 && self.sysroot.staged_deployment().is_none() {
                self.sysroot
                    .write_deployments(&deps[..2], none())
                    .context("removing old deployments")?;
            }
            self.sysroot.cleanup(none()).context("cleaning up")
        })?;
        self.reload()
    }
}

/// The kernel arguments a new deployment inherits from `options` (a boot
/// entry's line): all but `ostree=`, which libostree sets for each deployment.
fn inherited_kargs(options: &str) -> Vec<String> {
    options
        .split_whitespace()
        .filter(|a| !a.starts_with("ostree="))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_deployment_keeps_the_booted_kernel_arguments_but_ostree() {
        assert_eq!(
            inherited_kargs(
                "root=LABEL=root rw console=ttyS0,115200  ostree=/ostree/boot.1/d/abc/0 quiet"
            ),
            ["root=LABEL=root", "rw", "console=ttyS0,115200", "quiet"]
        );
        assert!(inherited_kargs("").is_empty());
    }
}
