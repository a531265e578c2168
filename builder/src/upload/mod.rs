//! `atomicbuild upload`: put a built image into a cloud.

pub mod aws;
pub mod clouds_yaml;
pub mod openstack;
pub mod sigv4;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{UploadAwsArgs, UploadOpenstackArgs};
use sigv4::Credentials;

/// An HTTP failure as text: the status with the service's own message
/// (OpenStack's JSON `error.message`, else the start of the body), or the
/// transport error.
pub(crate) fn http_error(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, r) => {
            let body = r.into_string().unwrap_or_default();
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(String::from))
                .unwrap_or_else(|| body.chars().take(400).collect());
            anyhow::anyhow!("HTTP {code}: {msg}")
        }
        ureq::Error::Transport(t) => anyhow::anyhow!("{t}"),
    }
}

/// Credentials from the standard places, in AWS's order: the environment,
/// the shared credentials file's profile, the EC2 instance's role.
pub fn aws_credentials(profile: Option<&str>) -> Result<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(a), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key: a,
            secret_key: s,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    // A profile named by the user must exist: falling through to the
    // instance's role would act in another account.
    let named = profile.map(String::from).or_else(|| env("AWS_PROFILE"));
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    let shown = file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "~/.aws/credentials".into());
    if let Some(file) = file.as_ref().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(file)?;
        let sec = ini_section(&text, &profile);
        if let (Some(a), Some(s)) = (
            sec.get("aws_access_key_id"),
            sec.get("aws_secret_access_key"),
        ) {
            return Ok(Credentials {
                access_key: a.clone(),
                secret_key: s.clone(),
                session_token: sec.get("aws_session_token").cloned(),
            });
        }
    }
    if named.is_some() {
        bail!("AWS profile [{profile}] has no aws_access_key_id/aws_secret_access_key in {shown}");
    }
    imds_credentials().map_err(|e| {
        anyhow::anyhow!("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, add profile [{profile}] to ~/.aws/credentials (or pass --profile), or run on an EC2 instance with an IAM role (instance metadata: {e:#})")
    })
}

/// `key = value` lines of `[name]` in an INI text.
fn ini_section(text: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut inside = false;
    for l in text.lines().map(str::trim) {
        if let Some(h) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = h.trim() == name || h.trim() == format!("profile {name}");
        } else if inside {
            if let Some((k, v)) = l.split_once('=') {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    out
}

/// Credentials from the instance metadata service (IMDSv2) of the EC2
/// instance this runs on: `$AWS_EC2_METADATA_SERVICE_ENDPOINT` or
/// 169.254.169.254, short timeouts, skipped when
/// `AWS_EC2_METADATA_DISABLED=true`.
pub fn imds_credentials() -> Result<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        bail!("AWS_EC2_METADATA_DISABLED is set");
    }
    let base =
        env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(Duration::from_secs(3))
        .build();
    let token = agent
        .put(&format!("{base}/latest/api/token"))
        .set("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .call()
        .with_context(|| format!("no instance metadata service at {base}"))?
        .into_string()?;
    let get = |path: &str| -> Result<String> {
        Ok(agent
            .get(&format!(
                "{base}/latest/meta-data/iam/security-credentials/{path}"
            ))
            .set("x-aws-ec2-metadata-token", &token)
            .call()
            .with_context(|| format!("instance metadata: iam/security-credentials/{path}"))?
            .into_string()?)
    };
    let roles = get("")?;
    let role = roles
        .lines()
        .next()
        .filter(|r| !r.trim().is_empty())
        .context("this instance has no IAM role (instance metadata lists none)")?
        .trim()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&get(&role)?)
        .with_context(|| format!("instance metadata credentials of role {role}"))?;
    let field = |k: &str| {
        v[k].as_str()
            .map(String::from)
            .with_context(|| format!("instance metadata credentials of role {role} lack {k}"))
    };
    Ok(Credentials {
        access_key: field("AccessKeyId")?,
        secret_key: field("SecretAccessKey")?,
        session_token: Some(field("Token")?),
    })
}

