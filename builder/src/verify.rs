//! `atomicbuild verify`: rebuild from a lock in a scratch directory, with
//! the same SOURCE_DATE_EPOCH and no cached stages, and compare the result
//! with an earlier build's outputs bit for bit.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::manifest;
use crate::model::Metadata;
use crate::pipeline::{self, BuildOptions};

/// The first difference between two files, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Difference {
    /// Byte offset of the first differing byte.
    pub start: u64,
    /// Offset just past the last differing byte of that run (within the
    /// compared window).
    pub end: u64,
}

/// Compare two files; `None` when identical.
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<Difference>> {
    let mut fa = File::open(a).with_context(|| format!("opening {}", a.display()))?;
    let mut fb = File::open(b).with_context(|| format!("opening {}", b.display()))?;
    let (la, lb) = (fa.metadata()?.len(), fb.metadata()?.len());
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        let n = na.min(nb);
        if ba[..n] == bb[..n] && na == nb {
            if n == 0 {
                return Ok(None);
            }
            off += n as u64;
            continue;
        }
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            let j = (i..n).rev().find(|&j| ba[j] != bb[j]).unwrap_or(i);
            return Ok(Some(Difference {
                start: off + i as u64,
                end: off + j as u64 + 1,
            }));
        }
        // Same bytes up to the shorter read: the files differ in length.
        return Ok(Some(Difference {
            start: off + n as u64,
            end: la.max(lb),
        }));
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// Rebuild and compare; prints the verdict (a JSON object with `json`:
/// identical, commit, image, differences, kept) and fails when anything
/// differs.
pub fn verify(manifest_path: &Path, lock: &Path, output: &Path, json: bool) -> Result<()> {
    let m = manifest::load(manifest_path)?;
    let stem = m.stem();
    let meta_path = output.join(format!("{stem}.json"));
    if !meta_path.is_file() {
        bail!(
            "{} does not exist: build first, then verify",
            meta_path.display()
        );
    }
    let meta = Metadata::load(&meta_path)?;
    let epoch = meta.source_date_epoch;
    std::env::set_var("SOURCE_DATE_EPOCH", epoch.to_string());

    std::fs::create_dir_all("/var/tmp")?;
    let scratch = crate::fsutil::owned_tempdir(Path::new("/var/tmp"), "atomicbuild-verify")?;
    let opts = BuildOptions {
        manifest: manifest_path.to_owned(),
        output: scratch.path().join("out"),
        workdir: Some(scratch.path().join("work")),
        cache_dir: None,
        cache_max: 0,
        keep_workdir: true,
        lock: Some(lock.to_owned()),
        no_cache: true,
        upload: false,
    };
    eprintln!(
        "rebuilding {stem} from {} with SOURCE_DATE_EPOCH={epoch} in {}",
        lock.display(),
        scratch.path().display()
    );
    let built = pipeline::build(&opts)?;
    let again = Metadata::load(&built.metadata)?;
    let raw: PathBuf = output.join(format!("{stem}.raw"));
    let problems = differences(&meta, &again, &raw, &built.raw)?;
    let kept = (!problems.is_empty()).then(|| scratch.keep());
    if json {
        let v = serde_json::json!({
            "identical": problems.is_empty(),
            "commit": meta.ostree.commit,
            "image": raw,
            "differences": problems,
            "kept": kept,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if let Some(kept) = kept {
        bail!(
            "not reproducible:\n  {}\n(the rebuild is kept in {} for inspection)",
            problems.join("\n  "),
            kept.display()
        )
    }
    if !json {
        println!(
            "identical: commit {} and {} reproduce bit for bit",
            meta.ostree.commit,
            raw.display()
        );
    }
    Ok(())
}

/// Everything that differs between a build (`meta`, its raw image `raw`)
/// and its rebuild (`again`, `raw2`).
fn differences(meta: &Metadata, again: &Metadata, raw: &Path, raw2: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let (commit, commit2) = (&meta.ostree.commit, &again.ostree.commit);
    if commit2 != commit {
        problems.push(format!(
            "OSTree commit differs: {commit} was built, the rebuild made {commit2}"
        ));
    }
    if let Some(d) = first_difference(raw, raw2)? {
        let part = meta
            .disk
            .partitions
            .iter()
            .find(|p| d.start >= p.offset && d.start < p.offset + p.size)
            .map(|p| {
                format!(
                    "partition {} ({}), {} bytes into it",
                    p.number,
                    p.name,
                    d.start - p.offset
                )
            })
            .unwrap_or_else(|| "the partition table or the gaps between partitions".into());
        problems.push(format!(
            "raw image differs first at bytes {}..{} ({part})",
            d.start, d.end
        ));
    }
    // Every other artifact (qcow2, VMDK, ...) by its recorded checksum.
    for a in meta.artifacts.iter().skip(1) {
        match again.artifact(&a.file) {
            Some(b) if b.sha256 == a.sha256 => {}
            Some(_) => problems.push(format!("{} differs", a.file)),
            None => problems.push(format!("{} was not rebuilt", a.file)),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_differing_run_and_length_changes() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        let mut data = vec![0u8; 3 << 20];
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, &data).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);
        data[(1 << 20) + 5] = 1;
        data[(1 << 20) + 9] = 1;
        std::fs::write(&b, &data).unwrap();
        assert_eq!(
            first_difference(&a, &b).unwrap(),
            Some(Difference {
                start: (1 << 20) + 5,
                end: (1 << 20) + 10
            })
        );
        std::fs::write(&b, &data[..100]).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap().unwrap().start, 100);
    }
}
