//! Documentation, translations and the manifest's `leave_out` paths left
//! out at install time, and what that saved. Debian: dpkg `path-exclude`/`path-include` rules (mmdebstrap
//! `--dpkgopt`, which also stay in the image's dpkg.cfg.d), measured from
//! the downloaded packages' file lists. Fedora: dnf `tsflags=nodocs` and
//! rpm's `%_install_langs`, measured from the rpmdb, which lists the files
//! it did not install. Copyright and licence files are always installed
//! (dpkg: `/usr/share/doc/*/copyright`; rpm: `%license` files are not docs).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};

use super::lock::Lock;
use crate::model::{Lean, Saving};

/// What a left-out path is, in [`Saving::what`] words.
const DOCS: &str = "documentation (copyright files kept)";
const MAN: &str = "man and info pages";
const LOCALE: &str = "translations";
const PATHS: &str = "paths named in packages.leave_out";

/// mmdebstrap's `--dpkgopt=` arguments for `lean`.
pub fn mmdebstrap_args(lean: &Lean) -> Vec<String> {
    dpkg_options(lean)
        .iter()
        .map(|o| format!("--dpkgopt={o}"))
        .collect()
}

/// dpkg options for `lean` (as `path-exclude=...` lines).
fn dpkg_options(lean: &Lean) -> Vec<String> {
    let mut v = Vec::new();
    if !lean.docs {
        for p in [
            "path-exclude=/usr/share/doc/*",
            "path-include=/usr/share/doc/*/copyright",
            "path-exclude=/usr/share/man/*",
            "path-exclude=/usr/share/info/*",
            "path-exclude=/usr/share/doc-base/*",
        ] {
            v.push(p.to_string());
        }
    }
    v.push("path-exclude=/usr/share/locale/*".into());
    v.push("path-include=/usr/share/locale/locale.alias".into());
    for l in &lean.languages {
        v.push(format!("path-include=/usr/share/locale/{l}/*"));
        if !l.contains('_') {
            v.push(format!("path-include=/usr/share/locale/{l}_*"));
        }
    }
    // Last: dpkg's last matching rule wins, and these always leave out.
    for p in &lean.leave_out {
        v.push(format!("path-exclude={p}"));
        v.push(format!("path-exclude={p}/*"));
    }
    v
}

/// What [`dpkg_options`] leaves out of `path` (absolute, as in a package),
/// if anything.
fn debian_class(path: &str, lean: &Lean) -> Option<&'static str> {
    if left_out_path(path, lean) {
        return Some(PATHS);
    }
    let under = |dir: &str| path.strip_prefix(dir).filter(|r| !r.is_empty());
    if !lean.docs {
        if let Some(rest) = under("/usr/share/doc/") {
            // dpkg's `*` matches slashes too.
            let is_copyright = rest.ends_with("/copyright");
            return (!is_copyright).then_some(DOCS);
        }
        if under("/usr/share/doc-base/").is_some() {
            return Some(DOCS);
        }
        if under("/usr/share/man/").is_some() || under("/usr/share/info/").is_some() {
            return Some(MAN);
        }
    }
    let rest = under("/usr/share/locale/")?;
    if rest == "locale.alias" {
        return None;
    }
    let dir = rest.split('/').next().unwrap_or_default();
    let kept = lean.languages.iter().any(|l| {
        dir == l
            || (!l.contains('_')
                && dir
                    .strip_prefix(l.as_str())
                    .is_some_and(|r| r.starts_with('_')))
    });
    (!kept).then_some(LOCALE)
}

/// Whether `path` is one of `lean.leave_out` or under one.
fn left_out_path(path: &str, lean: &Lean) -> bool {
    lean.leave_out.iter().any(|p| {
        path.strip_prefix(p.as_str())
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    })
}

/// Sums what `dpkg_options` left out, from the package files in `debs`
/// (the download cache) of every package in `lock`.
pub fn debian_savings(debs: &Path, lock: &Lock, lean: &Lean) -> Result<Vec<Saving>> {
    let files: Vec<PathBuf> = lock
        .packages
        .iter()
        .map(|p| {
            debs.join(format!(
                "{}_{}_{}.deb",
                p.name,
                p.version.replace(':', "%3a"),
                p.arch
            ))
        })
        .filter(|f| f.is_file())
        .collect();
    let mut totals = Totals::default();
    for t in crate::fsutil::fold_files(&files, |f, tot| deb_left_out(f, lean, tot))? {
        totals.merge(t);
    }
    Ok(totals.savings(lean))
}