/// An AWS upload, from the command line or a manifest's `[[upload]]`.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    /// AMI name.
    pub name: String,
    /// Region (`None`: AWS_REGION / AWS_DEFAULT_REGION).
    pub region: Option<String>,
    /// Profile of the shared credentials file.
    pub profile: Option<String>,
    /// One endpoint for EBS and EC2 (emulators).
    pub endpoint_url: Option<String>,
    /// Extra tags.
    pub tags: Vec<(String, String)>,
    /// Firmware.
    pub boot_mode: aws::BootMode,
    /// Regions the AMI is copied to.
    pub copy_to_regions: Vec<String>,
    /// Accounts (12 digits) or `all` that may launch it.
    pub launch_permissions: Vec<String>,
    /// Parallel block uploads.
    pub threads: usize,
    /// Attempts per request.
    pub attempts: u32,
    /// Bound for each wait (snapshot, copies).
    pub wait: Duration,
}

/// An OpenStack upload.
#[derive(Debug, Clone)]
pub struct OpenstackTarget {
    /// Image name.
    pub name: String,
    /// clouds.yaml entry (`None`: $OS_CLOUD or the OS_* variables).
    pub cloud: Option<String>,
    /// `uefi` or `bios`.
    pub firmware: crate::cli::Firmware,
    /// os_distro property.
    pub os_distro: String,
    /// os_version property.
    pub os_version: String,
    /// Bound for the wait for `active`.
    pub wait: Duration,
}

/// What one upload left in a cloud (recorded in the build metadata).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    /// `aws` or `openstack`.
    pub target: &'static str,
    /// Image name.
    pub name: String,
    /// The file uploaded.
    pub file: String,
    /// AWS region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// clouds.yaml entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// AMI id or Glance image id.
    pub image_id: String,
    /// AMI copies: region → AMI id.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub copies: std::collections::BTreeMap<String, String>,
    /// False when an identical image existed and nothing was sent.
    pub uploaded: bool,
}

impl AwsTarget {
    /// The client for the main region (resolves region and credentials).
    pub fn client(&self) -> Result<aws::Aws> {
        let creds = aws_credentials(self.profile.as_deref())?;
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .context("no AWS region: pass --region, set region in [[upload]] or set AWS_REGION")?;
        Ok(self.client_in(&region, creds))
    }

    fn client_in(&self, region: &str, creds: Credentials) -> aws::Aws {
        let (ebs, ec2) = match &self.endpoint_url {
            Some(u) => (u.clone(), u.clone()),
            None => (
                format!("https://ebs.{region}.amazonaws.com"),
                format!("https://ec2.{region}.amazonaws.com"),
            ),
        };
        aws::Aws {
            region: region.to_string(),
            ebs_endpoint: ebs,
            ec2_endpoint: ec2,
            creds,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout(Duration::from_secs(120))
                .build(),
            attempts: self.attempts,
        }
    }

