//! One case on one firmware: boot headless in QEMU with the check script
//! (and the case's first-boot config) in fw_cfg, the console on the first
//! serial port and the report on the second, wait for every boot's report
//! within the case's timeout, judge it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::expect::Expect;
use super::judge::{self, BootReport, Verdict};
use super::script::{self, After, FW_CFG_NAME};
use crate::budgets::Budgets;
use crate::model::{BootTime, Firmware};
use crate::qemu::{accel, firstboot_args, Accel, Serial, Vm};

/// One boot of a case to run.
pub struct Boot<'a> {
    /// The disk image (booted as a throw-away snapshot).
    pub image: &'a Path,
    /// Firmware.
    pub firmware: Firmware,
    /// What must hold.
    pub expect: &'a Expect,
    /// First-boot config handed to the agent by fw_cfg.
    pub firstboot: Option<&'a Path>,
    /// Where the console, the report and the script go.
    pub scratch: &'a Path,
    /// Ports forwarded from 127.0.0.1 into the guest.
    pub forward: Vec<(u16, u16)>,
    /// After each report: power off / reboot, or hold for `outside`.
    pub after: After,
    /// The boot-time budgets.
    pub budgets: &'a Budgets,
    /// Guest memory in MiB.
    pub memory: u32,
    /// Guest CPUs (under TCG each is a host thread).
    pub cpus: u32,
    /// Print a line when each boot reported.
    pub label: String,
    /// Disk controller and network card.
    pub devices: crate::qemu::Devices,
}

/// What one boot of a case came to.
#[derive(Debug)]
pub struct Outcome {
    /// The accelerator used.
    pub accel: Option<Accel>,
    /// Every boot's report.
    pub reports: Vec<BootReport>,
    /// Every rule's verdict (prefixed `boot N:` from the second boot on).
    pub verdicts: Vec<Verdict>,
    /// The serial console's log.
    pub console: PathBuf,
    /// The report port's log.
    pub report: PathBuf,
    /// Wall-clock seconds from QEMU's start to the last report.
    pub seconds: f64,
    /// The first boot's time to `multi-user.target`.
    pub boot_time: Option<BootTime>,
}

impl Outcome {
    /// Whether every rule held (warnings do not fail).
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok || v.warning)
    }
}

