//! Repository keys pinned by fingerprint: fetch the key a repository names
//! (a file or a URL), refuse it unless it is the key the manifest pins,
//! keep only that key (a binary keyring for apt's `signed-by`, gpgv and
//! rpm), and check that an apt repository's `InRelease` (or `Release` with
//! `Release.gpg`) is signed by it before the package manager runs, so that
//! each failure names the repository.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::repos::{AptRepo, KeySource};
use common::cmd::Cmd;

/// Bytes at `url` (http, https or file); `None` when the server says 404.
pub fn fetch(url: &str) -> Result<Option<Vec<u8>>> {
    if let Some(path) = url.strip_prefix("file://") {
        return match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("reading {path}"))),
        };
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build();
    let mut last = None;
    for _ in 0..3 {
        match agent.get(url).call() {
            Ok(r) => {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader().take(64 << 20), &mut body)
                    .with_context(|| format!("reading {url}"))?;
                return Ok(Some(body));
            }
            Err(ureq::Error::Status(404, _)) => return Ok(None),
            Err(ureq::Error::Status(code, _)) => bail!("{url}: the server answered HTTP {code}"),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(anyhow!("{url}: {}", last.expect("tried")))
}

/// Primary-key fingerprints in an OpenPGP key file (armored or binary).
fn fingerprints(home: &Path, file: &Path) -> Result<Vec<String>> {
    let out = Cmd::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(file)
        .output_string()?;
    Ok(crate::signing::primary_fingerprints(&out))
}

/// How a pinned key is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A binary keyring `NAME.gpg` (apt's signed-by, gpgv).
    Keyring,
    /// An armored key `NAME.asc` (rpm --import).
    Armored,
}

/// Fetch the key of repository `name` from `source` into `dir`, check that
/// it is the key with fingerprint `fpr`, and write a file holding only
/// that key.
pub fn pinned(
    name: &str,
    source: &KeySource,
    fpr: &str,
    dir: &Path,
    form: Form,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = match source {
        KeySource::File(p) => fs::read(p)
            .with_context(|| format!("repository \"{name}\": reading its key {}", p.display()))?,
        KeySource::Url(u) => fetch(u)
            .with_context(|| format!("repository \"{name}\": fetching its key"))?
            .ok_or_else(|| {
                anyhow!("repository \"{name}\": its key {u} does not exist (HTTP 404)")
            })?,
    };
    let home = crate::fsutil::owned_tempdir(&std::env::temp_dir(), "atomicbuild-keys")?;
    let fetched = home.path().join("fetched.key");
    fs::write(&fetched, &bytes)?;
    let found = fingerprints(home.path(), &fetched).unwrap_or_default();
    if found.is_empty() {
        bail!("repository \"{name}\": {source} holds no OpenPGP public key");
    }
    if !found.iter().any(|f| f == fpr) {
        bail!(
            "repository \"{name}\": the key {source} has fingerprint {}, not the pinned {fpr}; refusing it (if the repository changed its key, check the new fingerprint with a source you trust and update the manifest)",
            found.join(", ")
        );
    }
    Cmd::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--quiet", "--import"])
        .arg(&fetched)
        .run()
        .with_context(|| format!("repository \"{name}\": importing its key"))?;
    let keyring = Cmd::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--export"])
        .args((form == Form::Armored).then_some("--armor"))
        .arg(fpr)
        .output()
        .with_context(|| format!("repository \"{name}\": exporting its key"))?;
    let ext = if form == Form::Armored { "asc" } else { "gpg" };
    let out = dir.join(format!("{name}.{ext}"));
    common::atomic::write(&out, &keyring)?;
    Ok(out)
}

/// Check that the apt repository's release file is signed by the key in
/// `keyring` (gpgv); the error names the repository and what is wrong.
pub fn check_release(r: &AptRepo, keyring: &Path, dir: &Path) -> Result<()> {
    let base = r.release_dir();
    let gpgv = |args: &[&Path]| {
        Cmd::new("gpgv")
            .arg("--keyring")
            .arg(keyring)
            .args(args)
            .output_full()
            .map_err(|e| anyhow!(e))
    };
    let what = format!("repository \"{}\" ({})", r.name, r.uri);
    let out = if let Some(inrelease) = fetch(&format!("{base}InRelease")).context(what.clone())? {
        let f = dir.join(format!("{}.InRelease", r.name));
        if !String::from_utf8_lossy(&inrelease).contains("-----BEGIN PGP SIGNATURE-----") {
            bail!("{what} is not signed: {base}InRelease carries no signature");
        }
        fs::write(&f, inrelease)?;
        gpgv(&[&f])?
    } else {
        let release = fetch(&format!("{base}Release")).context(what.clone())?;
        let sig = fetch(&format!("{base}Release.gpg")).context(what.clone())?;
        match (release, sig) {
            (None, _) => bail!("{what} has no InRelease or Release file at {base}: check uri, suite and path"),
            (Some(_), None) => bail!("{what} is not signed: {base} has a Release file but neither InRelease nor Release.gpg"),
            (Some(rel), Some(sig)) => {
                let (fr, fs_) = (dir.join(format!("{}.Release", r.name)), dir.join(format!("{}.Release.gpg", r.name)));
                fs::write(&fr, rel)?;
                fs::write(&fs_, sig)?;
                gpgv(&[&fs_, &fr])?
            }
        }
    };
    if out.status.success() {
        return Ok(());
    }
    let text = out.stderr;
    let why = if text.contains("No public key") {
        format!(
            "its release file is signed by another key than the pinned {}",
            r.fingerprint
        )
    } else if text.contains("BAD signature") {
        "its release file's signature is bad (the file was altered after signing)".to_string()
    } else {
        "its release file's signature does not verify".to_string()
    };
    bail!(
        "{what}: {why}; refusing it (gpgv: {})",
        text.trim().replace('\n', "; ")
    )
}
