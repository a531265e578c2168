//! Faults inside whole builds of a variant of the test image (its overlay's
//! marker changed, so that commit and disk are its own):
//! - kill safety: the build SIGKILLs itself at every failpoint in turn
//!   (`ATOMICBUILD_FAILPOINT`, one at least in every stage), always into
//!   the same output and work directories; after each, whatever is under a
//!   final name is complete, and the build that finally runs through is
//!   bit-identical to a reference build made before the kills, and
//!   nothing the killed builds made in TMPDIR (GnuPG homes) is left;
//! - a full cache: the cache (a copy of the warm one) on a tmpfs too small
//!   for the disk image's entry: a clear error naming the cache, nothing
//!   under a final name; grown, the next build succeeds, identical;
//! - a damaged cache: a flipped byte in the cached initramfs, the cached
//!   disk image and a file object of the commit: the build drops the
//!   damaged entries, finds the object when it reads it (the deploy's pull
//!   checks every object), runs the cache check and builds again, identical.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cmd::tail;

use super::{build_cmd, final_names, write_variant, Tmpfs};
use testkit::flip_byte;

/// The variant and its reference build.
pub struct Reference {
    pub manifest: PathBuf,
    pub out: PathBuf,
    pub raw_sha: String,
    pub stem: String,
}

fn sha(p: &Path) -> String {
    atomicbuild::fsutil::sha256_file(p).unwrap()
}

/// Build the variant once, as the reference, with the warm default cache.
pub fn reference(test_manifest: &Path, dir: &Path, work: &Path) -> Reference {
    let manifest = write_variant(test_manifest, dir, |t| t.to_string());
    std::fs::write(
        dir.join("overlay/usr/share/atomicbuild-test/marker"),
        "faults\n",
    )
    .unwrap();
    let out = dir.join("reference");
    let o = build_cmd(&manifest, &out, work).output().unwrap();
    assert!(
        o.status.success(),
        "the reference build failed:\n{}",
        tail(&String::from_utf8_lossy(&o.stderr), 30)
    );
    let m = atomicbuild::manifest::load(&manifest).unwrap();
    let stem = m.stem();
    Reference {
        raw_sha: sha(&out.join(format!("{stem}.raw"))),
        manifest,
        out,
        stem,
    }
}

/// Remove the newest disk entry of `cache` (the reference's), so that the
/// next build writes its disk again.
fn drop_newest_disk_entry(cache: &Path) {
    let newest = atomicbuild::cache::list(cache)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "disk")
        .max_by_key(|e| e.last_used)
        .expect("the reference build stored its disk");
    std::fs::remove_dir_all(&newest.path).unwrap();
}

/// Every file under a final name in `out` is complete: equal to the
/// reference's (the build is reproducible), the metadata parses.
fn complete(r: &Reference, out: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for name in final_names(out) {
        let p = out.join(&name);
        let ok = match name.strip_prefix(&r.stem) {
            Some(".json") => {
                serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap()).is_ok()
            }
            Some(_) => sha(&p) == sha(&r.out.join(&name)),
            None => Command::new("sha256sum")
                .args(["-c", "--quiet", "SHA256SUMS"])
                .current_dir(out)
                .status()
                .unwrap()
                .success(),
        };
        if !ok {
            bad.push(name);
        }
    }
    bad
}

/// Kill the build at every failpoint, then let it run through.
pub fn failpoints(r: &Reference, dir: &Path) -> Vec<String> {
    drop_newest_disk_entry(&atomicbuild::pipeline::default_cache_dir());
    let (out, work) = (dir.join("out"), dir.join("work"));
    // Their own TMPDIR, to see what the killed builds leave there.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut bad = Vec::new();
    for point in atomicbuild::failpoint::POINTS {
        let t = std::time::Instant::now();
        let o = build_cmd(&r.manifest, &out, &work)
            .env("TMPDIR", &tmp)
            .env("ATOMICBUILD_FAILPOINT", point)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!(
            "failpoint {point}: killed after {:.1}s",
            t.elapsed().as_secs_f64()
        );
        if o.status.signal() != Some(9) || !err.contains(&format!("failpoint {point}: killing")) {
            bad.push(format!(
                "failpoint {point} was not reached ({}):\n{}",
                o.status,
                tail(&err, 12)
            ));
            continue;
        }
        let incomplete = complete(r, &out);
        if !incomplete.is_empty() {
            bad.push(format!(
                "after failpoint {point}, incomplete under final names: {incomplete:?}"
            ));
        }
        if !atomicbuild::fsutil::mounts_under(&work).unwrap().is_empty() {
            bad.push(format!(
                "failpoint {point} left mounts below {}",
                work.display()
            ));
        }
    }
    let o = build_cmd(&r.manifest, &out, &work)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let raw = out.join(format!("{}.raw", r.stem));
    if !o.status.success() || sha(&raw) != r.raw_sha || !complete(r, &out).is_empty() {
        bad.push(format!(
            "the build after the failpoints is not the reference's:\n{}",
            tail(&String::from_utf8_lossy(&o.stderr), 20)
        ));
    }
    // The killed builds' GnuPG homes (the signing key imported) are gone.
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("atomicbuild-"))
        .collect();
    if !left.is_empty() {
        bad.push(format!("the killed builds left {left:?} in TMPDIR"));
    }
    bad
}

