//! The SELinux module store moves from `/var/lib/selinux` into
//! `/etc/selinux`.
//!
//! When OSTree finalizes an update it runs `semodule -N
//! --rebuild-if-modules-changed` inside the new deployment, whose `/var` is
//! the commit's, and an image's `/var` is empty: with the store there,
//! semodule cannot open it and the update is not finalized. In `/etc` the
//! store travels with each deployment and takes part in the `/etc` merge,
//! so a module a host added is kept, and the policy rebuilt, on update.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::fsutil;

/// libsemanage's configuration, relative to the root.
const CONF: &str = "etc/selinux/semanage.conf";
/// The store's default place, relative to the root.
const VAR_STORE: &str = "var/lib/selinux";
/// The setting this writes.
const STORE_ROOT: &str = "store-root = /etc/selinux";

/// Move each policy's store (`/var/lib/selinux/NAME/*`) into
/// `/etc/selinux/NAME/` (all of `/var/lib/selinux`, so libsemanage's
/// `final` too) and point `store-root` there. Returns the names of the
/// policies moved (none without libsemanage or a store in `/var`).
pub fn into_etc(root: &Path) -> Result<Vec<String>> {
    let conf_path = root.join(CONF);
    let store = root.join(VAR_STORE);
    let (Ok(conf), true) = (fs::read_to_string(&conf_path), store.is_dir()) else {
        return Ok(Vec::new());
    };
    match store_root(&conf) {
        None | Some("/var/lib/selinux") => {}
        Some(_) => return Ok(Vec::new()),
    }
    let mut moved = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(&store)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries.iter().filter(|e| e.path().is_dir()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let dst = root.join("etc/selinux").join(&name);
        fs::create_dir_all(&dst)?;
        for c in fs::read_dir(e.path())? {
            let c = c?;
            let to = dst.join(c.file_name());
            if fs::symlink_metadata(&to).is_ok() {
                bail!(
                    "cannot move the SELinux module store of {name} into /etc/selinux/{name}: {} already exists",
                    c.file_name().to_string_lossy()
                );
            }
            fs::rename(c.path(), &to)
                .with_context(|| format!("moving {} into /etc", c.path().display()))?;
        }
        fs::remove_dir(e.path())?;
        // `final` is libsemanage's scratch space, not a policy.
        if dst.join("active").is_dir() {
            moved.push(name);
        }
    }
    if fs::read_dir(&store)?.next().is_none() {
        fs::remove_dir(&store)?;
    }
    fsutil::replace_file(&conf_path, with_store_root(&conf))
        .with_context(|| format!("writing {}", conf_path.display()))?;
    Ok(moved)
}

/// The value of an uncommented `store-root` setting.
fn store_root(conf: &str) -> Option<&str> {
    conf.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        (k.trim() == "store-root").then(|| v.trim())
    })
}

/// `conf` with `store-root` set to `/etc/selinux` (replacing a setting).
fn with_store_root(conf: &str) -> String {
    let mut out: String = conf
        .lines()
        .filter(|l| store_root(l).is_none())
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str("\n# atomicbuild: the module store is in /etc (an OSTree deployment's /var\n");
    out.push_str("# is empty when ostree rebuilds the policy for an update).\n");
    out.push_str(STORE_ROOT);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(conf: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("etc/selinux/default/contexts")).unwrap();
        fs::create_dir_all(r.join("var/lib/selinux/default/active/modules/100/base")).unwrap();
        fs::write(
            r.join("var/lib/selinux/default/active/modules_checksum"),
            "sha",
        )
        .unwrap();
        fs::write(r.join("var/lib/selinux/default/semanage.read.LOCK"), "").unwrap();
        fs::create_dir_all(r.join("var/lib/selinux/final")).unwrap();
        fs::write(r.join(CONF), conf).unwrap();
        d
    }

    #[test]
    fn the_store_moves_into_etc_and_semanage_conf_points_there() {
        let d = tree("module-store = direct\n# store-root = /somewhere\nexpand-check=0\n");
        let r = d.path();
        assert_eq!(into_etc(r).unwrap(), ["default"]);
        assert!(!r.join("var/lib/selinux").exists());
        let s = r.join("etc/selinux/default");
        assert_eq!(
            fs::read_to_string(s.join("active/modules_checksum")).unwrap(),
            "sha"
        );
        assert!(s.join("active/modules/100/base").is_dir());
        assert!(s.join("semanage.read.LOCK").is_file() && s.join("contexts").is_dir());
        assert!(r.join("etc/selinux/final").is_dir());
        let conf = fs::read_to_string(r.join(CONF)).unwrap();
        assert!(conf.starts_with("module-store = direct\n# store-root = /somewhere\n"));
        assert_eq!(store_root(&conf), Some("/etc/selinux"));
        assert_eq!(conf.matches("store-root =").count(), 2, "{conf}");
    }

    #[test]
    fn an_explicit_var_store_root_is_replaced_and_another_one_left_alone() {
        let d = tree("store-root = /var/lib/selinux\n");
        into_etc(d.path()).unwrap();
        let conf = fs::read_to_string(d.path().join(CONF)).unwrap();
        assert_eq!(conf.matches("store-root").count(), 1, "{conf}");
        assert_eq!(store_root(&conf), Some("/etc/selinux"));

        let d = tree("store-root=/usr/lib/selinux\n");
        assert!(into_etc(d.path()).unwrap().is_empty());
        assert!(d.path().join("var/lib/selinux/default/active").is_dir());
    }

    #[test]
    fn nothing_happens_without_libsemanage_and_a_clash_is_refused() {
        let d = tree("");
        fs::remove_file(d.path().join(CONF)).unwrap();
        assert!(into_etc(d.path()).unwrap().is_empty());
        assert!(d.path().join("var/lib/selinux/default").is_dir());

        let d = tree("");
        fs::create_dir_all(d.path().join("etc/selinux/default/active")).unwrap();
        let e = into_etc(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("/etc/selinux/default: active already exists"),
            "{e}"
        );
    }
}
