//! The one way external tools (useradd, systemctl, mount, modprobe) are run:
//! null stdin, captured output, and an error carrying argv, exit status and
//! the tail of stderr. Secrets never go on a command line.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Run `argv` to completion; its stdout on success.
pub fn run(argv: &[&str]) -> Result<String> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {prog} (is it installed?)"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            if tail.is_empty() {
                "no output".to_string()
            } else {
                tail.join(" / ")
            }
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_argv_status_and_stderr() {
        let e = run(&["sh", "-c", "echo one >&2; echo two >&2; exit 3"]).unwrap_err();
        let s = format!("{e:#}");
        assert!(s.contains("sh -c"), "{s}");
        assert!(s.contains("exit status: 3"), "{s}");
        assert!(s.contains("one / two"), "{s}");
        assert_eq!(run(&["sh", "-c", "echo hi"]).unwrap(), "hi\n");
        assert!(
            format!("{:#}", run(&["/nonexistent/tool"]).unwrap_err()).contains("is it installed")
        );
    }
}
