//! Import the container images the builder preloaded under `/usr`
//! ([`common::images`]) into containerd, on every boot
//! (`atomic-images.service`, after containerd, before the kubelet): an
//! image containerd already has under its reference with the recorded
//! digest is left alone; any other's archive is checked against its
//! recorded sha256 first, then imported and named, and the name checked
//! to point at the recorded digest. A mismatch stops with the file named
//! and nothing imported from it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use common::images::{self, Preloaded};

/// How to reach containerd: the `ctr` binary and, if not the default,
/// its socket.
pub struct Ctr<'a> {
    /// The `ctr` binary.
    pub program: &'a str,
    /// containerd's socket (`None`: ctr's default).
    pub address: Option<&'a str>,
}

impl Ctr<'_> {
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![self.program];
        if let Some(a) = self.address {
            argv.extend(["--address", a]);
        }
        argv.extend(["--namespace", images::NAMESPACE]);
        argv.extend(args);
        crate::cmd::run(&argv)
    }

    /// Image name → target digest, as `ctr images ls` lists them.
    fn list(&self) -> Result<BTreeMap<String, String>> {
        let out = self.run(&["images", "ls"])?;
        Ok(out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.first()?.to_string(), f.get(2)?.to_string()))
            })
            .collect())
    }
}

/// What [`import`] did to each image: (reference, "imported" or "present").
pub type Done = Vec<(String, &'static str)>;

/// Import what `root`'s list names and containerd lacks.
pub fn import(root: &Path, ctr: &Ctr) -> Result<Done> {
    let list_path = root.join(images::LIST);
    let text = match std::fs::read_to_string(&list_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", list_path.display())),
    };
    let list = images::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", list_path.display()))?;
    let mut have = ctr.list()?;
    let mut done = Vec::new();
    for p in &list {
        let named = |h: &BTreeMap<String, String>| {
            h.get(&p.reference) == Some(&p.digest) && h.get(&p.pinned()) == Some(&p.digest)
        };
        if named(&have) {
            done.push((p.reference.clone(), "present"));
            continue;
        }
        import_one(root, p, ctr)?;
        have = ctr.list()?;
        if !named(&have) {
            bail!(
                "{} was imported but containerd does not list {} and {} at {}",
                p.file,
                p.reference,
                p.pinned(),
                p.digest
            );
        }
        done.push((p.reference.clone(), "imported"));
    }
    Ok(done)
}

fn import_one(root: &Path, p: &Preloaded, ctr: &Ctr) -> Result<()> {
    let file = root.join(images::DIR).join(&p.file);
    let sha = sha256_file(&file)?;
    if sha != p.sha256 {
        bail!(
            "{} has sha256 {sha}, not the {} its image recorded; not importing it",
            file.display(),
            p.sha256
        );
    }
    let repo = images::repository(&p.reference);
    let f = file.to_string_lossy();
    ctr.run(&["images", "import", "--digests", "--base-name", repo, &f])
        .with_context(|| format!("importing {}", file.display()))?;
    // The archive's own tag may differ from the reference it is known by.
    if ctr.list()?.get(&p.reference) != Some(&p.digest) {
        let pinned = p.pinned();
        let _ = ctr.run(&["images", "rm", &p.reference]);
        ctr.run(&["images", "tag", &pinned, &p.reference])
            .with_context(|| format!("naming {pinned} {}", p.reference))?;
    }
    Ok(())
}

fn sha256_file(p: &Path) -> Result<String> {
    let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
