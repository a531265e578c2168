//! Deploy stage: a fresh OSTree sysroot (the future root partition) with the
//! commit deployed through the Sysroot API, exactly as `ostree admin deploy`
//! would on a running host. OSTree writes the kernel, initramfs and a BLS
//! entry under `boot/`, which becomes the /boot partition.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use ostree::gio;
use ostree::glib;

use super::commit::Commit;
use super::{Env, Outcome};
use crate::fsutil;
use crate::manifest::Manifest;

/// Kernel arguments every image gets, before the manifest's own.
pub const BASE_KARGS: &[&str] = &[
    "root=LABEL=root",
    "rw",
    "console=tty0",
    "console=ttyS0,115200",
];

/// With `[updates]`, a boot that cannot get to the update agent still uses
/// up one of GRUB's tries: a kernel panic and a failed initramfs (dracut's
/// emergency) reboot instead of waiting forever. Without a boot counter,
/// such a reboot would only loop, so other images stop as before.
pub const UPDATES_KARGS: &[&str] = &["panic=10", "rd.emergency=reboot"];

/// The kernel command line of the manifest's deployment.
pub fn kargs(m: &Manifest) -> Vec<String> {
    let mut k: Vec<String> = BASE_KARGS.iter().map(|s| s.to_string()).collect();
    if m.updates.is_some() {
        k.extend(UPDATES_KARGS.iter().map(|s| s.to_string()));
    }
    k.extend(m.firstboot.kernel_args());
    k.extend(m.kernel_args.iter().cloned());
    k
}

/// A deployed sysroot.
pub struct Deployed {
    /// The sysroot directory (root partition contents, /boot included).
    pub sysroot: PathBuf,
    /// The deployment's directory inside the sysroot.
    pub deployment: PathBuf,
    /// The full kernel command line OSTree wrote into the BLS entry.
    pub kargs: Vec<String>,
}

impl Outcome for Deployed {}

/// Pull `commit` into `repo`, checking every object against its checksum
/// (each is read here anyway), so that a damaged cache never reaches an
/// image: a corrupted object is a [`crate::cache::Damaged`] error.
fn pull(repo: &ostree::Repo, commit: &Commit) -> Result<()> {
    let c = gio::Cancellable::NONE;
    let opts = glib::VariantDict::new(None);
    opts.insert("refs", vec![commit.checksum.clone()]);
    opts.insert("flags", ostree::RepoPullFlags::UNTRUSTED.bits() as i32);
    let url = format!("file://{}", commit.repo.display());
    repo.pull_with_options(&url, &opts.end(), None, c)
        .map_err(|e| match e.message().contains("Corrupted") {
            true => anyhow::Error::new(crate::cache::Damaged(format!(
                "{} in {}",
                e.message(),
                commit.repo.display()
            ))),
            false => anyhow::Error::new(e),
        })
        .with_context(|| format!("pulling {} from {}", commit.checksum, commit.repo.display()))?;
    Ok(())
}

/// Deploy `commit` into `env.workdir/sysroot`.
pub fn run(env: &Env, m: &Manifest, commit: &Commit) -> Result<Deployed> {
    let stage = env.progress.stage("deploy");
    let c = gio::Cancellable::NONE;
    let path = env.workdir.join("sysroot");
    fsutil::remove_tree(&path)?;
    fs::create_dir_all(path.join("boot"))?;

    let sysroot = new_sysroot(&path, &m.ostree.osname)?;
    let repo = sysroot.repo();

    stage.message("pulling the commit into the sysroot");
    pull(&repo, commit)?;
    crate::failpoint::hit("deploy.pulled");
    repo.set_ref_immediate(None, &commit.ref_, Some(&commit.checksum), c)
        .with_context(|| format!("pointing {} at the commit", commit.ref_))?;
    let refspec = match &m.updates {
        Some(u) => {
            add_remote(&repo, u)?;
            repo.set_ref_immediate(Some(&u.remote), &u.ref_, Some(&commit.checksum), c)
                .with_context(|| format!("pointing {} at the commit", u.refspec()))?;
            u.refspec()
        }
        None => commit.ref_.clone(),
    };

    let kargs = kargs(m);
    let kref: Vec<&str> = kargs.iter().map(String::as_str).collect();
    let origin = sysroot.origin_new_from_refspec(&refspec);
    stage.message("deploying");
    let dep = sysroot
        .deploy_tree(
            Some(&m.ostree.osname),
            &commit.checksum,
            Some(&origin),
            None,
            &kref,
            c,
        )
        .context("deploying the commit")?;
    sysroot
        .simple_write_deployment(
            Some(&m.ostree.osname),
            &dep,
            None,
            ostree::SysrootSimpleWriteDeploymentFlags::NONE,
            c,
        )
        .context("writing the deployment and its boot entry")?;
    // On the host, ostree writes grub.cfg through its grub2 backend, which
    // runs /usr/sbin/grub-mkconfig: the update agent (see stage::agent).
    let cfg = repo.copy_config();
    cfg.set_string("sysroot", "bootloader", "grub2");
    repo.write_config(&cfg)
        .context("configuring the sysroot repository")?;
    drop(repo);
    let deployment = path.join(sysroot.deployment_dirpath(&dep).as_str());
    stage.finish(&format!(
        "{}.{}",
        &commit.checksum[..12],
        dep.deployserial()
    ));
    Ok(Deployed {
        sysroot: path,
        deployment,
        kargs,
    })
}

