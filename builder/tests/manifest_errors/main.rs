//! Bad manifests are refused before any work, with file:line:column, the
//! field path and a fix, and nothing is created (not even --output).

use std::path::Path;
use std::process::Command;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpMAzgtQAhjeae+JWGlNyCENKbOoDyos0z/33rrqJbt test@atomicbuild";

pub fn good() -> String {
    format!(
        r#"[image]
name = "t"
version = "1"

[base]
distro = "debian"
release = "bookworm"

[packages]
include = ["linux-image-amd64", "systemd-sysv", "ostree-boot", "dracut"]

[system]
hostname = "host"
overlays = ["ov"]
kernel_args = ["quiet"]

[units]
enable = ["etcd.service"]

[[users]]
name = "core"
ssh_authorized_keys = ["{KEY}"]

[disk]
size = "4GiB"

[ostree]
ref = "debian/test"
osname = "debian"
"#
    )
}

/// `host.toml:LINE:COL:` for line `k` of what follows [`good`] (its first
/// line is `k = 1`).
pub fn after_good(k: usize, col: usize) -> String {
    format!("host.toml:{}:{col}:", good().lines().count() + k)
}

struct Run {
    ok: bool,
    stderr: String,
    out_created: bool,
}

fn run_with(text: &str, subcommand: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ov")).unwrap();
    let mf = dir.path().join("host.toml");
    std::fs::write(&mf, text).unwrap();
    let out = dir.path().join("out");
    let work = dir.path().join("work");
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomicbuild"));
    c.arg(subcommand).arg("--manifest").arg(&mf);
    if subcommand == "build" {
        c.arg("--output").arg(&out).arg("--workdir").arg(&work);
    }
    let o = c.output().unwrap();
    Run {
        ok: o.status.success(),
        stderr: String::from_utf8_lossy(&o.stderr)
            .replace(&dir.path().display().to_string(), "<dir>"),
        out_created: out.exists() || work.exists(),
    }
}

/// Build must fail with every `expect` substring and create nothing;
/// validate must fail with the same message.
pub fn rejects(text: &str, expect: &[&str]) {
    let r = run_with(text, "build");
    assert!(!r.ok, "build accepted a bad manifest:\n{text}");
    for e in expect {
        assert!(r.stderr.contains(e), "expected {e:?} in:\n{}", r.stderr);
    }
    assert!(
        !r.out_created,
        "a rejected build created output or work directories"
    );
    let v = run_with(text, "validate");
    assert!(!v.ok);
    assert_eq!(
        v.stderr, r.stderr,
        "validate and build report the same problems"
    );
}