/// A file's text so far (consoles carry bytes that are not UTF-8).
pub fn read_log(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// Boot, wait for the reports, judge them. With [`After::Hold`],
/// `outside` runs once the first report is in (while the guest waits),
/// and what it returns are failures of the rule `host-side`.
pub fn run(b: &Boot, outside: impl FnOnce() -> Vec<String>) -> Outcome {
    let console = b.scratch.join("console.log");
    let report = b.scratch.join("report.log");
    let mut out = Outcome {
        accel: None,
        reports: Vec::new(),
        verdicts: Vec::new(),
        console: console.clone(),
        report: report.clone(),
        seconds: 0.0,
        boot_time: None,
    };
    let started = Instant::now();
    match boot_and_wait(b, outside, &mut out) {
        Ok(()) => {}
        Err(e) => out.verdicts.push(Verdict::new(
            "boot",
            false,
            format!(
                "{e}\nreport tail:\n{}\nconsole tail:\n{}",
                super::tail_lines(&read_log(&report), 15),
                super::tail_lines(&read_log(&console), 40)
            ),
        )),
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.reports = judge::parse(&read_log(&report));
    judge_all(b, &mut out);
    out
}

/// The verdicts of every boot's report, the boot time and its budget.
fn judge_all(b: &Boot, out: &mut Outcome) {
    let wanted = if b.after == After::Hold {
        1
    } else {
        b.expect.reboots + 1
    };
    let booted = out.verdicts.iter().all(|v| v.rule != "boot");
    let (verdicts, boot_time) = judge_reports(
        b.expect,
        b.firmware,
        b.budgets,
        out.accel,
        wanted as usize,
        &out.reports,
    );
    out.verdicts.extend(
        verdicts
            .into_iter()
            .filter(|v| booted || v.rule != "reboots"),
    );
    out.boot_time = boot_time;
}

/// Judge the first `wanted` boot reports (every rule prefixed `boot N:`
/// from the second boot on), missing reports, and the first boot's time
/// against `budgets` (a KVM miss fails, a TCG one warns). A recorded
/// report is judged here exactly as a live one.
pub fn judge_reports(
    expect: &Expect,
    firmware: Firmware,
    budgets: &Budgets,
    accel: Option<Accel>,
    wanted: usize,
    reports: &[BootReport],
) -> (Vec<Verdict>, Option<BootTime>) {
    let mut out = Vec::new();
    for (i, r) in reports.iter().take(wanted).enumerate() {
        let prefix = if i == 0 {
            String::new()
        } else {
            format!("boot {}: ", i + 1)
        };
        out.extend(judge::judge(expect, r, firmware).into_iter().map(|mut v| {
            v.rule = format!("{prefix}{}", v.rule);
            v
        }));
    }
    if reports.len() < wanted {
        out.push(Verdict::new(
            "reboots",
            false,
            format!("{wanted} boot reports expected, {} arrived", reports.len()),
        ));
    }
    let Some(first) = reports.first() else {
        return (out, None);
    };
    let Some(secs) = judge::boot_seconds(first) else {
        return (out, None);
    };
    let slowest: Vec<String> = first
        .lines("blame")
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    let kvm = accel == Some(Accel::Kvm);
    if let Some(miss) = crate::budgets::check_boot(budgets, kvm, secs, &slowest) {
        out.push(Verdict {
            rule: format!("budgets.{}", miss.rule),
            ok: false,
            warning: miss.warning,
            detail: miss.to_string(),
        });
    }
    let boot_time = BootTime {
        firmware: firmware.name().into(),
        accel: if kvm { "kvm" } else { "tcg" }.into(),
        seconds: secs,
        slowest_units: slowest,
    };
    (out, Some(boot_time))
}

/// How many boots have reported completely in `report`.
fn reported(report: &Path) -> usize {
    judge::parse(&read_log(report))
        .iter()
        .filter(|r| r.complete)
        .count()
}

/// The VM of boot `b`: the check script (written to the scratch directory)
/// and the first-boot config in fw_cfg, console and report to files.
fn vm(b: &Boot, out: &Outcome) -> Result<Vm, String> {
    std::fs::create_dir_all(b.scratch)
        .map_err(|e| format!("creating {}: {e}", b.scratch.display()))?;
    let script_path = b.scratch.join("checks.sh");
    common::atomic::write(
        &script_path,
        script::script(b.expect, b.expect.reboots + 1, b.after).as_bytes(),
    )
    .map_err(|e| format!("{e:#}"))?;
    for log in [&out.console, &out.report] {
        let _ = std::fs::remove_file(log);
    }
    Ok(Vm {
        image: b.image.to_owned(),
        firmware: b.firmware,
        memory: b.memory,
        cpus: b.cpus,
        snapshot: true,
        serial: Serial::File(out.console.clone()),
        scratch: b.scratch.to_owned(),
        forward: b.forward.clone(),
        devices: b.devices,
        extra: [
            vec!["-serial".into(), format!("file:{}", out.report.display())],
            vec![
                "-fw_cfg".into(),
                format!("name={FW_CFG_NAME},file={}", script_path.display()),
            ],
            b.firstboot.map(firstboot_args).unwrap_or_default(),
        ]
        .concat(),
    })
}

fn boot_and_wait(
    b: &Boot,
    outside: impl FnOnce() -> Vec<String>,
    out: &mut Outcome,
) -> Result<(), String> {
    let vm = vm(b, out)?;
    out.accel = Some(accel().map_err(|e| format!("{e:#}"))?);
    let boots = b.expect.reboots + 1;
    let mut running = vm
        .spawn(|c| {
            c.stdout(Stdio::null()).stderr(Stdio::piped());
        })
        .map_err(|e| format!("{e:#}"))?;
    let start = Instant::now();
    let limit = b.expect.timeout * boots;
    let wanted = if b.after == After::Hold {
        1
    } else {
        boots as usize
    };
    let mut seen = 0;
    let mut next_note = NOTE_EVERY;
    loop {
        let n = reported(&out.report);
        if n > seen {
            seen = n;
            eprintln!(
                "{}: boot {n} of {wanted} reported after {:.0}s",
                b.label,
                start.elapsed().as_secs_f64()
            );
        }
        if n >= wanted {
            if b.after == After::Hold {
                for f in outside() {
                    out.verdicts.push(Verdict::new("host-side", false, f));
                }
            }
            running.stop();
            return Ok(());
        }
        let exited = running.check().map_err(|e| format!("{e:#}"))?;
        if let Some(st) = exited {
            if reported(&out.report) >= wanted {
                continue;
            }
            let mut err = String::new();
            if let Some(mut e) = running.child().stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!(
                "QEMU exited ({st}) before the guest reported; QEMU said: {}",
                err.trim()
            ));
        }
        if start.elapsed() > limit {
            running.stop();
            return Err(format!(
                "timeout: the guest did not report within {}s ({} boot{} at the case's timeout of {}s each)",
                limit.as_secs(),
                boots,
                if boots == 1 { "" } else { "s" },
                b.expect.timeout.as_secs()
            ));
        }
        if start.elapsed() >= next_note {
            next_note += NOTE_EVERY;
            note_waiting(&b.label, &out.console, start.elapsed());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Say that `label` still waits, with the console's last line.
fn note_waiting(label: &str, console: &Path, waited: Duration) {
    let text = read_log(console);
    let last = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(nothing yet)");
    eprintln!(
        "{label}: waiting for the guest's report, {:.0}s; console: {}",
        waited.as_secs_f64(),
        last.chars().take(100).collect::<String>()
    );
}

/// How often a boot still waiting for its report says so.
const NOTE_EVERY: Duration = Duration::from_secs(30);
