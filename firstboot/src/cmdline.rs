//! The kernel command line: which platform the host runs on and how its
//! provider is tuned. Nothing is guessed: without `atomic.platform=` the
//! agent has nothing to do.
//!
//! | argument | meaning |
//! |---|---|
//! | `atomic.platform=qemu\|openstack\|aws\|file` | where the config comes from |
//! | `atomic.aws-imdsv1=1` | allow AWS IMDSv1 when IMDSv2 is refused |
//! | `atomic.config-label=LABEL` | `file`: the filesystem holding the config |
//! | `atomic.config-path=/PATH` | `file`: the config's path in it (default `/atomic-firstboot.toml`) |

use anyhow::{bail, Context, Result};

/// Where the kernel command line is read from.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// What the kernel command line says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelArgs {
    /// `atomic.platform=`
    pub platform: Option<String>,
    /// `atomic.aws-imdsv1=1`
    pub aws_imdsv1: bool,
    /// `atomic.config-label=`
    pub config_label: Option<String>,
    /// `atomic.config-path=`
    pub config_path: Option<String>,
}

/// Split a command line into words, honouring double quotes as the kernel
/// does (`a="b c"` is one word).
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parse a command line. The last occurrence of an argument wins, as for
/// the kernel's own parameters.
pub fn parse(cmdline: &str) -> Result<KernelArgs> {
    let mut k = KernelArgs::default();
    for w in words(cmdline) {
        let (key, value) = match w.split_once('=') {
            Some((a, b)) => (a, Some(b)),
            None => (w.as_str(), None),
        };
        match key {
            "atomic.platform" => k.platform = value.map(str::to_string),
            "atomic.aws-imdsv1" => {
                k.aws_imdsv1 = match value {
                    Some("1") | Some("true") | Some("yes") | None => true,
                    Some("0") | Some("false") | Some("no") => false,
                    Some(_) => bail!("atomic.aws-imdsv1 must be 1 or 0"),
                }
            }
            "atomic.config-label" => k.config_label = value.map(str::to_string),
            "atomic.config-path" => k.config_path = value.map(str::to_string),
            _ => {}
        }
    }
    if k.platform.as_deref() == Some("") {
        bail!("atomic.platform= is empty");
    }
    Ok(k)
}

/// Read and parse `/proc/cmdline`.
pub fn read() -> Result<KernelArgs> {
    let s = std::fs::read_to_string(PROC_CMDLINE)
        .with_context(|| format!("cannot read {PROC_CMDLINE}"))?;
    parse(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_atomic_arguments() {
        let k = parse(
            "BOOT_IMAGE=/vmlinuz root=UUID=x ro atomic.platform=aws atomic.aws-imdsv1=1 quiet\n",
        )
        .unwrap();
        assert_eq!(k.platform.as_deref(), Some("aws"));
        assert!(k.aws_imdsv1);
        let k =
            parse("atomic.platform=file atomic.config-label=CFG atomic.config-path=\"/a b.toml\"")
                .unwrap();
        assert_eq!(k.config_label.as_deref(), Some("CFG"));
        assert_eq!(k.config_path.as_deref(), Some("/a b.toml"));
    }

    #[test]
    fn nothing_is_guessed() {
        let k = parse("root=/dev/vda ro console=ttyS0").unwrap();
        assert_eq!(k, KernelArgs::default());
        assert!(!parse("atomic.platform=aws").unwrap().aws_imdsv1);
    }

    #[test]
    fn last_wins_and_bad_values_fail() {
        assert_eq!(
            parse("atomic.platform=qemu atomic.platform=openstack")
                .unwrap()
                .platform
                .as_deref(),
            Some("openstack")
        );
        assert!(parse("atomic.aws-imdsv1=maybe").is_err());
        assert!(parse("atomic.platform=").is_err());
        assert!(
            !parse("atomic.aws-imdsv1=1 atomic.aws-imdsv1=0")
                .unwrap()
                .aws_imdsv1
        );
    }
}
