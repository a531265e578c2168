//! Putting built images into clouds: AWS (EBS direct APIs, AMIs, copies)
//! and OpenStack (Keystone + Glance), from the command line or from a
//! manifest's `[[upload]]` entries ([`spec`]), whose results are recorded in
//! the build metadata ([`record`]).

pub mod aws;
pub mod openstack;
pub mod record;
pub mod spec;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::model::{Metadata, UploadRecord};
use aws::AwsTarget;
use openstack::OpenstackTarget;
use spec::{Upload, UploadTarget};

/// How long to wait for a snapshot, a copy or an image to be ready, unless
/// told otherwise.
pub const DEFAULT_WAIT_SECS: u64 = 1800;

/// An HTTP failure as text: the status with the service's own message
/// (OpenStack's JSON `error.message`, else the start of the body), or the
/// transport error.
pub fn http_error(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, r) => {
            let body = r.into_string().unwrap_or_default();
            anyhow::anyhow!("HTTP {code}: {}", service_message(&body))
        }
        ureq::Error::Transport(t) => anyhow::anyhow!("{t}"),
    }
}

/// What a service said in an error body: OpenStack's JSON
/// `error.message`, EC2's XML `<Code>: <Message>`, else the body's first 400
/// characters.
pub fn service_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .or_else(|| {
            let m = aws::client::xml_value(body, "Message")?;
            let code = aws::client::xml_value(body, "Code").unwrap_or("error");
            Some(format!("{code}: {m}"))
        })
        .unwrap_or_else(|| body.chars().take(400).collect())
}

/// Call `poll` every `interval` until it gives a value, for at most `wait`:
/// `Ok(None)` when time ran out (the caller says what was not ready).
/// `poll` returns `Ok(None)` for "not yet" and an error to stop at once.
pub fn poll_until<T>(
    wait: Duration,
    interval: Duration,
    mut poll: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let t = Instant::now();
    loop {
        if let Some(v) = poll()? {
            return Ok(Some(v));
        }
        if t.elapsed() > wait {
            return Ok(None);
        }
        std::thread::sleep(interval);
    }
}

/// The file name of `p`.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One `[[upload]]` entry, ready to run.
enum Target {
    Aws(AwsTarget),
    Openstack(OpenstackTarget),
}

impl Target {
    fn from_spec(u: &Upload) -> Target {
        let wait = Duration::from_secs(DEFAULT_WAIT_SECS);
        match u.target {
            UploadTarget::Aws => Target::Aws(AwsTarget {
                name: u.name.clone(),
                region: u.region.clone(),
                profile: u.profile.clone(),
                endpoint_url: u.endpoint_url.clone(),
                tags: u.tags.clone().into_iter().collect(),
                boot_mode: u.boot_mode,
                copy_to_regions: u.copy_to_regions.clone(),
                launch_permissions: u.launch_permissions.clone(),
                threads: aws::DEFAULT_THREADS,
                attempts: aws::DEFAULT_ATTEMPTS,
                wait,
            }),
            UploadTarget::Openstack => Target::Openstack(OpenstackTarget {
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
                let cloud = openstack::load_cloud(o.cloud.as_deref())?;
                openstack::auth::Session::open(&cloud, openstack::agent())?;
            }
        }
        Ok(())
    }

    fn upload(&self, image: &Path, sha256: Option<String>) -> Result<UploadRecord> {
        match self {
            Target::Aws(a) => a.upload(image, sha256),
            Target::Openstack(o) => o.upload(image),
        }
    }
}

fn entry_label(i: usize, u: &Upload) -> String {
    format!("upload[{i}] ({} {})", u.target.name(), u.name)
}

/// Before a build with `--upload`: every entry of `manifest` can
/// authenticate.
pub fn preflight(uploads: &[Upload], manifest: &Path) -> Result<()> {
    if uploads.is_empty() {
        bail!(
            "--upload: {} has no [[upload]] entries (see README: Manifest reference)",
            manifest.display()
        );
    }
    for (i, u) in uploads.iter().enumerate() {
        Target::from_spec(u)
            .check()
            .with_context(|| format!("{} in {}", entry_label(i, u), manifest.display()))?;
    }
    Ok(())
}

/// After a build: run every entry in order, each on `file_of(entry)`, and
/// record what each made in the build metadata at `metadata` (also when a
/// later entry fails; `SHA256SUMS` signed again with `key`).
pub fn run(
    uploads: &[Upload],
    file_of: impl Fn(&Upload) -> Result<PathBuf>,
    metadata: &Path,
    key: Option<&crate::signing::Key>,
) -> Result<Vec<UploadRecord>> {
    // The build recorded every file's sha256: no second pass over the image.
    let meta = Metadata::load(metadata)?;
    let mut records = Vec::new();
    let mut failure = None;
    for (i, u) in uploads.iter().enumerate() {
        let file = file_of(u)?;
        let recorded = meta.artifact(&file_name(&file)).map(|a| a.sha256.clone());
        eprintln!("==> {} from {}", entry_label(i, u), file.display());
        match Target::from_spec(u).upload(&file, recorded) {
            Ok(r) => records.push(r),
            Err(e) => {
                failure = Some(e.context(entry_label(i, u)));
                break;
            }
        }
    }
    record::record(metadata, &records, key)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(records),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_stops_at_a_value_an_error_or_the_deadline() {
        let mut n = 0;
        let got = poll_until(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            Ok((n == 3).then_some(n))
        })
        .unwrap();
        assert_eq!(got, Some(3));
        let none: Option<()> =
            poll_until(Duration::from_millis(20), Duration::from_millis(5), || {
                Ok(None)
            })
            .unwrap();
        assert!(none.is_none());
        let e = poll_until::<()>(Duration::from_secs(5), Duration::from_millis(1), || {
            bail!("failed for good")
        });
        assert!(e.is_err());
    }
}
