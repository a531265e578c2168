//! A raw disk image into an EBS snapshot through the EBS direct APIs (no S3
//! bucket, no vmimport role), then an AMI.
//!
//! StartSnapshot → PutSnapshotBlock for every 512 KiB block that holds
//! data (holes and all-zero blocks are skipped; each block carries its
//! SHA-256) from a few threads, with retries on throttling and 5xx →
//! CompleteSnapshot with the linear aggregate of the block checksums →
//! DescribeSnapshots until `completed` → RegisterImage. A failure after
//! StartSnapshot deletes the snapshot again.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::ami::{register, Upload};
use super::client::{xml_value, Aws, Req};

/// EBS direct API block size.
pub const BLOCK: u64 = 512 * 1024;

/// The result.
#[derive(Debug)]
pub struct Uploaded {
    /// Snapshot id.
    pub snapshot_id: String,
    /// AMI id.
    pub image_id: String,
    /// Blocks written (holes and zero blocks are not).
    pub blocks_written: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Linear aggregate checksum (base64 SHA-256 of the block checksums).
    pub aggregate: String,
}

/// Indices of the blocks of `f` that may hold data.
fn candidate_blocks(f: &File, len: u64) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    for (s, e) in crate::fsutil::data_ranges(f, len)? {
        let first = s / BLOCK;
        let last = e.div_ceil(BLOCK);
        for b in first..last {
            if v.last() != Some(&b) {
                v.push(b);
            }
        }
    }
    Ok(v)
}

