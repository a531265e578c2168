//! Judging a run of the `atomicbuild test` command on a case broken on
//! purpose: its exit status, its JSON, and its JUnit XML validated against
//! the JUnit schema and read back by an independent parser (Python's
//! xml.etree).

use std::path::Path;
use std::process::Command;

/// The rule the broken case adds.
pub const BROKEN_RULE: &str = "deliberately broken";

/// Everything wrong with a run of the broken case: its exit `code`,
/// `stderr`, `--json` output and JUnit file.
pub fn judge_broken_run(code: Option<i32>, stderr: &str, json: &[u8], junit: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    if code != Some(1) {
        bad.push(format!(
            "atomicbuild test should exit 1 on a failed rule; it exited {code:?}"
        ));
    }
    if !stderr.contains(BROKEN_RULE) || !stderr.contains("1 of 1 case runs failed") {
        bad.push(format!("its error should name the broken rule:\n{stderr}"));
    }
    let json: serde_json::Value = match serde_json::from_slice(json) {
        Ok(j) => j,
        Err(e) => {
            bad.push(format!(
                "--json printed no JSON ({e}): {}",
                String::from_utf8_lossy(json)
            ));
            return bad;
        }
    };
    let r = &json["results"][0];
    let verdicts = r["verdicts"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = verdicts
        .iter()
        .filter(|v| v["ok"] == false && v["warning"] == false)
        .map(|v| {
            format!(
                "{}: {}",
                v["rule"].as_str().unwrap_or(""),
                v["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    // The case boots twice (reboots = 1): the rule fails in both boots.
    let ok = failed.len() == 2
        && failed[0].starts_with("command[")
        && failed[0].contains(BROKEN_RULE)
        && failed[1].starts_with("boot 2: command[")
        && failed[1].contains(BROKEN_RULE);
    if !ok {
        bad.push(format!(
            "exactly the broken rule should fail, in both boots; failed: {failed:#?}"
        ));
    }
    let warned: Vec<&str> = verdicts
        .iter()
        .filter(|v| v["warning"] == true)
        .filter_map(|v| v["rule"].as_str())
        .collect();
    if r["accel"] == "tcg" && warned != ["budgets.boot_time_tcg"] {
        bad.push(format!(
            "a 1 s TCG boot budget should warn; warnings: {warned:?}"
        ));
    }
    if json["passed"] != false || r["boot_seconds"].as_f64().unwrap_or(0.0) <= 1.0 {
        bad.push(format!(
            "passed should be false and the boot time measured: {json}"
        ));
    }
    bad.extend(junit_read_back(junit, verdicts.len()));
    bad
}

/// The JUnit file parsed by Python: one suite, `tests` test cases, one
/// failure naming the broken rule.
fn junit_read_back(junit: &Path, tests: usize) -> Vec<String> {
    if let Err(e) = testkit::junit_valid(junit) {
        return vec![e];
    }
    let py = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
suites = root.findall("testsuite")
cases = [c for s in suites for c in s.findall("testcase")]
failed = [c.get("name") for c in cases if c.find("failure") is not None]
print(len(suites), len(cases), root.get("tests"), root.get("failures"), "|".join(failed))
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(junit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let want_prefix = format!("1 {tests} {tests} 2 command[");
    let want_end = format!("{BROKEN_RULE}|boot 2: command[");
    if !o.status.success()
        || !out.starts_with(&want_prefix)
        || !out.contains(&want_end)
        || !out.ends_with(BROKEN_RULE)
    {
        return vec![format!(
            "JUnit read back: want \"{want_prefix}N] {want_end}N] {BROKEN_RULE}\", got {out:?} {}",
            String::from_utf8_lossy(&o.stderr)
        )];
    }
    Vec::new()
}
