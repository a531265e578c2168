//! `atomicbuild test`: build (cached) or take an image, boot every case on
//! every firmware asked for, one after the other, and report: a line per
//! case run, JUnit XML, JSON, kept logs, the boot times in the build's
//! metadata. Fails when any rule failed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::budgets::Budgets;
use crate::cli::TestArgs;
use crate::model::Firmware;
use crate::pipeline::{self, BuildOptions};
use crate::vmtest::script::After;
use crate::vmtest::{self, Boot, Case, CaseResult};

/// The image a case boots, with the budgets it answers to and, when this
/// run built it, its metadata (where the boot times go).
struct Target {
    image: PathBuf,
    budgets: Budgets,
    metadata: Option<PathBuf>,
    /// The key that signs its `SHA256SUMS`.
    signing: Option<crate::signing::Signing>,
}

/// Build `manifest` into `output` (cached; `[budgets]` checked).
fn build(a: &TestArgs, manifest: &Path, output: &Path) -> Result<Target> {
    let built = pipeline::build(&BuildOptions {
        manifest: manifest.to_owned(),
        output: output.to_owned(),
        workdir: None,
        cache_dir: a.cache_dir.clone(),
        cache_max: a.cache_max,
        keep_workdir: false,
        lock: None,
        no_cache: false,
        upload: false,
    })?;
    Ok(Target {
        image: built.raw,
        budgets: built.manifest.budgets,
        metadata: Some(built.metadata),
        signing: built.manifest.signing,
    })
}

/// What `case` boots.
fn target(a: &TestArgs, case: &Case) -> Result<Target> {
    let manifest = case.manifest.clone().or_else(|| a.manifest.clone());
    if let Some(image) = &a.image {
        if !image.is_file() {
            anyhow::bail!("--image {}: no such file", image.display());
        }
        let budgets = match &manifest {
            Some(m) => crate::manifest::load(m)?.budgets,
            None => Budgets::default(),
        };
        return Ok(Target {
            image: image.clone(),
            budgets,
            metadata: None,
            signing: None,
        });
    }
    match (&case.manifest, &a.manifest) {
        (Some(own), _) => build(a, own, &a.output.join(&case.name)),
        (None, Some(m)) => build(a, m, &a.output),
        (None, None) => anyhow::bail!(
            "test case {} has no host.toml: pass --manifest host.toml (to build) or --image FILE",
            case.dir.display()
        ),
    }
}

/// Boot `case` on `firmware`; logs kept when asked or when it failed.
fn run_one(a: &TestArgs, case: &Case, t: &Target, firmware: Firmware) -> Result<CaseResult> {
    let scratch = tempfile::Builder::new()
        .prefix("atomicbuild-test.")
        .tempdir_in(std::env::temp_dir())?;
    if let Some(fb) = &case.firstboot {
        super::boot::check_firstboot_config(fb)?;
    }
    let label = format!("{} {}", case.name, firmware.name());
    eprintln!(
        "booting {} for case {label} (timeout {}s per boot)",
        t.image.display(),
        case.expect.timeout.as_secs()
    );
    let o = vmtest::run::run(
        &Boot {
            image: &t.image,
            firmware,
            expect: &case.expect,
            firstboot: case.firstboot.as_deref(),
            scratch: scratch.path(),
            forward: Vec::new(),
            after: After::PowerOff,
            budgets: &t.budgets,
            memory: a.memory,
            cpus: a.cpus,
            label,
            devices: crate::qemu::Devices {
                disk: a.disk_bus,
                nic: a.nic,
            },
        },
        Vec::new,
    );
    let mut r = CaseResult::new(&case.name, &t.image, firmware, &o);
    let keep = match &a.keep_logs {
        Some(d) => Some(d.clone()),
        None if !r.passed => Some(a.output.join("test-logs")),
        None => None,
    };
    if let Some(d) = keep {
        let d = d.join(format!("{}-{}", case.name, firmware.name()));
        vmtest::keep_logs(&o, &d)?;
        r.logs = Some(d);
    }
    if let (Some(meta), Some(bt)) = (&t.metadata, &o.boot_time) {
        let key = crate::signing::key_of(t.signing.as_ref())?;
        crate::upload::record::rewrite(meta, key.as_ref(), |m| {
            m.boot_times.retain(|b| {
                (b.firmware.as_str(), b.accel.as_str()) != (bt.firmware.as_str(), bt.accel.as_str())
            });
            m.boot_times.push(bt.clone());
        })
        .with_context(|| format!("recording the boot time in {}", meta.display()))?;
    }
    Ok(r)
}

/// `atomicbuild test`.
pub fn run(a: &TestArgs) -> Result<()> {
    crate::preflight::check_boot(a.firmware.list().contains(&Firmware::Uefi))?;
    let cases: Vec<Case> = if a.cases.is_empty() {
        vec![Case::builtin()]
    } else {
        a.cases
            .iter()
            .map(|d| Case::load(d))
            .collect::<Result<_>>()?
    };
    let mut results = Vec::new();
    for case in &cases {
        let t = target(a, case)?;
        for fw in a.firmware.list() {
            let r = run_one(a, case, &t, fw)?;
            eprintln!("{}", r.summary());
            results.push(r);
        }
    }
    if let Some(j) = &a.junit {
        common::atomic::write(j, vmtest::junit::junit(&results).as_bytes())
            .with_context(|| format!("writing {}", j.display()))?;
    }
    let failed: Vec<&CaseResult> = results.iter().filter(|r| !r.passed).collect();
    if a.json {
        let v = serde_json::json!({"passed": failed.is_empty(), "results": results});
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if failed.is_empty() {
        return Ok(());
    }
    let mut msg = format!("{} of {} case runs failed:", failed.len(), results.len());
    for r in failed {
        msg += &format!("\n{} {}:", r.case, r.firmware);
        for v in r.verdicts.iter().filter(|v| !v.ok && !v.warning) {
            msg += &format!(
                "\n  {}: {}",
                v.rule,
                vmtest::tail_lines(&v.detail, 12).replace('\n', "\n    ")
            );
        }
        if let Some(l) = &r.logs {
            msg += &format!("\n  console and report kept in {}", l.display());
        }
    }
    anyhow::bail!(msg)
}