    /// Upload `image` (raw) unless an identical AMI exists, copy it to the
    /// other regions, grant launch permissions. `sha256`: the image's, when
    /// the build has just recorded it (else it is computed here).
    pub fn upload(&self, image: &Path, sha256: Option<String>) -> Result<Record> {
        let client = self.client()?;
        let sha = match sha256 {
            Some(s) => s,
            None => crate::output::sha256_file(image)?,
        };
        let mut tags = vec![(aws::SHA_TAG.to_string(), sha.clone())];
        tags.extend(self.tags.iter().cloned());
        // A name taken by other contents, here or in a copy region, stops
        // the upload before any block is sent.
        for region in self.copy_to_regions.iter().filter(|r| **r != client.region) {
            aws::identical_image(
                &self.client_in(region, client.creds.clone()),
                &self.name,
                &sha,
            )?;
        }
        let (image_id, uploaded) = match aws::identical_image(&client, &self.name, &sha)? {
            Some(f) => {
                eprintln!(
                    "{}: an AMI named {} with this sha256 exists in {} ({}); nothing uploaded",
                    f.id, self.name, client.region, f.state
                );
                (f.id, false)
            }
            None => {
                let u = aws::Upload {
                    name: &self.name,
                    tags: tags.clone(),
                    boot_mode: self.boot_mode,
                    threads: self.threads,
                    wait: self.wait,
                };
                let transfer = crate::progress::Transfer::new("uploading blocks");
                let progress = |done: u64, total: u64| transfer.update(done, total);
                let r = aws::upload(&client, image, &u, &progress)?;
                let secs = transfer.finish().as_secs_f64();
                eprintln!(
                    "{}: uploaded {} blocks ({} MiB) in {secs:.1} s, {:.1} MiB/s; snapshot {}",
                    r.image_id,
                    r.blocks_written,
                    r.bytes_sent >> 20,
                    (r.bytes_sent as f64 / 1048576.0) / secs.max(0.001),
                    r.snapshot_id
                );
                (r.image_id, true)
            }
        };
        aws::grant_launch(&client, &image_id, &self.launch_permissions)?;
        let mut copies = std::collections::BTreeMap::new();
        for region in self.copy_to_regions.iter().filter(|r| **r != client.region) {
            let to = self.client_in(region, client.creds.clone());
            let (id, made) = aws::copy_image(&client, &to, &image_id, &self.name, &tags, self.wait)
                .with_context(|| format!("copying {image_id} to {region}"))?;
            aws::grant_launch(&to, &id, &self.launch_permissions)?;
            eprintln!(
                "{id}: {} in {region}",
                if made { "copied" } else { "already copied" }
            );
            copies.insert(region.clone(), id);
        }
        Ok(Record {
            target: "aws",
            name: self.name.clone(),
            file: file_name(image),
            region: Some(client.region.clone()),
            cloud: None,
            image_id,
            copies,
            uploaded,
        })
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `atomicbuild upload aws`.
pub fn upload_aws(a: &UploadAwsArgs) -> Result<()> {
    let mut tags = Vec::new();
    for t in &a.tag {
        let (k, v) = t
            .split_once('=')
            .with_context(|| format!("--tag {t:?}: expected KEY=VALUE"))?;
        tags.push((k.to_string(), v.to_string()));
    }
    let target = AwsTarget {
        name: a.name.clone(),
        region: a.region.clone(),
        profile: a.profile.clone(),
        endpoint_url: a.endpoint_url.clone(),
        tags,
        boot_mode: a.boot_mode,
        copy_to_regions: a.copy_to_region.clone(),
        launch_permissions: a.launch_permission.clone(),
        threads: a.threads,
        attempts: a.attempts,
        wait: Duration::from_secs(a.wait_secs),
    };
    let r = target.upload(&a.image, None)?;
    println!("{}", r.image_id);
    for (region, id) in &r.copies {
        println!("{region} {id}");
    }
    Ok(())
}

/// Idle timeouts only: an upload may take hours, a stalled one fails.
fn openstack_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(600))
        .timeout_write(Duration::from_secs(600))
        .build()
}

/// `raw` or `qcow2` and the virtual disk size, from the file's first
/// bytes (a qcow2 header holds the size as a big-endian u64 at offset 24);
/// compressed files and other disk formats are refused with what they are.
fn glance_disk(p: &Path) -> Result<(&'static str, u64)> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let n = f.read(&mut head)?;
    let head = &head[..n];
    let what = if head.starts_with(b"QFI\xfb") && head.len() >= 32 {
        let size = u64::from_be_bytes(head[24..32].try_into().expect("8 bytes"));
        return Ok(("qcow2", size));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz-compressed"
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd-compressed"
    } else if head.starts_with(&[0x1f, 0x8b]) {
        "gzip-compressed"
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        "a VMDK"
    } else if head.starts_with(b"<<< ") {
        "a VDI"
    } else if head.starts_with(b"conectix") {
        "a dynamic VHD"
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        "a tar archive (an OVA?)"
    } else {
        return Ok(("raw", f.metadata()?.len()));
    };
    bail!(
        "{} is {what}: upload the .raw image or the .qcow2 output to Glance",
        p.display()
    )
}

impl OpenstackTarget {
    /// Upload `image` (raw or qcow2) unless an identical image exists.
    pub fn upload(&self, image: &Path) -> Result<Record> {
        let cloud = openstack::Cloud::load(self.cloud.as_deref())?;
        let (disk_format, virtual_size) = glance_disk(image)?;
        let s = openstack::Session::open(&cloud, openstack_agent())?;
        let spec = openstack::ImageSpec {
            name: &self.name,
            disk_format,
            firmware: if self.firmware == crate::cli::Firmware::Uefi {
                "uefi"
            } else {
                "bios"
            },
            min_disk_gib: virtual_size.div_ceil(1 << 30),
            min_ram_mib: 1024,
            os_distro: &self.os_distro,
            os_version: &self.os_version,
        };
        let t = std::time::Instant::now();
        let (id, uploaded) = openstack::upload(&s, image, &spec, self.wait)?;
        if uploaded {
            eprintln!(
                "{id}: uploaded {} in {:.1} s; Glance's sha512 matches",
                image.display(),
                t.elapsed().as_secs_f64()
            );
        } else {
            eprintln!(
                "{id}: an active image named {} with this sha512 exists; nothing uploaded",
                self.name
            );
        }
        Ok(Record {
            target: "openstack",
            name: self.name.clone(),
            file: file_name(image),
            region: cloud.region.clone(),
            cloud: self.cloud.clone(),
            image_id: id,
            copies: Default::default(),
            uploaded,
        })
    }
}

