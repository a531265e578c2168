//! JUnit XML of a test run, as CI services read it: one `<testsuite>` per
//! case and firmware, one `<testcase>` per rule; a failed rule carries a
//! `<failure>`, a budget warning a `<system-out>` line; the suite's boot
//! figures are its `<properties>`.

use super::CaseResult;

/// `s` escaped for XML text and attributes.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 has no other control characters (consoles do).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// The JUnit XML of `results`.
pub fn junit(results: &[CaseResult]) -> String {
    let tests: usize = results.iter().map(|r| r.verdicts.len()).sum();
    let failures: usize = results.iter().map(|r| r.failures()).sum();
    let time: f64 = results.iter().map(|r| r.seconds).sum();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"atomicbuild test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.1}\">\n"
    );
    for r in results {
        let suite = format!("{}.{}", r.case, r.firmware);
        x += &format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{:.1}\">\n",
            esc(&suite),
            r.verdicts.len(),
            r.failures(),
            r.seconds
        );
        x += "    <properties>\n";
        x += &format!(
            "      <property name=\"image\" value=\"{}\"/>\n",
            esc(&r.image)
        );
        x += &format!(
            "      <property name=\"accel\" value=\"{}\"/>\n",
            esc(&r.accel)
        );
        if let Some(s) = r.boot_seconds {
            x += &format!("      <property name=\"boot_seconds\" value=\"{s:.1}\"/>\n");
        }
        x += "    </properties>\n";
        for v in &r.verdicts {
            x += &format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                esc(&suite),
                esc(&v.rule)
            );
            if v.ok {
                x += "/>\n";
            } else if v.warning {
                x += &format!(
                    ">\n      <system-out>warning: {}</system-out>\n    </testcase>\n",
                    esc(&v.detail)
                );
            } else {
                let first = v.detail.lines().next().unwrap_or_default();
                x += &format!(
                    ">\n      <failure type=\"expectation\" message=\"{}\">{}</failure>\n    </testcase>\n",
                    esc(first),
                    esc(&v.detail)
                );
            }
        }
        x += "  </testsuite>\n";
    }
    x += "</testsuites>\n";
    x
}
