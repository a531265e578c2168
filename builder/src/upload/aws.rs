//! `upload aws`: a raw disk image becomes an EBS snapshot through the EBS
//! direct APIs (no S3 bucket, no vmimport role), then an AMI.
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
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::sigv4::{self, Credentials, Scope};

/// EBS direct API block size.
pub const BLOCK: u64 = 512 * 1024;

/// Where and as whom to talk to AWS.
#[derive(Clone)]
pub struct Aws {
    /// Region.
    pub region: String,
    /// EBS direct API endpoint (`https://ebs.REGION.amazonaws.com`).
    pub ebs_endpoint: String,
    /// EC2 endpoint (`https://ec2.REGION.amazonaws.com`).
    pub ec2_endpoint: String,
    /// Credentials.
    pub creds: Credentials,
    /// HTTP agent.
    pub agent: ureq::Agent,
    /// Attempts per request (throttling and 5xx are retried).
    pub attempts: u32,
}

/// An HTTP failure worth retrying (throttling, 5xx, transport).
fn retryable(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Status(code, _) => *code == 429 || *code >= 500,
        ureq::Error::Transport(_) => true,
    }
}

fn amz_date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A request about to be signed and sent.
struct Req<'a> {
    method: &'a str,
    endpoint: &'a str,
    service: &'a str,
    path: String,
    headers: Vec<(String, String)>,
    body: &'a [u8],
    /// Sign the body (false: UNSIGNED-PAYLOAD, for snapshot blocks).
    sign_body: bool,
}

impl Aws {
    fn send(&self, r: &Req) -> Result<String> {
        let host = r
            .endpoint
            .split("://")
            .nth(1)
            .unwrap_or(r.endpoint)
            .trim_end_matches('/')
            .to_string();
        let mut last = None;
        for attempt in 0..self.attempts.max(1) {
            let date = amz_date();
            let payload = if r.sign_body {
                sigv4::sha256_hex(r.body)
            } else {
                sigv4::UNSIGNED_PAYLOAD.to_string()
            };
            let mut headers = r.headers.clone();
            headers.push(("host".into(), host.clone()));
            headers.push(("x-amz-date".into(), date.clone()));
            headers.push(("x-amz-content-sha256".into(), payload.clone()));
            if let Some(t) = &self.creds.session_token {
                headers.push(("x-amz-security-token".into(), t.clone()));
            }
            let scope = Scope {
                amz_date: &date,
                region: &self.region,
                service: r.service,
            };
            let auth = sigv4::authorization(
                &self.creds,
                &scope,
                r.method,
                &r.path,
                "",
                &headers,
                &payload,
            );
            let url = format!("{}{}", r.endpoint.trim_end_matches('/'), r.path);
            let mut q = self.agent.request(r.method, &url);
            for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
                q = q.set(k, v);
            }
            q = q.set("authorization", &auth);
            match q.send_bytes(r.body) {
                Ok(resp) => return resp.into_string().context("reading the response"),
                Err(e) if retryable(&e) && attempt + 1 < self.attempts => {
                    last = Some(super::http_error(e));
                    // Exponential backoff: 0.2 s, 0.4 s, ... at most 10 s.
                    std::thread::sleep(Duration::from_millis((200u64 << attempt).min(10_000)));
                }
                Err(e) => return Err(super::http_error(e)),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
            .with_context(|| format!("after {} attempts", self.attempts))
    }

    /// An EC2 Query API call; returns the XML response.
    pub fn ec2(&self, params: &[(&str, String)]) -> Result<String> {
        let mut all: Vec<(String, String)> = vec![("Version".into(), "2016-11-15".into())];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let body = sigv4::canonical_query(&all);
        let action = params
            .iter()
            .find(|(k, _)| *k == "Action")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.send(&Req {
            method: "POST",
            endpoint: &self.ec2_endpoint,
            service: "ec2",
            path: "/".into(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: body.as_bytes(),
            sign_body: true,
        })
        .with_context(|| format!("EC2 {action}"))
    }

    fn ebs_json(
        &self,
        path: String,
        body: &serde_json::Value,
        headers: Vec<(String, String)>,
    ) -> Result<serde_json::Value> {
        let bytes = serde_json::to_vec(body)?;
        let mut h = vec![("content-type".to_string(), "application/json".to_string())];
        h.extend(headers);
        let text = self.send(&Req {
            method: "POST",
            endpoint: &self.ebs_endpoint,
            service: "ebs",
            path,
            headers: h,
            body: &bytes,
            sign_body: true,
        })?;
        serde_json::from_str(&text).with_context(|| format!("EBS answered {text:?}"))
    }
}

/// The value of the first `<tag>...</tag>` in an XML text.
pub fn xml_value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let i = xml.find(&open)? + open.len();
    let j = xml[i..].find(&format!("</{tag}>"))? + i;
    Some(&xml[i..j])
}

/// Firmware the AMI boots with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// UEFI only.
    Uefi,
    /// BIOS only.
    LegacyBios,
    /// UEFI where the instance type has it, else BIOS (atomicbuild's images boot both).
    UefiPreferred,
}