/// Files and bytes per kind.
#[derive(Default)]
struct Totals {
    docs: (u64, u64),
    man: (u64, u64),
    locale: (u64, u64),
    paths: (u64, u64),
}

impl Totals {
    fn add(&mut self, what: &str, bytes: u64) {
        let t = match what {
            DOCS => &mut self.docs,
            MAN => &mut self.man,
            PATHS => &mut self.paths,
            _ => &mut self.locale,
        };
        t.0 += 1;
        t.1 += bytes;
    }

    fn merge(&mut self, o: Totals) {
        for (a, b) in [
            (&mut self.docs, o.docs),
            (&mut self.man, o.man),
            (&mut self.locale, o.locale),
            (&mut self.paths, o.paths),
        ] {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    fn savings(&self, lean: &Lean) -> Vec<Saving> {
        let mut v = Vec::new();
        let saving = |setting: String, what: &str, (files, bytes): (u64, u64)| Saving {
            setting,
            what: what.into(),
            files,
            bytes,
        };
        if !lean.docs {
            v.push(saving("packages.docs = false".into(), DOCS, self.docs));
            v.push(saving("packages.docs = false".into(), MAN, self.man));
        }
        let langs = format!("packages.languages = {:?}", lean.languages);
        v.push(saving(langs, LOCALE, self.locale));
        if !lean.leave_out.is_empty() {
            v.push(saving("packages.leave_out".into(), PATHS, self.paths));
        }
        v
    }
}

/// Adds the regular files of one .deb that `lean` leaves out.
fn deb_left_out(deb: &Path, lean: &Lean, tot: &mut Totals) -> Result<()> {
    let mut child = std::process::Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = child.stdout.take().context("dpkg-deb output")?;
    let mut archive = tar::Archive::new(stdout);
    let r = (|| -> Result<()> {
        for e in archive.entries()? {
            let e = e?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = e.path()?.to_string_lossy().into_owned();
            let abs = format!("/{}", path.trim_start_matches("./"));
            if let Some(what) = debian_class(&abs, lean) {
                tot.add(what, e.header().size()?);
            }
        }
        Ok(())
    })();
    let status = child.wait()?;
    r.with_context(|| format!("listing {}", deb.display()))?;
    if !status.success() {
        anyhow::bail!("dpkg-deb --fsys-tarfile {} failed", deb.display());
    }
    Ok(())
}

/// Lines for the rpm macro file: the languages rpm installs.
pub fn rpm_macros(lean: &Lean) -> String {
    let langs = if lean.languages.is_empty() {
        "C".to_string()
    } else {
        lean.languages.join(":")
    };
    let mut s = format!("%_install_langs {langs}\n");
    if !lean.leave_out.is_empty() {
        // rpm leaves files under these out and marks them "net shared".
        s.push_str(&format!("%_netsharedpath {}\n", lean.leave_out.join(":")));
    }
    if !lean.docs {
        s.push_str("%_excludedocs 1\n");
    }
    s
}

/// Sums the files rpm left out: the rpmdb lists them as "not installed";
/// `%doc` files (which include man and info pages) count as documentation,
/// `%lang` files as translations.
pub fn rpm_savings(rpm_query: &str, lean: &Lean) -> Vec<Saving> {
    let mut tot = Totals::default();
    for line in rpm_query.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [state, flags, lang, size, path] = f[..] else {
            continue;
        };
        let bytes = size.parse().unwrap_or(0);
        if state == "net shared" && left_out_path(path, lean) {
            tot.add(PATHS, bytes);
            continue;
        }
        if state != "not installed" {
            continue;
        }
        let man = path.starts_with("/usr/share/man/") || path.starts_with("/usr/share/info/");
        match () {
            _ if flags.contains('d') && man => tot.add(MAN, bytes),
            _ if flags.contains('d') => tot.add(DOCS, bytes),
            _ if !lang.is_empty() => tot.add(LOCALE, bytes),
            _ => {}
        }
    }
    tot.savings(lean)
}

/// The `rpm -qa --qf` format [`rpm_savings`] reads.
pub const RPM_FILES_QUERY: &str =
    "[%{FILESTATES:fstate}\\t%{FILEFLAGS:fflags}\\t%{FILELANGS}\\t%{FILESIZES}\\t%{FILENAMES}\\n]";

#[cfg(test)]
mod tests {
    use super::*;

    fn fnmatch(pattern: &str, path: &str) -> bool {
        let p = std::ffi::CString::new(pattern).unwrap();
        let s = std::ffi::CString::new(path).unwrap();
        unsafe { libc::fnmatch(p.as_ptr(), s.as_ptr(), 0) == 0 }
    }