#[test]
fn the_base_manifest_is_valid() {
    let r = run_with(&good(), "validate");
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn unknown_top_level_key() {
    rejects(
        &format!("colour = \"blue\"\n{}", good()),
        &[
            "host.toml:1:1:",
            "unknown field `colour`",
            "expected one of",
        ],
    );
}

#[test]
fn unknown_key_in_a_table() {
    rejects(
        &good().replace("version = \"1\"", "version = \"1\"\nnmae = \"x\""),
        &["host.toml:4:1:", "image.nmae", "unknown field `nmae`"],
    );
}

#[test]
fn wrong_type() {
    rejects(
        &good().replace("version = \"1\"", "version = 1"),
        &[
            "host.toml:3:11:",
            "image.version",
            "invalid type: integer `1`, expected a string",
        ],
    );
}

#[test]
fn unknown_distro() {
    rejects(
        &good().replace("distro = \"debian\"", "distro = \"arch\""),
        &["host.toml:6:10:", "base.distro", "unknown variant `arch`"],
    );
}

#[test]
fn missing_section() {
    let t = good();
    let cut = t.find("[ostree]").unwrap();
    rejects(&t[..cut], &["missing field `ostree`"]);
}

#[test]
fn toml_syntax_error() {
    rejects(
        &good().replace("name = \"t\"", "name = \"t"),
        &["host.toml:2:"],
    );
}

#[test]
fn duplicate_users() {
    let t = good().replace("[disk]", "[[users]]\nname = \"core\"\n\n[disk]");
    rejects(
        &t,
        &[
            "host.toml:25:1:",
            "users[1].name",
            "defined twice (also users[0])",
        ],
    );
}

#[test]
fn disk_too_small_for_partitions() {
    let t = good().replace("size = \"4GiB\"", "size = \"2GiB\"\nboot_size = \"1GiB\"");
    rejects(
        &t,
        &["disk.size", "the partitions do not fit", "raise disk.size"],
    );
}

#[test]
fn size_not_mib_aligned() {
    rejects(
        &good().replace("size = \"4GiB\"", "size = 4000000000"),
        &["disk.size", "not a whole number of MiB"],
    );
}

#[test]
fn size_with_bad_unit() {
    rejects(
        &good().replace("size = \"4GiB\"", "size = \"4 gigs\""),
        &["disk.size", "invalid size \"4 gigs\""],
    );
}

#[test]
fn missing_overlay_dir() {
    rejects(
        &good().replace("[\"ov\"]", "[\"ov\", \"nope\"]"),
        &["host.toml:14:19:", "system.overlays[1]", "does not exist"],
    );
}

#[test]
fn bad_unit_name() {
    rejects(
        &good().replace("[\"etcd.service\"]", "[\"etcd\"]"),
        &[
            "host.toml:18:11:",
            "units.enable[0]",
            "not a systemd unit name",
        ],
    );
}

#[test]
fn unit_both_enabled_and_masked() {
    let t = good().replace(
        "enable = [\"etcd.service\"]",
        "enable = [\"etcd.service\"]\nmask = [\"etcd.service\"]",
    );
    rejects(
        &t,
        &["units.mask[0]", "only one of enable, disable and mask"],
    );
}

#[test]
fn malformed_ssh_key() {
    let t = good().replace(KEY, "ssh-ed25519 AAAA-not-base64 me@host");
    rejects(
        &t,
        &[
            "users[0].ssh_authorized_keys[0]",
            "malformed SSH public key",
        ],
    );
}

#[test]
fn ssh_key_type_mismatch() {
    let t = good().replace(KEY, &KEY.replace("ssh-ed25519", "ssh-rsa"));
    rejects(&t, &["malformed SSH public key", "says \"ssh-ed25519\""]);
}

#[test]
fn plaintext_password() {
    let t = good().replace(
        "name = \"core\"",
        "name = \"core\"\npassword_hash = \"hunter2\"",
    );
    rejects(&t, &["users[0].password_hash", "not a crypt(3) hash"]);
}

#[test]
fn bad_hostname() {
    rejects(
        &good().replace("hostname = \"host\"", "hostname = \"bad_host!\""),
        &["host.toml:13:1:", "system.hostname", "not a valid hostname"],
    );
}

#[test]
fn kernel_arg_owned_by_builder() {
    rejects(
        &good().replace("[\"quiet\"]", "[\"quiet\", \"root=/dev/sda2\"]"),
        &["system.kernel_args[1]", "set by atomicbuild"],
    );
}

#[test]
fn fedora_keys_on_debian_and_vice_versa() {
    let t = good().replace("release = \"bookworm\"", "release = \"bookworm\"\n[[base.repos]]\nname = \"x\"\nbaseurl = \"http://127.0.0.1/\"\ngpgcheck = false");
    rejects(
        &t,
        &["base.repos[0].baseurl", "this key is for RPM repositories"],
    );
    let t = good().replace(
        "distro = \"debian\"",
        "distro = \"fedora\"\nmirror = \"http://x/\"",
    );
    rejects(&t, &["base.mirror", "[[base.repos]]"]);
}

#[test]
fn missing_boot_chain_package() {
    let t = good().replace("\"dracut\"", "\"vim\"");
    rejects(&t, &["packages.include", "needs dracut"]);
}

#[test]
fn all_problems_are_reported_at_once() {
    let t = good()
        .replace("hostname = \"host\"", "hostname = \"-bad\"")
        .replace("[\"etcd.service\"]", "[\"etcd\"]");
    rejects(&t, &["2 problems", "system.hostname", "units.enable[0]"]);
}

#[test]
fn missing_manifest_file() {
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(["validate", "--manifest", "/nonexistent/host.toml"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("/nonexistent/host.toml") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn shipped_manifests_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for m in [
        "manifests/debian-k8s-host.toml",
        "manifests/debian-k8s-node.toml",
        "manifests/fedora-k8s-host.toml",
        "qemu-tests/001_k8s_host/host.toml",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
            .arg("validate")
            .arg("--manifest")
            .arg(root.join(m))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn output_compression_that_does_not_fit_the_format() {
    let t = format!(
        "{}\n[[output]]\nformat = \"qcow2\"\ncompression = \"xz\"\n\n[[output]]\nformat = \"vdi\"\ncompression = \"deflate\"\n\n[[output]]\nformat = \"ova\"\ncompression = \"zstd\"\n",
        good()
    );
    rejects(
        &t,
        &[
            "output[0].compression",
            "qcow2 compresses its clusters itself",
            "output[1].compression",
            "\"deflate\" is for qcow2 clusters",
            "output[2].compression",
            "an OVA is read as it is",
        ],
    );
}

#[test]
fn output_level_cpus_memory_and_duplicates() {
    let t = format!(
        "{}\n[[output]]\nformat = \"vhd\"\ncompression = \"xz\"\nlevel = 12\n\n[[output]]\nformat = \"qcow2\"\ncpus = 4\n\n[[output]]\nformat = \"ova\"\nmemory = \"100MiB\"\n\n[[output]]\nformat = \"vhd\"\ncompression = \"xz\"\n",
        good()
    );
    rejects(
        &t,
        &[
            "output[0].level",
            "level 12 is out of range for xz: use 0 to 9",
            "output[1].cpus",
            "only apply to format = \"ova\"",
            "output[2].memory",
            "at least \"256MiB\"",
            "output[3].format",
            "output[0] already writes NAME-VERSION.vhd.xz",
        ],
    );
}

#[test]
fn unknown_output_format_lists_the_known_ones() {
    let t = format!("{}\n[[output]]\nformat = \"tarball\"\n", good());
    rejects(&t, &["output[0].format", "tarball", "qcow2", "vhd-dynamic"]);
}

#[test]
fn upload_entries_are_checked() {
    let t = format!(
        "{}\n[[upload]]\ntarget = \"aws\"\nregion = \"Frankfurt\"\nformat = \"qcow2\"\ncloud = \"lab\"\ncopy_to_regions = [\"us-west-2\", \"us-west-2\"]\nlaunch_permissions = [\"12345\", \"all\"]\ntags = {{ \"aws:owner\" = \"me\" }}\n\n[[upload]]\ntarget = \"openstack\"\nformat = \"qcow2\"\nboot_mode = \"uefi\"\n\n[[upload]]\ntarget = \"aws\"\nname = \"x\"\n",
        good()
    );
    rejects(
        &t,
        &[
            "host.toml:33:1: upload[0].region",
            "\"Frankfurt\" is not an AWS region name",
            "upload[0].format",
            "AWS snapshots are written from the raw image",
            "upload[0].cloud",
            "cloud is a setting of target = \"openstack\"",
            "upload[0].copy_to_regions[1]",
            "us-west-2 is listed twice",
            "upload[0].launch_permissions[0]",
            "neither a 12-digit AWS account id nor \"all\"",
            "upload[0].tags.aws:owner",
            "is reserved",
            "upload[1].format",
            "no [[output]] writes a qcow2 image",
            "upload[1].boot_mode",
            "boot_mode is a setting of target = \"aws\"",
            "upload[2].name",
            "\"x\" is not a valid AMI name",
        ],
    );
    let t = format!("{}\n[[upload]]\ntarget = \"gcp\"\n", good());
    rejects(&t, &["upload[0].target", "gcp", "aws", "openstack"]);
}

#[test]
fn upload_entries_validate_and_build_upload_checks_credentials_first() {
    let t = format!(
        "{}\n[[output]]\nformat = \"qcow2\"\n\n[[upload]]\ntarget = \"aws\"\nregion = \"eu-central-1\"\ncopy_to_regions = [\"us-east-1\"]\nlaunch_permissions = [\"123456789012\"]\ntags = {{ team = \"infra\" }}\n\n[[upload]]\ntarget = \"openstack\"\nformat = \"qcow2\"\ncloud = \"lab\"\nfirmware = \"bios\"\n",
        good()
    );
    let r = run_with(&t, "validate");
    assert!(r.ok, "{}", r.stderr);
    // --upload without credentials stops before any work; the instance
    // metadata service is disabled, so nothing leaves 127.0.0.1.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ov")).unwrap();
    let mf = dir.path().join("host.toml");
    std::fs::write(&mf, &t).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(["build", "--upload", "--manifest"])
        .arg(&mf)
        .arg("--output")
        .arg(dir.path().join("out"))
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("upload[0] (aws t-1)") && err.contains("no AWS credentials"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists() && !dir.path().join("work").exists());
    // --upload with no entries says so.
    std::fs::write(&mf, good()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(["build", "--upload", "--manifest"])
        .arg(&mf)
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("has no [[upload]] entries"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());
}

/// `boot --firstboot-config` checks the config with the agent's own
/// validator before starting QEMU, and names the field and position.
#[test]
fn boot_refuses_an_invalid_firstboot_config() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("x.raw");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let cfg = d.path().join("user-data.toml");
    std::fs::write(&cfg, "version = 1\nhostname = \"Not_A_Host\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .arg("boot")
        .arg("--image")
        .arg(&img)
        .arg("--firstboot-config")
        .arg(&cfg)
        .env(
            "ATOMICBUILD_FIRSTBOOT",
            Path::new(env!("CARGO_BIN_EXE_atomicbuild")).with_file_name("atomic-firstboot"),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("not a valid first-boot config")
            && err.contains(":2:")
            && err.contains("hostname"),
        "{err}"
    );
}

mod lean;
mod registries;
mod repos;
mod updates;

#[test]
fn lint_waiver_without_reason_or_with_an_unknown_rule() {
    let t = good() + "\n[[lint.waive]]\nrule = \"private-keys\"\nreason = \"x\"\n\n[[lint.waive]]\nrule = \"machine-id\"\n";
    rejects(
        &t,
        &[
            "lint.waive[0].rule",
            "no lint rule is named \"private-keys\"",
            "lint.waive[1].reason",
            "a waiver needs a reason",
        ],
    );
}
