//! The manifest's `[signing]` table: the GnuPG key that signs what
//! `atomicbuild publish` puts into an update repository (commits and the
//! summary) and every build's `SHA256SUMS` (a detached signature). Either a key of a GnuPG home (`key_id`, `gnupg_home`), or an
//! armored secret key file imported into a private, temporary home for the
//! publish (`key_file`). There is no default key, and secrets are never
//! printed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::model::Scope;
use common::cmd::Cmd;

/// `[signing]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawSigning {
    pub key_id: Option<String>,
    pub gnupg_home: Option<String>,
    pub key_file: Option<String>,
}

/// Where the signing key is.
#[derive(Debug, Clone, serde::Serialize)]
pub enum Signing {
    /// A key of a GnuPG home.
    Home {
        /// Fingerprint, long id or user id.
        key_id: String,
        /// The home (`None`: $GNUPGHOME or ~/.gnupg).
        home: Option<PathBuf>,
    },
    /// An armored secret key file.
    KeyFile(PathBuf),
}

/// Check `[signing]` (`p`: its scope; `dir` resolves relative paths).
pub fn check(s: RawSigning, dir: &Path, p: &mut Scope) -> Option<Signing> {
    match (s.key_id, s.key_file) {
        (Some(_), Some(_)) => {
            p.bad(
                "key_file",
                "give either key_id (with gnupg_home) or key_file, not both",
            );
            None
        }
        (None, None) => {
            p.bad("", "name the signing key: key_id (a key of gnupg_home) or key_file (an armored secret key)");
            None
        }
        (Some(id), None) => {
            let hex = id.trim_start_matches("0x");
            if id.is_empty() || (hex.chars().all(|c| c.is_ascii_hexdigit()) && hex.len() < 16) {
                p.bad(
                    "key_id",
                    "use the key's fingerprint or long id (16+ hex digits), not a short id",
                );
            }
            Some(Signing::Home {
                key_id: id,
                home: s.gnupg_home.map(|h| dir.join(h)),
            })
        }
        (None, Some(f)) => {
            if s.gnupg_home.is_some() {
                p.bad(
                    "gnupg_home",
                    "a key_file is imported into a private home; remove gnupg_home",
                );
            }
            let path = dir.join(&f);
            match std::fs::read_to_string(&path) {
                Ok(t) if t.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") => {}
                Ok(_) => p.bad("key_file", format!("{} is not an armored OpenPGP secret key (gpg --export-secret-keys --armor KEYID)", path.display())),
                Err(e) => p.bad("key_file", format!("cannot read {}: {e}", path.display())),
            }
            Some(Signing::KeyFile(path))
        }
    }
}

/// A key ready to sign with: its id and GnuPG home (a temporary one for a
/// key file, removed when dropped).
pub struct Key {
    /// The key's fingerprint or id.
    pub id: String,
    /// The home holding it.
    pub home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Signing {
    /// Make the key usable, checking that it can sign.
    pub fn key(&self) -> Result<Key> {
        match self {
            Signing::Home { key_id, home } => {
                let home = match home {
                    Some(h) => h.clone(),
                    None => std::env::var_os("GNUPGHOME")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| {
                            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                                .join(".gnupg")
                        }),
                };
                let fpr = secret_fingerprint(&home, Some(key_id))
                    .with_context(|| format!("the signing key {key_id} in {}", home.display()))?;
                Ok(Key {
                    id: fpr,
                    home,
                    _tmp: None,
                })
            }
            Signing::KeyFile(f) => {
                let tmp = crate::fsutil::owned_tempdir(&std::env::temp_dir(), "atomicbuild-gnupg")?;
                Cmd::new("gpg")
                    .arg("--homedir")
                    .arg(tmp.path())
                    .args(["--batch", "--quiet", "--import"])
                    .arg(f)
                    .run()
                    .with_context(|| format!("importing the signing key {}", f.display()))?;
                let fpr = secret_fingerprint(tmp.path(), None)
                    .with_context(|| format!("the signing key in {}", f.display()))?;
                Ok(Key {
                    id: fpr,
                    home: tmp.path().to_owned(),
                    _tmp: Some(tmp),
                })
            }
        }
    }
}

/// The key `s` names, ready to sign with (`None` without `[signing]`).
pub fn key_of(s: Option<&Signing>) -> Result<Option<Key>> {
    s.map(Signing::key).transpose()
}

impl Key {
    /// Write an armored detached signature of `file` to `sig` (replaced
    /// atomically), which `gpg --verify SIG FILE` checks.
    pub fn detach_sign(&self, file: &Path, sig: &Path) -> Result<()> {
        let armored = Cmd::new("gpg")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--batch", "--armor", "--local-user", &self.id])
            .args(["--output", "-", "--detach-sign"])
            .arg(file)
            .output()
            .with_context(|| format!("signing {} with {}", file.display(), self.id))?;
        common::atomic::write(sig, &armored)
    }
}

/// The fingerprint of the secret key `id` (the only one when `None`).
fn secret_fingerprint(home: &Path, id: Option<&str>) -> Result<String> {
    let out = Cmd::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--with-colons", "--list-secret-keys"])
        .args(id)
        .output_string()
        .context("no such secret key")?;
    match primary_fingerprints(&out).into_iter().next() {
        Some(f) => Ok(f),
        None => bail!("no secret key found"),
    }
}

/// The primary keys' fingerprints (upper case) in `gpg --with-colons`
/// output, in order; subkeys' are skipped.
pub fn primary_fingerprints(colons: &str) -> Vec<String> {
    let mut fprs = Vec::new();
    let mut want = false;
    for l in colons.lines() {
        match l.split(':').next() {
            Some("pub" | "sec") => want = true,
            Some("sub" | "ssb") => want = false,
            Some("fpr") if want => {
                if let Some(f) = l.split(':').nth(9) {
                    fprs.push(f.to_ascii_uppercase());
                }
                want = false;
            }
            _ => {}
        }
    }
    fprs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_primary_keys_fingerprints_are_taken() {
        let colons = "\
pub:-:255:22:234654DA9A296436:1690000000:::-:::scSC::::::23::0:
fpr:::::::::de15b14486cd377b9e876e1a234654da9a296436:
uid:-::::1690000000::ABCD::isv:kubernetes OBS Project::::::::::0:
sub:-:255:18:1111111111111111:1690000000::::::e::::::23:
fpr:::::::::00000000000000000000000000001111111111111111:
sec:u:255:22:2222222222222222:1700000000:::u:::scESC:::+:::23::0:
fpr:::::::::AAAAAAAAAAAAAAAAAAAAAAAA2222222222222222:
ssb:u:255:18:3333333333333333:1700000000::::::e:::+:::23:
fpr:::::::::BBBBBBBBBBBBBBBBBBBBBBBB3333333333333333:
";
        assert_eq!(
            primary_fingerprints(colons),
            [
                "DE15B14486CD377B9E876E1A234654DA9A296436",
                "AAAAAAAAAAAAAAAAAAAAAAAA2222222222222222"
            ]
        );
        assert!(primary_fingerprints("").is_empty());
    }
}