/// The update remote, verifying the commit's and the summary's signatures
/// with the keys of the booted image (`gpgkeypath`: rotating keys is
/// publishing an image with other keys).
fn add_remote(repo: &ostree::Repo, u: &crate::updates::Updates) -> Result<()> {
    let cfg = repo.copy_config();
    let group = format!("remote \"{}\"", u.remote);
    cfg.set_string(&group, "url", &u.url);
    cfg.set_string(&group, "gpg-verify", "true");
    cfg.set_string(&group, "gpg-verify-summary", "true");
    cfg.set_string(&group, "gpgkeypath", crate::updates::KEYS_DIR);
    repo.write_config(&cfg)
        .with_context(|| format!("adding the update remote {}", u.remote))
}

/// A fresh sysroot at `path` with the stateroot `osname`; ostree writes no
/// bootloader configuration while the image is made (atomicbuild does).
fn new_sysroot(path: &std::path::Path, osname: &str) -> Result<ostree::Sysroot> {
    let c = gio::Cancellable::NONE;
    // The deployment directory would otherwise get the immutable attribute,
    // which mke2fs does not carry over anyway and which blocks cleaning up
    // the work directory.
    std::env::set_var("OSTREE_SYSROOT_DEBUG", "mutable-deployments");
    let sysroot = ostree::Sysroot::new(Some(&gio::File::for_path(path)));
    sysroot
        .ensure_initialized(c)
        .context("initializing the sysroot")?;
    sysroot.load(c).context("loading the sysroot")?;
    sysroot
        .init_osname(osname, c)
        .with_context(|| format!("creating stateroot {}", osname))?;
    let repo = sysroot.repo();
    let cfg = repo.copy_config();
    // atomicbuild writes the GRUB configuration itself from the BLS entries.
    cfg.set_string("sysroot", "bootloader", "none");
    repo.write_config(&cfg)
        .context("configuring the sysroot repository")?;

    Ok(sysroot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(dir: &Path, extra: &str) -> Manifest {
        std::fs::write(dir.join("k.asc"), "-----BEGIN PGP PUBLIC KEY BLOCK-----\n").unwrap();
        let src = format!(
            "[image]\nname = \"t\"\nversion = \"1\"\n[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\n[packages]\ninclude = [\"linux-image-amd64\", \"systemd-sysv\", \"ostree-boot\", \"dracut\"]\n[ostree]\nref = \"r\"\nosname = \"debian\"\n{extra}"
        );
        crate::manifest::parse_str(&src, &dir.join("t.toml"), dir, "x".into()).unwrap()
    }

    #[test]
    fn only_images_with_updates_reboot_on_a_panic_or_an_initramfs_failure() {
        let d = tempfile::tempdir().unwrap();
        let plain = kargs(&manifest(d.path(), ""));
        assert!(!plain.iter().any(|a| a.starts_with("panic=")), "{plain:?}");
        let updating = kargs(&manifest(
            d.path(),
            "[updates]\nurl = \"http://updates.example/repo\"\nkeys = [\"k.asc\"]\n",
        ));
        for a in UPDATES_KARGS {
            assert!(updating.iter().any(|k| k == a), "{a} missing: {updating:?}");
        }
        assert_eq!(updating[..BASE_KARGS.len()], *BASE_KARGS);
    }
}
