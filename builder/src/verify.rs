//! `atomicbuild verify`: rebuild from a lock in a scratch directory, with
//! the same SOURCE_DATE_EPOCH and no cached stages, and compare the result
//! with an earlier build's outputs bit for bit.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::BuildArgs;
use crate::{manifest, pipeline};

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

/// Rebuild and compare; prints the verdict and fails when anything differs.
pub fn verify(manifest_path: &Path, lock: &Path, output: &Path) -> Result<()> {
    let m = manifest::load(manifest_path)?;
    let stem = m.stem();
    let meta_path = output.join(format!("{stem}.json"));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).with_context(|| {
            format!("reading {} (build first, then verify)", meta_path.display())
        })?)
        .with_context(|| format!("parsing {}", meta_path.display()))?;
    let epoch = meta["source_date_epoch"]
        .as_u64()
        .context("the build metadata has no source_date_epoch")?;
    let commit = meta["ostree"]["commit"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    std::env::set_var("SOURCE_DATE_EPOCH", epoch.to_string());

    std::fs::create_dir_all("/var/tmp")?;
    let scratch = tempfile::Builder::new()
        .prefix("atomicbuild-verify.")
        .tempdir_in("/var/tmp")?;
    let args = BuildArgs {
        manifest: Some(manifest_path.to_owned()),
        output: scratch.path().join("out"),
        workdir: Some(scratch.path().join("work")),
        cache_dir: None,
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
    let built = pipeline::build(&args)?;
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&built.metadata)?)?;
    let commit2 = again["ostree"]["commit"].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    if commit2 != commit {
        problems.push(format!(
            "OSTree commit differs: {commit} was built, the rebuild made {commit2}"
        ));
    }
    let raw: PathBuf = output.join(format!("{stem}.raw"));
    if let Some(d) = first_difference(&raw, &built.raw)? {
        let part = meta["disk"]["partitions"]
            .as_array()
            .and_then(|ps| {
                ps.iter().find(|p| {
                    let o = p["offset"].as_u64().unwrap_or(0);
                    let s = p["size"].as_u64().unwrap_or(0);
                    d.start >= o && d.start < o + s
                })
            })
            .map(|p| {
                format!(
                    "partition {} ({}), {} bytes into it",
                    p["number"],
                    p["name"].as_str().unwrap_or("?"),
                    d.start - p["offset"].as_u64().unwrap_or(0)
                )
            })
            .unwrap_or_else(|| "the partition table or the gaps between partitions".into());
        problems.push(format!(
            "raw image differs first at bytes {}..{} ({part})",
            d.start, d.end
        ));
    }
    // Every other artifact (qcow2, VMDK, ...) by its recorded checksum.
    let sums = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["artifacts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x["file"].as_str().unwrap_or("").to_string(),
                            x["sha256"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let rebuilt = sums(&again);
    for (file, sum) in sums(&meta).iter().skip(1) {
        match rebuilt.iter().find(|(f, _)| f == file) {
            Some((_, s)) if s == sum => {}
            Some(_) => problems.push(format!("{file} differs")),
            None => problems.push(format!("{file} was not rebuilt")),
        }
    }
    if problems.is_empty() {
        println!(
            "identical: commit {commit} and {} reproduce bit for bit",
            raw.display()
        );
        Ok(())
    } else {
        let kept = scratch.keep();
        bail!(
            "not reproducible:\n  {}\n(the rebuild is kept in {} for inspection)",
            problems.join("\n  "),
            kept.display()
        )
    }
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
