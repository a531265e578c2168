//! `atomicbuild upload`: put a built image into a cloud.

pub mod aws;
pub mod sigv4;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::UploadAwsArgs;
use sigv4::Credentials;

/// Credentials from the standard places, in AWS's order: the environment,
/// then the shared credentials file's profile.
pub fn aws_credentials(profile: Option<&str>) -> Result<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(a), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key: a,
            secret_key: s,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    let profile = profile
        .map(String::from)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
    if let Some(file) = file.filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(&file)?;
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
    bail!("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add profile [{profile}] to ~/.aws/credentials (or pass --profile)")
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

/// `atomicbuild upload aws`.
pub fn upload_aws(a: &UploadAwsArgs) -> Result<()> {
    let creds = aws_credentials(a.profile.as_deref())?;
    let region = a
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .context("no region: pass --region or set AWS_REGION")?;
    let (ebs, ec2) = match &a.endpoint_url {
        Some(u) => (u.clone(), u.clone()),
        None => (
            format!("https://ebs.{region}.amazonaws.com"),
            format!("https://ec2.{region}.amazonaws.com"),
        ),
    };
    let client = aws::Aws {
        region,
        ebs_endpoint: ebs,
        ec2_endpoint: ec2,
        creds,
        agent: ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build(),
        attempts: a.attempts,
    };
    let sha = crate::output::sha256_file(&a.image)?;
    // Re-running with the same image finds the AMI made before.
    let found = client.ec2(&[
        ("Action", "DescribeImages".into()),
        ("Owner.1", "self".into()),
        ("Filter.1.Name", "tag:atomicbuild:sha256".into()),
        ("Filter.1.Value.1", sha.clone()),
        ("Filter.2.Name", "name".into()),
        ("Filter.2.Value.1", a.name.clone()),
    ])?;
    if let Some(id) = aws::xml_value(&found, "imageId") {
        println!(
            "{id} (already uploaded: an image named {} with this sha256 exists)",
            a.name
        );
        return Ok(());
    }
    let mut tags = vec![("atomicbuild:sha256".to_string(), sha)];
    for t in &a.tag {
        let (k, v) = t
            .split_once('=')
            .with_context(|| format!("--tag {t:?}: expected KEY=VALUE"))?;
        tags.push((k.to_string(), v.to_string()));
    }
    let u = aws::Upload {
        name: &a.name,
        tags,
        boot_mode: a.boot_mode,
        threads: a.threads,
        wait: Duration::from_secs(a.wait_secs),
    };
    let t = std::time::Instant::now();
    let progress = |done: u64, total: u64| {
        if total > 0 && (done / aws::BLOCK).is_multiple_of(64) {
            let rate = done as f64 / t.elapsed().as_secs_f64().max(0.001) / 1048576.0;
            eprintln!("  {} / {} MiB at {rate:.1} MiB/s", done >> 20, total >> 20);
        }
    };
    let r = aws::upload(&client, &a.image, &u, &progress)?;
    eprintln!(
        "uploaded {} blocks ({} MiB) in {:.1} s; snapshot {}",
        r.blocks_written,
        r.bytes_sent >> 20,
        t.elapsed().as_secs_f64(),
        r.snapshot_id
    );
    println!("{}", r.image_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