/// `atomicbuild upload openstack`.
pub fn upload_openstack(a: &UploadOpenstackArgs) -> Result<()> {
    let target = OpenstackTarget {
        name: a.name.clone(),
        cloud: a.cloud.clone(),
        firmware: a.firmware,
        os_distro: a.os_distro.clone(),
        os_version: a.os_version.clone(),
        wait: Duration::from_secs(a.wait_secs),
    };
    println!("{}", target.upload(&a.image)?.image_id);
    Ok(())
}

/// One `[[upload]]` entry, ready to run.
enum Target {
    Aws(AwsTarget),
    Openstack(OpenstackTarget),
}

impl Target {
    fn from_manifest(u: &crate::manifest::Upload) -> Target {
        use crate::manifest::UploadTarget as T;
        let wait = Duration::from_secs(1800);
        match u.target {
            T::Aws => Target::Aws(AwsTarget {
                name: u.name.clone(),
                region: u.region.clone(),
                profile: u.profile.clone(),
                endpoint_url: u.endpoint_url.clone(),
                tags: u.tags.clone().into_iter().collect(),
                boot_mode: u.boot_mode,
                copy_to_regions: u.copy_to_regions.clone(),
                launch_permissions: u.launch_permissions.clone(),
                threads: 8,
                attempts: 6,
                wait,
            }),
            T::Openstack => Target::Openstack(OpenstackTarget {
                name: u.name.clone(),
                cloud: u.cloud.clone(),
                firmware: u.firmware,
                os_distro: u.os_distro.clone(),
                os_version: u.os_version.clone(),
                wait,
            }),
        }
    }

    /// Can it run at all? Authenticates (a Keystone token with the image
    /// endpoint; a signed DescribeRegions) so that a wrong password is
    /// found before a long build, not after it.
    fn check(&self) -> Result<()> {
        match self {
            Target::Aws(a) => {
                a.client()?
                    .ec2(&[("Action", "DescribeRegions".into())])
                    .context("checking the AWS credentials")?;
            }
            Target::Openstack(o) => {
                let cloud = openstack::Cloud::load(o.cloud.as_deref())?;
                openstack::Session::open(&cloud, openstack_agent())?;
            }
        }
        Ok(())
    }

    fn upload(&self, image: &Path, sha256: Option<String>) -> Result<Record> {
        match self {
            Target::Aws(a) => a.upload(image, sha256),
            Target::Openstack(o) => o.upload(image),
        }
    }
}

fn entry_label(i: usize, u: &crate::manifest::Upload) -> String {
    format!(
        "upload[{i}] ({} {})",
        serde_json::to_value(u.target)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        u.name
    )
}

/// Before a build with `--upload`: every entry can authenticate.
pub fn preflight(m: &crate::manifest::Manifest) -> Result<()> {
    if m.uploads.is_empty() {
        bail!(
            "--upload: {} has no [[upload]] entries (see README: Manifest reference)",
            m.path.display()
        );
    }
    for (i, u) in m.uploads.iter().enumerate() {
        Target::from_manifest(u)
            .check()
            .with_context(|| format!("{} in {}", entry_label(i, u), m.path.display()))?;
    }
    Ok(())
}

/// After a build: run every `[[upload]]` entry in order and record what
/// each made in the build metadata (also when a later entry fails).
pub fn run_manifest(m: &crate::manifest::Manifest, metadata: &Path) -> Result<Vec<Record>> {
    let out_dir = metadata.parent().unwrap_or(Path::new("."));
    // The build recorded every file's sha256: no second pass over the image.
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(metadata).with_context(|| format!("reading {}", metadata.display()))?,
    )?;
    let recorded = |file: &Path| {
        meta["artifacts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["file"].as_str() == Some(file_name(file).as_str()))
                .and_then(|x| x["sha256"].as_str().map(String::from))
        })
    };
    let mut records = Vec::new();
    let mut failure = None;
    for (i, u) in m.uploads.iter().enumerate() {
        let file = match u.format {
            crate::manifest::Format::Raw => out_dir.join(format!("{}.raw", m.stem())),
            f => {
                let o = m
                    .outputs
                    .iter()
                    .find(|o| o.format == f)
                    .context("validated: the format has an output")?;
                out_dir.join(o.file_name(&m.stem()))
            }
        };
        eprintln!("==> {} from {}", entry_label(i, u), file.display());
        match Target::from_manifest(u).upload(&file, recorded(&file)) {
            Ok(r) => records.push(r),
            Err(e) => {
                failure = Some(e.context(entry_label(i, u)));
                break;
            }
        }
    }
    record(metadata, &records)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(records),
    }
}