fn du(p: &Path) -> u64 {
    let o = Command::new("du").args(["-sb"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

/// A copy of the warm cache without disk images on a tmpfs with `spare`
/// bytes free.
fn cache_copy(dir: &Path, spare: u64) -> (PathBuf, Tmpfs) {
    let src = atomicbuild::pipeline::default_cache_dir();
    let parts = ["repo", "debs", "stages/install", "stages/initramfs"];
    let need: u64 = parts.iter().map(|p| du(&src.join(p))).sum();
    let cache = dir.join("cache");
    let fs = Tmpfs::mount(&cache, &format!("{}m", (need + spare) >> 20));
    for p in parts {
        let dst = cache.join(p);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(src.join(p))
            .arg(&dst)
            .status()
            .unwrap();
        assert!(st.success(), "copying {p} of the cache");
    }
    (cache, fs)
}

fn build_with_cache(r: &Reference, cache: &Path, out: &Path, work: &Path) -> (bool, String) {
    let o = build_cmd(&r.manifest, out, work)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The full cache, then the damaged one.
pub fn full_and_damaged_cache(r: &Reference, dir: &Path) -> Vec<String> {
    // Room for the commit's new objects (and libostree's 3% reserve), not
    // for the disk image's entry.
    let (cache, fs) = cache_copy(dir, 450 << 20);
    let work = dir.join("work");
    let mut bad = Vec::new();
    let out1 = dir.join("full");
    let (ok, err) = build_with_cache(r, &cache, &out1, &work);
    // The disk image's entry does not fit; should the commit not fit
    // either, it must say the same of the object store.
    let named = [
        format!(
            "storing the disk cache entry in {}",
            cache.join("stages/disk").display()
        ),
        format!(
            "committing into the object store {}",
            cache.join("repo").display()
        ),
    ];
    eprintln!("[full cache] {}", tail(&err, 3));
    if ok
        || !named.iter().any(|n| err.contains(n))
        || !err.contains("file system is full")
        || !final_names(&out1).is_empty()
    {
        bad.push(format!(
            "a full cache should fail naming it, leaving nothing: {:?}\n{}",
            final_names(&out1),
            tail(&err, 12)
        ));
    }
    fs.resize("8g");
    let (ok, err) = build_with_cache(r, &cache, &out1, &work);
    let raw = |out: &Path| out.join(format!("{}.raw", r.stem));
    if !ok || sha(&raw(&out1)) != r.raw_sha {
        bad.push(format!(
            "with space again, the build should equal the reference:\n{}",
            tail(&err, 12)
        ));
        return bad;
    }
    // A flipped byte in the initramfs, the disk image and a file object.
    for e in std::fs::read_dir(cache.join("stages/initramfs"))
        .unwrap()
        .flatten()
    {
        if e.path().join("initramfs.img").is_file() {
            flip_byte(&e.path().join("initramfs.img"), 1 << 20);
        }
    }
    for e in std::fs::read_dir(cache.join("stages/disk"))
        .unwrap()
        .flatten()
    {
        if e.path().join("image.raw").is_file() {
            flip_byte(&e.path().join("image.raw"), 700 << 20);
        }
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join(format!("{}.json", r.stem))).unwrap())
            .unwrap();
    let commit = meta["ostree"]["commit"].as_str().unwrap();
    let ls = Command::new("ostree")
        .arg(format!("--repo={}", cache.join("repo").display()))
        .args(["ls", "-C", commit, "/usr/share/atomicbuild-test/marker"])
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&ls.stdout)
        .split_whitespace()
        .nth(4)
        .unwrap_or("")
        .to_string();
    flip_byte(
        &cache.join(format!("repo/objects/{}/{}.file", &sum[..2], &sum[2..])),
        1,
    );
    let out2 = dir.join("damaged");
    let (ok, err) = build_with_cache(r, &cache, &out2, &work);
    eprintln!(
        "[damaged cache] {}",
        err.lines()
            .filter(|l| l.contains("damaged") || l.contains("fsck"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let said = [
        "cache entry initramfs/",
        "cache entry disk/",
        "); rebuilding it",
        "the cache is damaged: ",
        "Corrupted file object",
        "cache fsck: ",
    ];
    let missing: Vec<&str> = said.iter().copied().filter(|s| !err.contains(s)).collect();
    let same = ok && sha(&raw(&out2)) == r.raw_sha;
    if !same || !missing.is_empty() {
        let cmp = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cmp -l {:?} {:?} | head -5",
                raw(&out1),
                raw(&out2)
            ))
            .output()
            .unwrap();
        bad.push(format!(
            "a damaged cache should be found, dropped and rebuilt identically (identical: {same}; not said: {missing:?}; commit {commit} before; first differences from the build before:\n{}):\n{}",
            String::from_utf8_lossy(&cmp.stdout),
            err
        ));
    }
    bad
}
