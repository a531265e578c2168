//! The workspace's structure rules (`scripts/check-structure`): no module
//! cycle at any level of any crate (inline `crate::x::` paths, `super::`,
//! grouped `use` and `pub use` all count), no source file over 600 lines,
//! no non-test function over 80 lines. Checked on this tree, and shown to
//! turn red on a scratch copy with a planted cycle and an oversized file.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn check(dir: &Path) -> (bool, String) {
    let o = Command::new("python3")
        .arg(repo_root().join("scripts/check-structure"))
        .arg(dir)
        .output()
        .expect("running scripts/check-structure (needs python3)");
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

#[test]
fn this_tree_keeps_the_structure_rules() {
    let (ok, text) = check(&repo_root());
    assert!(ok, "{text}");
}

/// A copy of the workspace's sources (no target directory).
fn scratch_copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for krate in ["builder", "common", "firstboot"] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(repo_root().join(krate))
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    d
}

fn append(p: &Path, text: &str) {
    let mut s = std::fs::read_to_string(p).unwrap();
    s.push_str(text);
    std::fs::write(p, s).unwrap();
}

#[test]
fn a_planted_cycle_turns_it_red() {
    let d = scratch_copy();
    // model is the leaf everything uses: an inline path back up closes a
    // cycle through every layer.
    append(
        &d.path().join("builder/src/model/mod.rs"),
        "\nfn planted() -> String { crate::pipeline::default_cache_dir().display().to_string() }\n",
    );
    let (ok, text) = check(d.path());
    assert!(!ok, "a cycle went unnoticed:\n{text}");
    assert!(
        text.contains("builder: modules of crate form a cycle")
            && text.contains("model -> pipeline"),
        "{text}"
    );
}

#[test]
fn a_sibling_cycle_through_super_and_a_pub_use_turns_it_red() {
    let d = scratch_copy();
    // stage::disk already uses stage::deploy; a re-export back closes it.
    append(
        &d.path().join("builder/src/stage/deploy.rs"),
        "\npub use super::disk::Disk as Planted;\n",
    );
    let (ok, text) = check(d.path());
    assert!(!ok, "{text}");
    assert!(text.contains("modules of stage form a cycle"), "{text}");
}

#[test]
fn oversized_files_and_functions_turn_it_red() {
    let d = scratch_copy();
    let body: String = (0..90).map(|i| format!("    let _x{i} = {i};\n")).collect();
    append(
        &d.path().join("common/src/lib.rs"),
        &format!("\npub fn planted_long() {{\n{body}}}\n"),
    );
    let filler: String = (0..700).map(|i| format!("// line {i}\n")).collect();
    append(&d.path().join("common/src/bls.rs"), &filler);
    let (ok, text) = check(d.path());
    assert!(!ok, "{text}");
    assert!(text.contains("fn planted_long has 92 lines"), "{text}");
    assert!(text.contains("common/src/bls.rs:"), "{text}");
}
