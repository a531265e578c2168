//! Whether this boot is healthy: the system reached `running` within the
//! timeout (no failed unit), containerd runs where it is enabled, etcd
//! runs where this host is a member, and every executable of the check.d
//! directories succeeds (`/usr/lib/atomic-update/check.d`, then
//! `/etc/atomic-update/check.d`; a file in /etc replaces the image's of the
//! same name).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The check directories, lowest priority first.
pub const CHECK_DIRS: &[&str] = &[
    "/usr/lib/atomic-update/check.d",
    "/etc/atomic-update/check.d",
];

/// How long one check.d executable may run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Run `argv` for at most `limit`: (exit code, output), or why not.
pub fn run_bounded(argv: &[&str], limit: Duration) -> Result<(i32, String), String> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {} s",
                    argv.join(" "),
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code().unwrap_or(-1), text.trim().to_string()))
}

fn systemctl(args: &[&str]) -> String {
    let argv: Vec<&str> = ["systemctl"].iter().chain(args).copied().collect();
    run_bounded(&argv, Duration::from_secs(30))
        .map(|(_, o)| o)
        .unwrap_or_default()
}

/// The executables of the check directories, in name order.
pub fn check_executables(dirs: &[PathBuf]) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut by_name = std::collections::BTreeMap::new();
    for d in dirs {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            let exec = std::fs::metadata(&p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if exec {
                by_name.insert(e.file_name(), p);
            }
        }
    }
    by_name.into_values().collect()
}

/// Every check.d executable that fails, with its exit code and output.
pub fn run_checks(dirs: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for p in check_executables(dirs) {
        let shown = p.display().to_string();
        match run_bounded(&[&shown], CHECK_TIMEOUT) {
            Ok((0, _)) => {}
            Ok((code, out)) => failures.push(format!(
                "required check {shown} failed (exit {code}){}",
                if out.is_empty() {
                    String::new()
                } else {
                    format!(": {}", out.lines().last().unwrap_or(""))
                }
            )),
            Err(e) => failures.push(format!("required check {shown}: {e}")),
        }
    }
    failures
}

/// Every reason this boot is not healthy (empty: healthy).
pub fn check(timeout: Duration) -> Vec<String> {
    let mut failures = Vec::new();
    match run_bounded(&["systemctl", "is-system-running", "--wait"], timeout) {
        Ok((_, state)) if state == "running" => {}
        Ok((_, state)) => {
            let failed = systemctl(&["list-units", "--failed", "--plain", "--no-legend"]);
            failures.push(format!(
                "the system is {state}: failed units: {}",
                failed.replace('\n', "; ")
            ));
        }
        Err(e) => failures.push(format!("the system did not finish booting: {e}")),
    }
    if systemctl(&["is-enabled", "containerd.service"]) == "enabled"
        && systemctl(&["is-active", "containerd.service"]) != "active"
    {
        failures.push("containerd.service is not active".into());
    }
    if std::path::Path::new(crate::ETCD_CONFIG).exists()
        && systemctl(&["is-active", "etcd.service"]) != "active"
    {
        failures.push("this host is an etcd member but etcd.service is not active".into());
    }
    let dirs: Vec<PathBuf> = CHECK_DIRS.iter().map(PathBuf::from).collect();
    failures.extend(run_checks(&dirs));
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn check_d_failures_are_named_and_etc_overrides_the_image() {
        let d = tempfile::tempdir().unwrap();
        let (usr, etc) = (d.path().join("usr"), d.path().join("etc"));
        script(&usr, "10-ok", "exit 0");
        script(&usr, "20-broken", "echo 'etcd lost quorum'; exit 3");
        script(&usr, "30-replaced", "exit 1");
        script(&etc, "30-replaced", "exit 0");
        std::fs::write(usr.join("40-not-executable"), "exit 1").unwrap();
        let dirs = vec![usr.clone(), etc];
        assert_eq!(check_executables(&dirs).len(), 3);
        let f = run_checks(&dirs);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].contains("20-broken") && f[0].contains("exit 3") && f[0].contains("lost quorum"),
            "{f:?}"
        );
    }

    #[test]
    fn a_hanging_command_is_bounded() {
        let t = Instant::now();
        let e = run_bounded(&["sleep", "30"], Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