/// Upload `image` and register it.
pub fn upload(
    aws: &Aws,
    image: &Path,
    u: &Upload,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Uploaded> {
    let f = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let len = f.metadata()?.len();
    let gib = len.div_ceil(1 << 30);
    let tags: Vec<serde_json::Value> = u
        .tags
        .iter()
        .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
        .collect();
    let started = aws
        .ebs_json(
            "/snapshots".into(),
            &serde_json::json!({
                "VolumeSize": gib,
                "Description": format!("atomicbuild: {}", u.name),
                "Tags": tags,
                "Timeout": 60,
            }),
            vec![],
        )
        .context("EBS StartSnapshot")?;
    let snapshot_id = started["SnapshotId"]
        .as_str()
        .context("StartSnapshot returned no SnapshotId")?
        .to_string();
    let result = write_and_register(aws, &f, len, &snapshot_id, u, progress);
    if result.is_err() {
        // Nothing half-made stays behind.
        if let Err(e) = aws.ec2(&[
            ("Action", "DeleteSnapshot".into()),
            ("SnapshotId", snapshot_id.clone()),
        ]) {
            eprintln!("warning: could not delete the unfinished snapshot {snapshot_id}; delete it by hand: {e:#}");
        }
    }
    result
}

/// Blocks sent (with their checksums, sorted) and bytes sent.
struct Sent {
    sums: Vec<(u64, [u8; 32])>,
    bytes: u64,
}

/// PutSnapshotBlock for every candidate block, from `threads` threads; the
/// first failure stops them all.
fn send_blocks(
    aws: &Aws,
    f: &File,
    len: u64,
    snapshot_id: &str,
    threads: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Sent> {
    let blocks = candidate_blocks(f, len)?;
    let next = AtomicUsize::new(0);
    let sent = AtomicU64::new(0);
    let read = AtomicU64::new(0);
    let sums: Mutex<Vec<(u64, [u8; 32])>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let total = blocks.len() as u64 * BLOCK;
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; BLOCK as usize];
                loop {
                    if failure.lock().unwrap().is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&b) = blocks.get(i) else { return };
                    let r = put_block(aws, f, len, snapshot_id, b, &mut buf);
                    if r.is_ok() {
                        // Progress counts blocks read, sent or found zero.
                        progress(read.fetch_add(BLOCK, Ordering::Relaxed) + BLOCK, total);
                    }
                    match r {
                        Ok(Some(sum)) => {
                            sums.lock().unwrap().push((b, sum));
                            sent.fetch_add(BLOCK, Ordering::Relaxed);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            *failure.lock().unwrap() = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    let mut sums = sums.into_inner().unwrap();
    sums.sort();
    Ok(Sent {
        sums,
        bytes: sent.load(Ordering::Relaxed),
    })
}

fn write_and_register(
    aws: &Aws,
    f: &File,
    len: u64,
    snapshot_id: &str,
    u: &Upload,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Uploaded> {
    let sent = send_blocks(aws, f, len, snapshot_id, u.threads, progress)?;
    let mut h = Sha256::new();
    for (_, s) in &sent.sums {
        h.update(s);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let aggregate = b64.encode(h.finalize());
    let done = aws
        .ebs_json(
            format!("/snapshots/completion/{snapshot_id}"),
            &serde_json::json!({}),
            vec![
                (
                    "x-amz-ChangedBlocksCount".into(),
                    sent.sums.len().to_string(),
                ),
                ("x-amz-Checksum".into(), aggregate.clone()),
                ("x-amz-Checksum-Algorithm".into(), "SHA256".into()),
                ("x-amz-Checksum-Aggregation-Method".into(), "LINEAR".into()),
            ],
        )
        .context("EBS CompleteSnapshot")?;
    if done["Status"] == "error" {
        bail!("CompleteSnapshot reported an error for {snapshot_id}");
    }
    wait_completed(aws, snapshot_id, u.wait)?;
    let image_id = register(aws, snapshot_id, u, len)?;
    Ok(Uploaded {
        snapshot_id: snapshot_id.to_string(),
        image_id,
        blocks_written: sent.sums.len() as u64,
        bytes_sent: sent.bytes,
        aggregate,
    })
}

/// Read block `b`; send it unless it is all zeros. Returns its checksum.
fn put_block(
    aws: &Aws,
    f: &File,
    len: u64,
    snapshot_id: &str,
    b: u64,
    buf: &mut [u8],
) -> Result<Option<[u8; 32]>> {
    let off = b * BLOCK;
    let n = (len - off).min(BLOCK) as usize;
    buf.fill(0);
    f.read_exact_at(&mut buf[..n], off)
        .with_context(|| format!("reading block {b}"))?;
    if buf.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let sum: [u8; 32] = Sha256::digest(&*buf).into();
    let b64 = base64::engine::general_purpose::STANDARD;
    aws.send(&Req {
        method: "PUT",
        endpoint: &aws.ebs_endpoint,
        service: "ebs",
        path: format!("/snapshots/{snapshot_id}/blocks/{b}"),
        headers: vec![
            ("content-type".into(), "application/octet-stream".into()),
            ("x-amz-Data-Length".into(), BLOCK.to_string()),
            ("x-amz-Checksum".into(), b64.encode(sum)),
            ("x-amz-Checksum-Algorithm".into(), "SHA256".into()),
        ],
        body: buf,
        sign_body: false,
    })
    .with_context(|| format!("EBS PutSnapshotBlock {b}"))?;
    Ok(Some(sum))
}

fn wait_completed(aws: &Aws, snapshot_id: &str, wait: Duration) -> Result<()> {
    let done = crate::upload::poll_until(wait, Duration::from_secs(2), || {
        let xml = aws.ec2(&[
            ("Action", "DescribeSnapshots".into()),
            ("SnapshotId.1", snapshot_id.to_string()),
        ])?;
        match xml_value(&xml, "status") {
            Some("completed") => Ok(Some(())),
            Some("error") => bail!("snapshot {snapshot_id} failed"),
            _ => Ok(None),
        }
    })?;
    done.with_context(|| {
        format!(
            "snapshot {snapshot_id} did not complete within {} s",
            wait.as_secs()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blocks_with_data_are_candidates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.set_len(8 * BLOCK).unwrap();
        f.write_all_at(b"x", 3 * BLOCK + 5).unwrap();
        f.write_all_at(b"y", 6 * BLOCK).unwrap();
        let c = candidate_blocks(&f, 8 * BLOCK).unwrap();
        assert!(c.contains(&3) && c.contains(&6), "{c:?}");
        // Holes are skipped where the file system reports them.
        if crate::fsutil::data_ranges(&f, 8 * BLOCK).unwrap().len() > 1 {
            assert!(!c.contains(&0) && !c.contains(&7), "{c:?}");
        }
    }
}