/// Put the records into NAME-VERSION.json (key `uploads`) and its line of
/// SHA256SUMS, both replaced atomically.
fn record(metadata: &Path, records: &[Record]) -> Result<()> {
    let mut meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(metadata).with_context(|| format!("reading {}", metadata.display()))?,
    )?;
    meta["uploads"] = serde_json::to_value(records)?;
    crate::fsutil::write_atomic(metadata, &serde_json::to_vec_pretty(&meta)?)?;
    let sums_path = metadata.with_file_name("SHA256SUMS");
    let name = file_name(metadata);
    let sum = crate::output::sha256_file(metadata)?;
    let old = std::fs::read_to_string(&sums_path).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| l.split_once("  ").map(|(_, f)| f) != Some(name.as_str()))
        .map(String::from)
        .collect();
    lines.push(format!("{sum}  {name}"));
    crate::fsutil::write_atomic(&sums_path, (lines.join("\n") + "\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_records_replace_the_metadata_and_its_checksum_line() {
        let d = tempfile::tempdir().unwrap();
        let meta = d.path().join("x-1.json");
        std::fs::write(&meta, r#"{"name": "x", "uploads": [{"old": true}]}"#).unwrap();
        std::fs::write(d.path().join("x-1.raw"), b"disk").unwrap();
        let raw_sum = crate::output::sha256_file(&d.path().join("x-1.raw")).unwrap();
        std::fs::write(
            d.path().join("SHA256SUMS"),
            format!("{raw_sum}  x-1.raw\n{}  x-1.json\n", "0".repeat(64)),
        )
        .unwrap();
        let r = Record {
            target: "aws",
            name: "x-1".into(),
            file: "x-1.raw".into(),
            region: Some("us-east-1".into()),
            cloud: None,
            image_id: "ami-1".into(),
            copies: [("eu-west-1".to_string(), "ami-2".to_string())].into(),
            uploaded: true,
        };
        record(&meta, &[r]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        assert_eq!(v["name"], "x");
        assert_eq!(v["uploads"].as_array().unwrap().len(), 1);
        assert_eq!(v["uploads"][0]["copies"]["eu-west-1"], "ami-2");
        assert!(v["uploads"][0].get("cloud").is_none());
        let sums = std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap();
        assert_eq!(sums.lines().count(), 2, "{sums}");
        let ok = std::process::Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(d.path())
            .status()
            .unwrap();
        assert!(ok.success(), "{sums}");
    }

    #[test]
    fn glance_gets_raw_or_qcow2_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let mut qcow2 = b"QFI\xfb\0\0\0\x03".to_vec();
        qcow2.resize(24, 0);
        qcow2.extend_from_slice(&(5u64 << 30).to_be_bytes());
        type Case<'a> = (&'a str, &'a [u8], Option<(&'a str, u64)>);
        let cases: [Case; 5] = [
            ("a.qcow2", &qcow2, Some(("qcow2", 5 << 30))),
            ("a.raw", &[0u8; 600], Some(("raw", 600))),
            ("a.raw.xz", &[0xfd, b'7', b'z', b'X', b'Z', 0, 1], None),
            ("a.raw.zst", &[0x28, 0xb5, 0x2f, 0xfd, 9], None),
            ("a.vmdk", b"KDMV\x01\0\0\0", None),
        ];
        for (name, bytes, want) in cases {
            let p = d.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            match (glance_disk(&p), want) {
                (Ok(f), Some(w)) => assert_eq!(f, w, "{name}"),
                (Err(e), None) => assert!(e.to_string().contains("upload the .raw"), "{e}"),
                (r, w) => panic!("{name}: {r:?}, expected {w:?}"),
            }
        }
    }

    #[test]
    fn profiles_are_read_from_the_credentials_file() {
        let t = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n[ci]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        assert_eq!(ini_section(t, "default")["aws_access_key_id"], "A");
        let ci = ini_section(t, "ci");
        assert_eq!(
            (
                ci["aws_access_key_id"].as_str(),
                ci["aws_session_token"].as_str()
            ),
            ("B", "X")
        );
        assert!(ini_section(t, "none").is_empty());
    }
}