impl BootMode {
    fn as_str(self) -> &'static str {
        match self {
            BootMode::Uefi => "uefi",
            BootMode::LegacyBios => "legacy-bios",
            BootMode::UefiPreferred => "uefi-preferred",
        }
    }
}

/// What to register.
pub struct Upload<'a> {
    /// AMI name.
    pub name: &'a str,
    /// Tags on the snapshot and the image.
    pub tags: Vec<(String, String)>,
    /// Boot mode.
    pub boot_mode: BootMode,
    /// Parallel block uploads.
    pub threads: usize,
    /// How long to wait for the snapshot to complete.
    pub wait: Duration,
}

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

fn write_and_register(
    aws: &Aws,
    f: &File,
    len: u64,
    snapshot_id: &str,
    u: &Upload,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Uploaded> {
    let blocks = candidate_blocks(f, len)?;
    let next = AtomicUsize::new(0);
    let sent = AtomicU64::new(0);
    let read = AtomicU64::new(0);
    let sums: Mutex<Vec<(u64, [u8; 32])>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let total = blocks.len() as u64 * BLOCK;
    std::thread::scope(|s| {
        for _ in 0..u.threads.max(1) {
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
    let mut h = Sha256::new();
    for (_, s) in &sums {
        h.update(s);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let aggregate = b64.encode(h.finalize());
    let done = aws
        .ebs_json(
            format!("/snapshots/completion/{snapshot_id}"),
            &serde_json::json!({}),
            vec![
                ("x-amz-ChangedBlocksCount".into(), sums.len().to_string()),
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
        blocks_written: sums.len() as u64,
        bytes_sent: sent.load(Ordering::Relaxed),
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
    let t = Instant::now();
    loop {
        let xml = aws.ec2(&[
            ("Action", "DescribeSnapshots".into()),
            ("SnapshotId.1", snapshot_id.to_string()),
        ])?;
        match xml_value(&xml, "status") {
            Some("completed") => return Ok(()),
            Some("error") => bail!("snapshot {snapshot_id} failed"),
            _ if t.elapsed() > wait => bail!(
                "snapshot {snapshot_id} did not complete within {} s",
                wait.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// The RegisterImage parameters for a snapshot.
pub fn register_params(snapshot_id: &str, u: &Upload, len: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Action", "RegisterImage".to_string()),
        ("Name", u.name.to_string()),
        ("Description", format!("atomicbuild image {}", u.name)),
        ("Architecture", "x86_64".into()),
        ("VirtualizationType", "hvm".into()),
        ("RootDeviceName", "/dev/xvda".into()),
        ("BlockDeviceMapping.1.DeviceName", "/dev/xvda".into()),
        ("BlockDeviceMapping.1.Ebs.SnapshotId", snapshot_id.into()),
        ("BlockDeviceMapping.1.Ebs.VolumeType", "gp3".into()),
        (
            "BlockDeviceMapping.1.Ebs.VolumeSize",
            len.div_ceil(1 << 30).to_string(),
        ),
        (
            "BlockDeviceMapping.1.Ebs.DeleteOnTermination",
            "true".into(),
        ),
        ("EnaSupport", "true".into()),
        ("BootMode", u.boot_mode.as_str().into()),
        ("ImdsSupport", "v2.0".into()),
    ]
}

fn register(aws: &Aws, snapshot_id: &str, u: &Upload, len: u64) -> Result<String> {
    let xml = aws.ec2(&register_params(snapshot_id, u, len))?;
    let image_id = xml_value(&xml, "imageId")
        .map(String::from)
        .with_context(|| format!("RegisterImage returned no imageId: {xml}"))?;
    // Tags after registering (the checksum tag is how a re-run finds the
    // image); an image that cannot be tagged is deregistered again.
    tag_or_deregister(aws, &image_id, &u.tags, true)?;
    Ok(image_id)
}

/// Tag an image; deregister it if that fails (an untagged image would not
/// be found by a re-run and would be made twice).
fn tag_or_deregister(
    aws: &Aws,
    image_id: &str,
    tags: &[(String, String)],
    deregister: bool,
) -> Result<()> {
    let mut owned: Vec<(String, String)> = vec![("ResourceId.1".into(), image_id.to_string())];
    for (i, (k, v)) in tags.iter().enumerate() {
        owned.push((format!("Tag.{}.Key", i + 1), k.clone()));
        owned.push((format!("Tag.{}.Value", i + 1), v.clone()));
    }
    let mut params: Vec<(&str, String)> = vec![("Action", "CreateTags".into())];
    params.extend(owned.iter().map(|(k, v)| (k.as_str(), v.clone())));
    match aws.ec2(&params) {
        Ok(_) => Ok(()),
        Err(e) if deregister => {
            let _ = aws.ec2(&[
                ("Action", "DeregisterImage".into()),
                ("ImageId", image_id.to_string()),
            ]);
            Err(e.context(format!("tagging {image_id} (deregistered again)")))
        }
        Err(e) => Err(e.context(format!("tagging {image_id}"))),
    }
}

/// The tag that says which image bytes an AMI holds.
pub const SHA_TAG: &str = "atomicbuild:sha256";

/// An AMI of ours, found by name (names are unique per account and region).
#[derive(Debug, Clone)]
pub struct Found {
    /// Its id.
    pub id: String,
    /// `available`, `pending`, `failed`, ...
    pub state: String,
    /// Its `atomicbuild:sha256` tag.
    pub sha256: Option<String>,
}

/// The value of the tag `key` in a DescribeImages item.
fn tag_value<'a>(xml: &'a str, key: &str) -> Option<&'a str> {
    let at = xml.find(&format!("<key>{key}</key>"))?;
    xml_value(&xml[at..], "value")
}

/// Our AMI named `name` in this region, if there is one.
pub fn image_named(aws: &Aws, name: &str) -> Result<Option<Found>> {
    let xml = aws.ec2(&[
        ("Action", "DescribeImages".into()),
        ("Owner.1", "self".into()),
        ("Filter.1.Name", "name".into()),
        ("Filter.1.Value.1", name.to_string()),
    ])?;
    Ok(xml_value(&xml, "imageId").map(|id| Found {
        id: id.to_string(),
        state: xml_value(&xml, "imageState")
            .unwrap_or_default()
            .to_string(),
        sha256: tag_value(&xml, SHA_TAG).map(String::from),
    }))
}

/// Our image named `name` if it holds these bytes; an error if the name is
/// taken by other contents (RegisterImage or CopyImage would refuse it
/// only after the whole upload).
pub fn identical_image(aws: &Aws, name: &str, sha256: &str) -> Result<Option<Found>> {
    match image_named(aws, name)? {
        Some(f) if f.sha256.as_deref() == Some(sha256) => Ok(Some(f)),
        Some(f) => bail!(
            "an AMI named {name} already exists in {} ({}, {}) with other contents: choose another name (--name, or name = in [[upload]]) or deregister it",
            aws.region,
            f.id,
            f.sha256
                .map(|s| format!("sha256 {s}"))
                .unwrap_or_else(|| "not made by atomicbuild".into())
        ),
        None => Ok(None),
    }
}

/// Wait until an image is `available` (copies take a while on AWS). A
/// timeout leaves it be: the next run finds it and waits again.
fn wait_available(aws: &Aws, image_id: &str, wait: Duration) -> Result<()> {
    let t = Instant::now();
    loop {
        let xml = aws.ec2(&[
            ("Action", "DescribeImages".into()),
            ("ImageId.1", image_id.to_string()),
        ]);
        // Right after CopyImage the new id may not be visible yet.
        let state = match &xml {
            Ok(x) => xml_value(x, "imageState").unwrap_or("pending"),
            Err(e) if format!("{e:#}").contains("NotFound") => "pending",
            Err(_) => return xml.map(|_| ()),
        };
        match state {
            "available" => return Ok(()),
            s @ ("failed" | "error" | "invalid" | "deregistered") => {
                bail!("{image_id} in {} is {s}", aws.region)
            }
            _ if t.elapsed() > wait => bail!(
                "{image_id} in {} is still {state} after {} s; run again later to wait for it",
                aws.region,
                wait.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_secs(5)),
        }
    }
}

/// Copy an AMI into `to`'s region (unless an identical one is there), tag
/// it and its snapshot like the source and wait until it is available.
/// Returns its id and whether it was made now. A copy that failed is
/// deregistered (and made again by the next run).
pub fn copy_image(
    from: &Aws,
    to: &Aws,
    image_id: &str,
    name: &str,
    tags: &[(String, String)],
    wait: Duration,
) -> Result<(String, bool)> {
    let sha = tags
        .iter()
        .find(|(k, _)| k == SHA_TAG)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if let Some(f) = identical_image(to, name, sha)? {
        if f.state == "failed" {
            let _ = to.ec2(&[
                ("Action", "DeregisterImage".into()),
                ("ImageId", f.id.clone()),
            ]);
        } else {
            wait_available(to, &f.id, wait)?;
            return Ok((f.id, false));
        }
    }
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "CopyImage".into()),
        ("SourceRegion".into(), from.region.clone()),
        ("SourceImageId".into(), image_id.to_string()),
        ("Name".into(), name.to_string()),
        ("Description".into(), format!("atomicbuild image {name}")),
        // One token per attempt of this call: send()'s retries reuse it.
        ("ClientToken".into(), uuid::Uuid::new_v4().to_string()),
    ];
    for (n, kind) in ["image", "snapshot"].iter().enumerate() {
        params.push((
            format!("TagSpecification.{}.ResourceType", n + 1),
            kind.to_string(),
        ));
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((
                format!("TagSpecification.{}.Tag.{}.Key", n + 1, i + 1),
                k.clone(),
            ));
            params.push((
                format!("TagSpecification.{}.Tag.{}.Value", n + 1, i + 1),
                v.clone(),
            ));
        }
    }
    let refs: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let xml = to.ec2(&refs)?;
    let copy = xml_value(&xml, "imageId")
        .map(String::from)
        .with_context(|| format!("CopyImage returned no imageId: {xml}"))?;
    // Tagged at creation where the API honours TagSpecification; tagged
    // again (idempotent) for those that do not, once the id is visible.
    let mut attempt = 0;
    loop {
        match tag_or_deregister(to, &copy, tags, false) {
            Ok(()) => break,
            Err(e) if attempt < 5 && format!("{e:#}").contains("NotFound") => {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => {
                let _ = to.ec2(&[
                    ("Action", "DeregisterImage".into()),
                    ("ImageId", copy.clone()),
                ]);
                return Err(e.context(format!("copy {copy} deregistered again")));
            }
        }
    }
    wait_available(to, &copy, wait)?;
    Ok((copy, true))
}

/// Who may launch an image: 12-digit account ids, or `all` (public).
pub fn launch_permission_params(accounts: &[String]) -> Vec<(String, String)> {
    accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let k = if a == "all" { "Group" } else { "UserId" };
            (format!("LaunchPermission.Add.{}.{k}", i + 1), a.clone())
        })
        .collect()
}

/// Let these accounts (or `all`) launch the image.
pub fn grant_launch(aws: &Aws, image_id: &str, accounts: &[String]) -> Result<()> {
    if accounts.is_empty() {
        return Ok(());
    }
    let owned = launch_permission_params(accounts);
    let mut params: Vec<(&str, String)> = vec![
        ("Action", "ModifyImageAttribute".into()),
        ("ImageId", image_id.to_string()),
    ];
    params.extend(owned.iter().map(|(k, v)| (k.as_str(), v.clone())));
    aws.ec2(&params).with_context(|| {
        format!(
            "granting launch permissions on {image_id} in {}",
            aws.region
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(16_677), (2015, 8, 30));
        assert_eq!(civil_from_days(20_512), (2026, 2, 28));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn xml_values_are_found() {
        let x = "<RegisterImageResponse><requestId>r</requestId><imageId>ami-1234</imageId></RegisterImageResponse>";
        assert_eq!(xml_value(x, "imageId"), Some("ami-1234"));
        assert_eq!(xml_value(x, "status"), None);
    }

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
