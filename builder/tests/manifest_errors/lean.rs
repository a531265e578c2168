//! `[packages] docs/languages/leave_out` and `[kernel]`: wrong values are refused
//! with their line and field; `metal` is accepted for `all`.

use super::{after_good, good, rejects};

#[test]
fn unknown_module_profile() {
    rejects(
        &format!("{}\n[kernel]\nmodules = \"tiny\"\n", good()),
        &[
            &after_good(3, 11),
            "kernel.modules",
            "unknown variant `tiny`, expected one of `container-host`, `all`, `metal`",
        ],
    );
}

#[test]
fn unknown_module_compression() {
    rejects(
        &format!("{}\n[kernel]\nmodule_compression = \"gzip\"\n", good()),
        &[
            &after_good(3, 22),
            "kernel.module_compression",
            "unknown variant `gzip`",
        ],
    );
}

#[test]
fn bad_language_code() {
    rejects(
        &good().replace(
            "\"dracut\"]",
            "\"dracut\"]\nlanguages = [\"de\", \"German\"]",
        ),
        &["packages.languages[1]", "\"German\" is not a language code"],
    );
}

#[test]
fn left_out_paths_must_be_plain_absolute_paths() {
    for (bad, why) in [
        ("usr/bin/x", "is not an absolute path"),
        ("/", "would leave out everything"),
        ("/usr/bin/*", "has glob or separator characters"),
        ("/usr/lib/", "is not a plain path"),
        ("/usr/../etc", "is not a plain path"),
    ] {
        rejects(
            &good().replace(
                "\"dracut\"]",
                &format!("\"dracut\"]\nleave_out = [\"/usr/bin/ok\", \"{bad}\"]"),
            ),
            &["packages.leave_out[1]", &format!("\"{bad}\" {why}")],
        );
    }
}

#[test]
fn docs_must_be_a_boolean_and_metal_means_all() {
    rejects(
        &good().replace("\"dracut\"]", "\"dracut\"]\ndocs = \"no\""),
        &["packages.docs", "expected a boolean"],
    );
    let m = format!(
        "{}\n[kernel]\nmodules = \"metal\"\nmodule_compression = \"zstd\"\n",
        good()
    )
    .replace(
        "\"dracut\"]",
        "\"dracut\"]\ndocs = true\nlanguages = [\"pt_BR\"]\nleave_out = [\"/usr/bin/a\"]",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ov")).unwrap();
    std::fs::write(dir.path().join("host.toml"), m).unwrap();
    let parsed = atomicbuild::manifest::load(&dir.path().join("host.toml")).unwrap();
    assert_eq!(parsed.lean.modules, atomicbuild::model::ModuleProfile::All);
    assert_eq!(
        parsed.lean.module_compression,
        atomicbuild::model::ModuleCompression::Zstd
    );
    assert!(parsed.lean.docs);
    assert_eq!(parsed.lean.languages, ["pt_BR"]);
    assert_eq!(parsed.lean.leave_out, ["/usr/bin/a"]);
}
