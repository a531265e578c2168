//! Package locks: the exact package set of a build (name, version,
//! architecture and the archive's sha256 of each .deb), written next to the
//! image as `NAME-VERSION.lock` and accepted back with `--lock` to install
//! exactly that set again.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Lock file format version.
pub const LOCK_VERSION: u32 = 1;

/// A resolved package set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Format version.
    pub version: u32,
    /// Distribution family.
    pub distro: String,
    /// Release.
    pub release: String,
    /// Every installed package, sorted by name.
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// sha256 of the package file, from the archive index.
    pub sha256: String,
    /// The repository it came from (`debian` for the base's archive, else
    /// the name in `[[base.repos]]`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

impl Lock {
    /// TOML text of the lock.
    pub fn to_toml(&self) -> Result<String> {
        Ok(format!(
            "# atomicbuild package lock: build exactly this set again with --lock.\n{}",
            toml::to_string(self)?
        ))
    }

    /// Read a lock file, with file:line:column on errors.
    pub fn load(path: &Path) -> Result<Lock> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading the lock file {}", path.display()))?;
        let lock: Lock = toml::from_str(&text).map_err(|e| {
            let pos = e
                .span()
                .map(|s| {
                    let (line, col) = crate::model::line_col(&text, s.start);
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{pos}: {}", path.display(), e.message())
        })?;
        if lock.version != LOCK_VERSION {
            bail!(
                "{}: lock format version {} is not supported (this atomicbuild writes version {LOCK_VERSION})",
                path.display(),
                lock.version
            );
        }
        Ok(lock)
    }

    /// `name=version` arguments that pin every package for apt.
    pub fn apt_pins(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    /// Fail unless `installed` is exactly this set; names the first difference.
    pub fn check_installed(&self, installed: &Lock) -> Result<()> {
        let want: BTreeMap<&str, &LockedPackage> =
            self.packages.iter().map(|p| (p.name.as_str(), p)).collect();
        let got: BTreeMap<&str, &LockedPackage> = installed
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        for (name, w) in &want {
            match got.get(name) {
                None => bail!(
                    "the lock pins {name}={}, but it was not installed",
                    w.version
                ),
                Some(g) if g.version != w.version => bail!(
                    "the lock pins {name}={}, but {} was installed",
                    w.version,
                    g.version
                ),
                Some(g) if g.sha256 != w.sha256 && !g.sha256.is_empty() => bail!(
                    "the lock's checksum for {name}={} is {}, but the archive now says {}",
                    w.version,
                    w.sha256,
                    g.sha256
                ),
                _ => {}
            }
        }
        if let Some((name, g)) = got.iter().find(|(n, _)| !want.contains_key(*n)) {
            bail!("{name}={} was installed but is not in the lock", g.version);
        }
        Ok(())
    }
}

/// Build the lock of a freshly installed Debian root: versions from the
/// dpkg database, checksums and origins from the apt indexes the install
/// used (`origins`: (URI, name) of the extra repositories; the rest is the
/// base's archive).
pub fn from_debian_root(root: &Path, release: &str, origins: &[(String, String)]) -> Result<Lock> {
    let installed = super::package_list(root)?;
    let sums = apt_index_sums(&root.join("var/lib/apt/lists"), origins)?;
    let mut packages: Vec<LockedPackage> = installed
        .into_iter()
        .map(|p| {
            let (sha256, origin) = sums
                .get(&(p.name.clone(), p.version.clone(), p.arch.clone()))
                .cloned()
                .unwrap_or_default();
            LockedPackage {
                name: p.name,
                version: p.version,
                arch: p.arch,
                sha256,
                origin,
            }
        })
        .collect();
    packages.sort();
    Ok(Lock {
        version: LOCK_VERSION,
        distro: "debian".into(),
        release: release.into(),
        packages,
    })
}

/// apt's name for the index files of `uri` starts with this: the URI
/// without its scheme, '/' as '_' (apt quotes some characters as %XX in
/// the file name; compare with [`unquote`]d names).
fn list_prefix(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.trim_end_matches('/').replace('/', "_") + "_"
}

/// `%XX` escapes decoded.
fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The origin of an index file: the extra repository whose URI prefix is
/// the longest match, else the base's archive.
fn origin_of(file: &str, origins: &[(String, String)]) -> String {
    let file = unquote(file);
    origins
        .iter()
        .map(|(uri, name)| (list_prefix(uri), name))
        .filter(|(prefix, _)| file.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(super::repos::BASE_ORIGIN.to_string(), |(_, n)| n.clone())
}

type IndexSums = BTreeMap<(String, String, String), (String, String)>;

/// `(name, version, arch) → (sha256, origin)` from every `*_Packages`
/// index in `lists`.
fn apt_index_sums(lists: &Path, origins: &[(String, String)]) -> Result<IndexSums> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(lists) else {
        return Ok(out);
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for p in files {
        let fname = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !fname.ends_with("_Packages") {
            continue;
        }
        let origin = origin_of(&fname, origins);
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        for stanza in text.split("\n\n") {
            let field = |k: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(": ")))
                    .map(str::to_string)
            };
            if let (Some(n), Some(v), Some(a), Some(s)) = (
                field("Package"),
                field("Version"),
                field("Architecture"),
                field("SHA256"),
            ) {
                out.entry((n, v, a)).or_insert((s, origin.clone()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(n: &str, v: &str) -> LockedPackage {
        LockedPackage {
            name: n.into(),
            version: v.into(),
            arch: "amd64".into(),
            sha256: format!("{n}{v}"),
            origin: String::new(),
        }
    }

    fn lock(p: Vec<LockedPackage>) -> Lock {
        Lock {
            version: 1,
            distro: "debian".into(),
            release: "bookworm".into(),
            packages: p,
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let l = lock(vec![pkg("a", "1"), pkg("b", "2:1.0-1")]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        fs::write(&p, l.to_toml().unwrap()).unwrap();
        assert_eq!(Lock::load(&p).unwrap(), l);
        assert_eq!(l.apt_pins(), vec!["a=1", "b=2:1.0-1"]);
    }

    #[test]
    fn differences_name_the_package() {
        let want = lock(vec![pkg("a", "1"), pkg("b", "2")]);
        assert!(want.check_installed(&want).is_ok());
        let e = want
            .check_installed(&lock(vec![pkg("a", "1"), pkg("b", "3")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("pins b=2, but 3 was installed"),
            "{e}"
        );
        let e = want
            .check_installed(&lock(vec![pkg("a", "1")]))
            .unwrap_err();
        assert!(
            e.to_string().contains("b=2, but it was not installed"),
            "{e}"
        );
        let e = want
            .check_installed(&lock(vec![pkg("a", "1"), pkg("b", "2"), pkg("c", "1")]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("c=1 was installed but is not in the lock"),
            "{e}"
        );
    }

    #[test]
    fn bad_lock_file_names_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        fs::write(&p, "version = 1\ndistro = \"debian\"\nrelease = 2\n").unwrap();
        let e = Lock::load(&p).unwrap_err().to_string();
        assert!(e.contains("x.lock:3:"), "{e}");
    }

    #[test]
    fn index_checksums_are_read_per_version() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("deb_dists_bookworm_main_binary-amd64_Packages"),
            "Package: a\nVersion: 1\nArchitecture: amd64\nSHA256: aaa\n\nPackage: b\nVersion: 2\nArchitecture: all\nSHA256: bbb\n",
        )
        .unwrap();
        fs::write(
            d.path().join("127.0.0.1:8080_k8s_deb_._Packages"),
            "Package: kubelet\nVersion: 1.34.0\nArchitecture: amd64\nSHA256: kkk\n",
        )
        .unwrap();
        let origins = [(
            "http://127.0.0.1:8080/k8s/deb/".to_string(),
            "kubernetes".to_string(),
        )];
        let s = apt_index_sums(d.path(), &origins).unwrap();
        let get = |n: &str, v: &str, a: &str| s[&(n.into(), v.into(), a.into())].clone();
        assert_eq!(get("a", "1", "amd64"), ("aaa".into(), "debian".into()));
        assert_eq!(get("b", "2", "all"), ("bbb".into(), "debian".into()));
        assert_eq!(
            get("kubelet", "1.34.0", "amd64"),
            ("kkk".into(), "kubernetes".into())
        );
    }

    #[test]
    fn list_files_are_matched_to_their_repository() {
        let o = [
            (
                "https://pkgs.k8s.io/core:/stable:/v1.34/deb/".to_string(),
                "k8s".to_string(),
            ),
            ("http://h/debian_extra/".to_string(), "extra".to_string()),
        ];
        assert_eq!(
            origin_of("pkgs.k8s.io_core:_stable:_v1.34_deb_Packages", &o),
            "k8s"
        );
        assert_eq!(
            origin_of("h_debian%5fextra_dists_x_main_binary-amd64_Packages", &o),
            "extra"
        );
        assert_eq!(
            origin_of(
                "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
                &o
            ),
            "debian"
        );
    }
}
