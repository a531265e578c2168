//! External tools (useradd, systemctl, mount, modprobe) through the
//! workspace's one command runner ([`common::cmd::Cmd`]: null stdin,
//! captured output, argv and status in errors), with failures on one line
//! as this agent reports them. Secrets never go on a command line.

use anyhow::{Context, Result};

/// Run `argv` to completion; its stdout on success.
pub fn run(argv: &[&str]) -> Result<String> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let out = common::cmd::Cmd::new(prog)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
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
