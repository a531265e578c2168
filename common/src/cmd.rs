//! The one way the workspace runs external programs (the builder and the
//! on-host agents alike).
//!
//! Every tool goes through [`Cmd`]: the argv is logged, stdin is null, stderr
//! is captured (and optionally streamed line by line to a progress callback),
//! and a failure becomes a [`CmdError`] carrying the copy-pasteable command
//! line, the exit status and the tail of stderr.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;

/// How many stderr lines a failure report keeps.
const TAIL_LINES: usize = 25;

/// A failed external command.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started at all.
    #[error("could not start `{argv}`: {source}")]
    Spawn {
        /// The command line, shell-quoted.
        argv: String,
        /// Why the spawn failed.
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{argv}` failed ({status}){}", fmt_tail(.stderr_tail))]
    Failed {
        /// The command line, shell-quoted.
        argv: String,
        /// Exit status.
        status: ExitStatus,
        /// The last lines the program wrote to stderr.
        stderr_tail: String,
    },
}

impl CmdError {
    /// The error on one line (for agents that report failures as one line):
    /// the command, its status and the last lines of stderr joined by ` / `.
    pub fn one_line(&self) -> String {
        match self {
            CmdError::Spawn { argv, source } => {
                format!("could not start `{argv}` (is it installed?): {source}")
            }
            CmdError::Failed {
                argv,
                status,
                stderr_tail,
            } => {
                let lines: Vec<&str> = stderr_tail
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                let last = &lines[lines.len().saturating_sub(3)..];
                format!(
                    "`{argv}` failed ({status}): {}",
                    if last.is_empty() {
                        "no output".to_string()
                    } else {
                        last.join(" / ")
                    }
                )
            }
        }
    }
}

fn fmt_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{}", indent(tail))
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Quote one argument for a POSIX shell, only when needed.
pub fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command to run; build it, then call [`Cmd::run`] or [`Cmd::output`].
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<std::path::PathBuf>,
}

impl Cmd {
    /// Start building a command for `program`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
        }
    }

    /// Add one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Add several arguments.
    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(it.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Set an environment variable for the child.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    /// Run the child in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The command line as a shell would take it (for logs and errors).
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .envs
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), shell_quote(v)))
            .collect();
        parts.push(shell_quote(&self.program));
        parts.extend(self.args.iter().map(|a| shell_quote(a)));
        parts.join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).stdin(Stdio::null());
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        // If atomicbuild dies (even by SIGKILL), take the child down with it,
        // so no stray installer keeps writing into a tree the next run removes.
        die_with_parent(&mut c);
        c
    }

    /// Run to completion; stderr lines (and stdout lines) are passed to `on_line`
    /// as they arrive. Output is not returned.
    pub fn run_streaming(&self, mut on_line: impl FnMut(&str)) -> Result<(), CmdError> {
        log_debug(&self.display());
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CmdError::Spawn {
                argv: self.display(),
                source,
            })?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let tx2 = tx.clone();
        let t1 = thread::spawn(move || pump(out, tx));
        let t2 = thread::spawn(move || pump(err, tx2));
        let mut tail: VecDeque<String> = VecDeque::new();
        for line in rx {
            on_line(&line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let _ = t1.join();
        let _ = t2.join();
        let status = child.wait().map_err(|source| CmdError::Spawn {
            argv: self.display(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(CmdError::Failed {
                argv: self.display(),
                status,
                stderr_tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
            })
        }
    }

    /// Run to completion, discarding stdout.
    pub fn run(&self) -> Result<(), CmdError> {
        self.output().map(|_| ())
    }

    /// Run to completion with stdout and stderr captured, whatever the
    /// exit status.
    fn collect(&self) -> Result<std::process::Output, CmdError> {
        log_debug(&self.display());
        self.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| CmdError::Spawn {
                argv: self.display(),
                source,
            })
    }

    /// Run to completion and return stdout.
    pub fn output(&self) -> Result<Vec<u8>, CmdError> {
        let out = self.collect()?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(CmdError::Failed {
                argv: self.display(),
                status: out.status,
                stderr_tail: tail(&String::from_utf8_lossy(&out.stderr), TAIL_LINES),
            })
        }
    }

    /// Run to completion whatever the exit status (for programs whose
    /// failures the caller explains itself): status, stdout and stderr.
    pub fn output_full(&self) -> Result<FullOutput, CmdError> {
        let out = self.collect()?;
        Ok(FullOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Run and return stdout as a trimmed UTF-8 string.
    pub fn output_string(&self) -> Result<String, CmdError> {
        let out = self.output()?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }
}

/// What [`Cmd::output_full`] returns.
pub struct FullOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Make the child get SIGKILL when the thread that started it dies.
pub fn die_with_parent(c: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no shared state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(c, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn pump(r: impl Read, tx: std::sync::mpsc::Sender<String>) {
    let mut br = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match br.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if tx.send(line.to_string()).is_err() {
                    break;
                }
            }
        }
    }
}

/// Whether `-v` asked for command lines to be printed.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turn on logging of every command line (the `-v` flag).
pub fn set_verbose(v: bool) {
    VERBOSE.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `-v` is on.
pub fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

fn log_debug(line: &str) {
    if verbose() {
        eprintln!("+ {line}");
    }
}

/// Find `prog` on PATH (and in the sbin directories, which a non-login root
/// shell may lack).
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(extra.into());
    }
    dirs.into_iter().map(|d| d.join(prog)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_argv_status_and_stderr_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "echo first >&2; echo 'the reason' >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("the reason"), "{msg}");
    }

    #[test]
    fn streaming_sees_every_line_and_keeps_tail() {
        let mut seen = Vec::new();
        let err = Cmd::new("sh")
            .args(["-c", "echo a; echo b >&2; exit 1"])
            .run_streaming(|l| seen.push(l.to_string()))
            .unwrap_err();
        seen.sort();
        assert_eq!(seen, vec!["a", "b"]);
        assert!(err.to_string().contains('b'));
    }

    #[test]
    fn one_line_errors_carry_argv_status_and_stderr() {
        let e = Cmd::new("sh")
            .args(["-c", "echo one >&2; echo two >&2; exit 3"])
            .run()
            .unwrap_err()
            .one_line();
        assert!(e.contains("sh -c"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("one / two"), "{e}");
        assert_eq!(e.lines().count(), 1);
        let e = Cmd::new("/nonexistent/tool").run().unwrap_err().one_line();
        assert!(e.contains("is it installed"), "{e}");
    }

    #[test]
    fn quoting_round_trips_spaces_and_quotes() {
        assert_eq!(shell_quote(OsStr::new("plain-arg")), "plain-arg");
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), "'it'\\''s'");
    }
}
