//! Parsers never panic or hang: the manifest parser, the first-boot config
//! parser, the agents' HTTP response (status, headers, chunked and
//! Content-Length bodies) and URL parsing, and the uploads' EC2 XML and
//! OpenStack JSON answers, fed the seed corpus in `fuzz-corpus/` and
//! thousands of mutants of it ([`testkit::fuzz`]). A parser must succeed
//! or give an error; the TOML parsers' errors must carry a position.
//! `FUZZ_ITERATIONS=200000 cargo test --test parsers_fuzz` runs longer.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::fuzz::{self, Verdict};

const LIMIT: Duration = Duration::from_secs(10);

fn corpus(name: &str) -> Vec<Vec<u8>> {
    fuzz::corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz-corpus")
            .join(name),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const MANIFEST_WORDS: &[&[u8]] = &[
    b"[image]",
    b"[base]",
    b"[packages]",
    b"[system]",
    b"[[users]]",
    b"[disk]",
    b"[ostree]",
    b"[[output]]",
    b"[firstboot]",
    b"[[upload]]",
    b"[updates]",
    b"[signing]",
    b"[budgets]",
    b"[[lint.waive]]",
    b"size = \"",
    b"GiB",
    b"MiB",
    b"format = \"",
    b"distro = \"fedora\"",
    b"release = \"",
    b"= []",
    b"= {}",
    b"= 1",
    b"= \"\"",
];

#[test]
fn the_manifest_parser_gives_a_manifest_or_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let base: PathBuf = dir.path().to_owned();
    fuzz::run(
        "manifest",
        corpus("manifest"),
        MANIFEST_WORDS,
        4000,
        LIMIT,
        move |b| -> Verdict {
            let src = text(b);
            let file = base.join("host.toml");
            match atomicbuild::manifest::parse_str(&src, &file, &base, String::new()) {
                Ok(_) => Ok(()),
                Err(e) if e.problems.is_empty() => Err("an error without problems".into()),
                Err(e) => match e
                    .problems
                    .iter()
                    .find(|p| p.pos.is_none() && !p.field.is_empty())
                {
                    // Only what is missing altogether has no place in the text.
                    Some(p) if !p.message.contains("missing") => {
                        Err(format!("no position for {}: {}", p.field, p.message))
                    }
                    _ => Ok(()),
                },
            }
        },
    );
}

const CONFIG_WORDS: &[&[u8]] = &[
    b"version = 1",
    b"[[users]]",
    b"[[files]]",
    b"[units]",
    b"[etcd]",
    b"[kubelet]",
    b"mode = \"join\"",
    b"mode = \"bootstrap\"",
    b"\"\"\"",
    b"https://",
    b"0o777",
    b"_file = \"",
];

#[test]
fn the_first_boot_config_parser_gives_a_config_or_errors_with_positions() {
    fuzz::run(
        "firstboot-config",
        corpus("firstboot"),
        CONFIG_WORDS,
        4000,
        LIMIT,
        |b| match firstboot::config::parse_bytes(b, "user-data") {
            Ok(_) => Ok(()),
            Err(e) if e.problems.is_empty() => Err("an error without problems".into()),
            Err(e) => match e.problems.iter().find(|p| p.line == 0 || p.col == 0) {
                Some(p) => Err(format!("position 0 for {}: {}", p.field, p.message)),
                None => Ok(()),
            },
        },
    );
}

const HTTP_WORDS: &[&[u8]] = &[
    b"\r\n",
    b"HTTP/1.1 ",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: ",
    b"ffffffffffffffff",
    b"100 Continue\r\n\r\n",
    b"0\r\n\r\n",
];

#[test]
fn http_responses_parse_or_fail_and_bodies_end() {
    fuzz::run("http", corpus("http"), HTTP_WORDS, 20000, LIMIT, |b| {
        let r = firstboot::http::parse_response(Cursor::new(b.to_vec()), "fuzz:1", false);
        if let Ok(resp) = r {
            let _ = resp.bytes(1 << 20);
        }
        Ok(())
    });
}

#[test]
fn urls_parse_or_fail_and_parsed_ones_print_back() {
    fuzz::run(
        "url",
        corpus("url"),
        &[b"://", b"[", b"]:", b"@", b"%"],
        20000,
        LIMIT,
        |b| {
            let s = text(b);
            if let Ok(u) = firstboot::http::Url::parse(s.trim()) {
                let _ = (u.authority(), u.redacted(), u.with_path("/x"));
                let again = u.to_string();
                if let Err(e) = firstboot::http::Url::parse(&again) {
                    return Err(format!(
                        "{s:?} parsed, but its printed form {again:?} does not: {e}"
                    ));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn ec2_xml_answers_never_panic() {
    use atomicbuild::upload::aws::{ami, client};
    fuzz::run(
        "ec2-xml",
        corpus("aws"),
        &[
            b"<imageId>",
            b"</imageId>",
            b"<key>atomicbuild:sha256</key>",
            b"<value>",
            b"</Message>",
        ],
        20000,
        LIMIT,
        |b| {
            let x = text(b);
            let _ = (client::xml_value(&x, "imageId"), ami::found_in(&x));
            let _ = atomicbuild::upload::service_message(&x);
            Ok(())
        },
    );
}

#[test]
fn openstack_json_answers_never_panic() {
    use atomicbuild::upload::openstack::auth::image_endpoint;
    fuzz::run(
        "openstack-json",
        corpus("openstack"),
        &[b"\"image\"", b"\"public\"", b"null", b"[]", b"{}"],
        20000,
        LIMIT,
        |b| {
            let s = text(b);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
                let _ = image_endpoint(&v, "public", Some("RegionOne"));
                let _ = image_endpoint(&v, "internal", None);
            }
            let _ = atomicbuild::upload::service_message(&s);
            Ok(())
        },
    );
}
