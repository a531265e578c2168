//! Config parsing and every validation error: each names its field and
//! position, and none quotes a value.

use base64::Engine;

use super::*;

mod cluster;
mod registries;

/// An OpenSSH public key line of type `kind` (valid framing, fake key).
pub(super) fn ssh_key(kind: &str) -> String {
    let mut blob = (kind.len() as u32).to_be_bytes().to_vec();
    blob.extend(kind.as_bytes());
    blob.extend(32u32.to_be_bytes());
    blob.extend([7u8; 32]);
    format!(
        "{kind} {} me@host",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// A self-signed certificate and its key, made by openssl.
pub(super) fn self_signed(dir: &std::path::Path, name: &str) -> (String, String) {
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", &format!("/CN={name}"), "-keyout"])
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(c).unwrap(),
        std::fs::read_to_string(k).unwrap(),
    )
}

pub(super) fn problems(src: &str) -> Vec<Problem> {
    match parse(src, "test.toml") {
        Ok(_) => panic!("expected problems in:\n{src}"),
        Err(e) => e.problems,
    }
}

/// The problem on `field`, which must exist.
pub(super) fn problem(src: &str, field: &str) -> Problem {
    let ps = problems(src);
    ps.iter()
        .find(|p| p.field == field)
        .unwrap_or_else(|| panic!("no problem on {field}; got {ps:#?}"))
        .clone()
}

pub(super) fn at(src: &str, field: &str, pos: (usize, usize), needle: &str) {
    let p = problem(src, field);
    assert_eq!((p.line, p.col), pos, "{p:?}");
    assert!(
        p.message.contains(needle),
        "{field}: {:?} does not contain {needle:?}",
        p.message
    );
}

const FILES: &str = r#"version = 1
hostname = "node-1"

[[users]]
name = "core"
groups = ["wheel"]
ssh_authorized_keys = []

[[files]]
path = "/etc/motd"
mode = "0640"
owner = "1000:100"
contents = "hello"

[[files]]
path = "/var/lib/blob"
mode = 0o755
url = "https://example.invalid/blob?sig=x"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[units]
enable = ["kubelet.service"]
start = ["containerd.service"]

[kubelet]
api_server = "https://10.0.0.1:6443"
bootstrap_token = "abcdef.0123456789abcdef"
ca_cert_hash = "sha256:00000000000000000000000000000000000000000000000000000000000000AA"
"#;

#[test]
fn parses_a_full_config() {
    let c = parse(FILES, "t").unwrap();
    assert_eq!(c.hostname.as_deref(), Some("node-1"));
    assert_eq!(c.users[0].groups, vec!["wheel"]);
    assert_eq!(
        (c.files[0].mode, c.files[0].uid, c.files[0].gid),
        (0o640, 1000, 100)
    );
    assert_eq!(c.files[1].mode, 0o755);
    assert!(matches!(&c.files[1].source, FileSource::Url { url, .. } if url.port == 443));
    assert_eq!(c.units.start, vec!["containerd.service"]);
    let k = c.kubelet.unwrap();
    assert_eq!(k.ca_cert_hash[31], 0xaa);
    assert!(k.ca.is_none());
    assert!(!format!("{:?}", k.bootstrap_token).contains("0123456789abcdef"));
}

#[test]
fn version_is_required_and_checked() {
    at(
        "hostname = \"a\"\n",
        "version",
        (1, 1),
        "required: version = 1",
    );
    at("\nversion = 2\n", "version", (2, 1), "unsupported version");
    let p = problem("version = \"1\"\n", "version");
    assert_eq!((p.line, p.col), (1, 11));
    assert!(p.message.contains("invalid type"), "{p:?}");
}

#[test]
fn syntax_and_unknown_fields_have_positions() {
    let p = problem("version = 1\nhostname = \n", "(syntax)");
    assert_eq!(p.line, 2, "{p:?}");
    let p = problems("version = 1\n[[users]]\nname = \"a\"\nshell = \"/bin/zsh\"\n").remove(0);
    assert!(p.field.starts_with("users[0]"), "{p:?}");
    assert_eq!(p.line, 4, "{p:?}");
    assert!(p.message.contains("unknown field `shell`"), "{p:?}");
    let p = problems("version = 1\n[etcd]\nmode = \"join\"\ntimeout = 3\n").remove(0);
    assert!(p.field.starts_with("etcd"), "{p:?}");
    assert_eq!(p.line, 4, "{p:?}");
}

#[test]
fn type_errors_do_not_quote_values() {
    let p = problem(
        "version = 1\n[kubelet]\nbootstrap_token = [\"abcdef.supersecretvalue\"]\n",
        "kubelet.bootstrap_token",
    );
    assert!(!p.message.contains("supersecret"), "{p:?}");
    let p =
        problems("version = 1\n[[files]]\npath = \"/x\"\nmode = \"s3cr3t-mode\"\nowner = [1]\n");
    assert!(p.iter().all(|p| !p.message.contains("s3cr3t")), "{p:?}");
    let p = problems("version = 1\n[[users]]\nname = 5\n");
    assert!(p[0].message.contains("invalid type"), "{p:?}");
}

#[test]
fn hostname_and_users() {
    at(
        "version = 1\nhostname = \"Bad_Host\"\n",
        "hostname",
        (2, 1),
        "lowercase",
    );
    at(
        "version = 1\nhostname = \"-x\"\n",
        "hostname",
        (2, 1),
        "start or end",
    );
    let u = "version = 1\n[[users]]\ngroups = [\"ok\", \"Bad\"]\n[[users]]\nname = \"0abc\"\n[[users]]\nname = \"dup\"\n[[users]]\nname = \"dup\"\n";
    at(u, "users[0].name", (2, 1), "required");
    at(u, "users[0].groups[1]", (3, 17), "lowercase letter");
    at(u, "users[1].name", (5, 1), "must be 1 to 32");
    at(u, "users[3].name", (9, 1), "already listed");
}

#[test]
fn ssh_keys_are_checked() {
    let good = ssh_key("ssh-ed25519");
    let mismatched = ssh_key("ssh-rsa").replacen("ssh-rsa", "ssh-ed25519", 1);
    let src = format!(
        "version = 1\n[[users]]\nname = \"a\"\nssh_authorized_keys = [\n  \"{good}\",\n  \"ssh-foo AAAA\",\n  \"ssh-rsa not*base64\",\n  \"{mismatched}\",\n  \"command=\\\"x\\\" {good}\",\n]\n"
    );
    let ps = problems(&src);
    assert!(!ps.iter().any(|p| p.field.ends_with("[0]")), "{ps:#?}");
    at(
        &src,
        "users[0].ssh_authorized_keys[1]",
        (6, 3),
        "must start with a key type",
    );
    at(
        &src,
        "users[0].ssh_authorized_keys[2]",
        (7, 3),
        "not valid base64",
    );
    at(
        &src,
        "users[0].ssh_authorized_keys[3]",
        (8, 3),
        "does not hold a key of the type",
    );
    at(
        &src,
        "users[0].ssh_authorized_keys[4]",
        (9, 3),
        "options before the type",
    );
    for kind in common::sshkey::KEY_TYPES {
        assert!(super::checks::ssh_key(&ssh_key(kind)).is_ok(), "{kind}");
    }
}

#[test]
fn files_are_checked() {
    let src = r#"version = 1
[[files]]
contents = "x"
[[files]]
path = "etc/relative"
contents = "x"
[[files]]
path = "/usr/bin/evil"
contents = "x"
[[files]]
path = "/etc/../shadow"
mode = "0999"
contents = "x"
[[files]]
path = "/etc/a"
mode = 0o17777
owner = "admin"
contents = "x"
[[files]]
path = "/etc/a"
contents = "x"
url = "https://h/x"
[[files]]
path = "/etc/b"
[[files]]
path = "/etc/c"
url = "https://h/x"
[[files]]
path = "/etc/d"
contents = "x"
sha256 = "00"
[[files]]
path = "/etc/e"
url = "ftp://h/x"
sha256 = "abc"
"#;
    at(src, "files[0].path", (2, 1), "required");
    at(src, "files[1].path", (5, 1), "absolute");
    at(src, "files[2].path", (8, 1), "/usr is not writable");
    at(src, "files[3].path", (11, 1), "'..'");
    at(src, "files[3].mode", (12, 1), "octal digits");
    at(src, "files[4].mode", (16, 1), "between 0 and 0o7777");
    at(src, "files[4].owner", (17, 1), "uid:gid");
    at(src, "files[5].path", (20, 1), "already written");
    at(src, "files[5].url", (22, 1), "not both");
    at(src, "files[6]", (23, 1), "needs contents, or url + sha256");
    at(src, "files[7].sha256", (25, 1), "required with url");
    at(src, "files[8].sha256", (31, 1), "only used with url");
    at(src, "files[9].url", (34, 1), "http:// or https://");
    at(src, "files[9].sha256", (35, 1), "64 hexadecimal digits");
}

#[test]
fn units_are_checked() {
    let src = "version = 1\n[units]\nenable = [\"kubelet\"]\nstart = [\"a b.service\"]\n";
    at(src, "units.enable[0]", (3, 11), "unit name");
    at(src, "units.start[0]", (4, 10), "unit name");
}

#[test]
fn error_display_lists_every_problem_with_position() {
    let e = parse("version = 3\nhostname = \"UPPER\"\n", "user-data(qemu)").unwrap_err();
    let s = e.to_string();
    assert_eq!(s.lines().count(), 2, "{s}");
    assert!(s.starts_with("user-data(qemu):1:1: version: "), "{s}");
    assert!(s.contains("user-data(qemu):2:1: hostname: "), "{s}");
}

#[test]
fn non_utf8_is_refused_with_position() {
    let e = parse_bytes(b"version = 1\nhostname = \"\xff\"\n", "t").unwrap_err();
    assert_eq!((e.problems[0].line, e.problems[0].col), (2, 13));
}