    /// What dpkg does with the options: the last matching rule wins
    /// (dpkg(1) `--path-exclude`/`--path-include`).
    fn dpkg_excludes(opts: &[String], path: &str) -> bool {
        let mut excluded = false;
        for o in opts {
            if let Some(p) = o.strip_prefix("path-exclude=") {
                if fnmatch(p, path) {
                    excluded = true;
                }
            } else if let Some(p) = o.strip_prefix("path-include=") {
                if fnmatch(p, path) {
                    excluded = false;
                }
            }
        }
        excluded
    }

    #[test]
    fn the_measure_agrees_with_the_dpkg_rules() {
        let paths = [
            "/usr/share/doc/etcd-server/copyright",
            "/usr/share/doc/etcd-server/changelog.Debian.gz",
            "/usr/share/doc/etcd-server/examples/copyright",
            "/usr/share/man/man1/etcd.1.gz",
            "/usr/share/info/coreutils.info.gz",
            "/usr/share/locale/de/LC_MESSAGES/apt.mo",
            "/usr/share/locale/de_AT/LC_MESSAGES/x.mo",
            "/usr/share/locale/pt_BR/LC_MESSAGES/apt.mo",
            "/usr/share/locale/pt/LC_MESSAGES/apt.mo",
            "/usr/share/locale/locale.alias",
            "/usr/bin/etcd",
            "/usr/share/doc-base/foo",
            "/usr/bin/containerd-shim",
            "/usr/bin/containerd-shim-runc-v2",
            "/usr/lib/legacy/a/b.so",
            "/usr/lib/legacy-not/c",
            "/usr/share/locale/de/LC_MESSAGES/gone.mo",
        ];
        for lean in [
            Lean::default(),
            Lean {
                docs: true,
                languages: vec!["de".into(), "pt_BR".into()],
                leave_out: vec![
                    "/usr/bin/containerd-shim".into(),
                    "/usr/lib/legacy".into(),
                    "/usr/share/locale/de/LC_MESSAGES/gone.mo".into(),
                ],
                ..Lean::default()
            },
        ] {
            let opts = dpkg_options(&lean);
            for p in paths {
                assert_eq!(
                    dpkg_excludes(&opts, p),
                    debian_class(p, &lean).is_some(),
                    "{p} with {lean:?}"
                );
            }
        }
        assert!(debian_class("/usr/share/doc/a/copyright", &Lean::default()).is_none());
        assert_eq!(
            debian_class("/usr/share/man/man1/x.1.gz", &Lean::default()),
            Some(MAN)
        );
        let out = Lean {
            leave_out: vec!["/usr/bin/containerd-shim".into()],
            ..Lean::default()
        };
        assert_eq!(debian_class("/usr/bin/containerd-shim", &out), Some(PATHS));
        assert_eq!(debian_class("/usr/bin/containerd-shim-runc-v2", &out), None);
    }

    #[test]
    fn rpm_left_out_files_are_classified() {
        let q = "not installed\td\t\t100\t/usr/share/doc/a/README\n\
                 not installed\td\t\t50\t/usr/share/man/man1/a.1.gz\n\
                 normal\tl\t\t10\t/usr/share/licenses/a/COPYING\n\
                 not installed\t\tde\t7\t/usr/share/locale/de/LC_MESSAGES/a.mo\n\
                 normal\t\t\t9\t/usr/bin/a\n\
                 net shared\t\t\t30\t/usr/bin/shim\n\
                 net shared\t\t\t5\t/srv/nfs/x\n";
        let s = rpm_savings(q, &Lean::default());
        let by = |w: &str| s.iter().find(|x| x.what == w).map(|x| (x.files, x.bytes));
        assert_eq!(by(DOCS), Some((1, 100)));
        assert_eq!(by(MAN), Some((1, 50)));
        assert_eq!(by(LOCALE), Some((1, 7)));
        assert_eq!(
            rpm_macros(&Lean::default()),
            "%_install_langs C\n%_excludedocs 1\n"
        );
        assert_eq!(by(PATHS), None);
        let out = Lean {
            leave_out: vec!["/usr/bin/shim".into(), "/opt/x".into()],
            ..Lean::default()
        };
        // Only what the manifest named counts (a host's own
        // %_netsharedpath is not this build's saving).
        let s = rpm_savings(q, &out);
        let by = |w: &str| s.iter().find(|x| x.what == w).map(|x| (x.files, x.bytes));
        assert_eq!(by(PATHS), Some((1, 30)));
        assert!(rpm_macros(&out).contains("%_netsharedpath /usr/bin/shim:/opt/x\n"));
    }
}
