//! Shell completions and man pages, generated from the command line's own
//! definitions: the scripts parse in their shell, the pages render with
//! `man -l` (man-db, from scripts/install-deps) without a warning, and
//! both know the options `--help` knows.

use std::process::Command;

fn atomicbuild(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_atomicbuild"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn completions_parse_in_bash_and_know_the_subcommands_and_options() {
    let o = atomicbuild(&["completions", "bash"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("atomicbuild.bash");
    std::fs::write(&f, &o.stdout).unwrap();
    let n = Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert!(
        n.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&n.stderr)
    );
    let script = String::from_utf8_lossy(&o.stdout);
    for want in [
        "publish",
        "completions",
        "--manifest",
        "--cache-max",
        "openstack",
    ] {
        assert!(script.contains(want), "no {want} in the bash completions");
    }
    let zsh = atomicbuild(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef atomicbuild"));
    let fish = atomicbuild(&["completions", "fish"]);
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c atomicbuild"));
    let bad = atomicbuild(&["completions", "cmd.exe"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

#[test]
fn man_pages_render_for_every_subcommand() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("man1");
    let o = atomicbuild(&["man", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "atomicbuild.1",
        "atomicbuild-build.1",
        "atomicbuild-test.1",
        "atomicbuild-publish.1",
        "atomicbuild-upload-aws.1",
        "atomicbuild-cache-gc.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "no {want} in {pages:?}");
    }
    assert!(
        pages
            .iter()
            .all(|p| p.ends_with(".1") && !p.starts_with('.')),
        "{pages:?}"
    );
    for p in &pages {
        let r = Command::new("man")
            .args(["-P", "cat", "-l"])
            .arg(dir.join(p))
            .env("MANWIDTH", "80")
            .output()
            .expect("man (man-db) is installed by scripts/install-deps");
        let (out, err) = (
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr),
        );
        assert!(r.status.success() && err.trim().is_empty(), "{p}: {err}");
        assert!(
            out.contains("NAME") && out.contains("SYNOPSIS"),
            "{p}: {out}"
        );
    }
    let build = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(dir.join("atomicbuild-build.1"))
        .output()
        .unwrap();
    let build = String::from_utf8_lossy(&build.stdout);
    assert!(build.contains("--cache-max"), "{build}");

    // A directory that cannot be made: an error naming it.
    let file = d.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = atomicbuild(&["man", file.join("man1").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("a-file/man1"));
}
