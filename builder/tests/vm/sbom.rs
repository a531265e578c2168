//! The supply-chain files of a real build: the SBOM against the lock and the image's own dpkg
//! database, and the signature of SHA256SUMS.

use std::collections::BTreeMap;
use std::path::Path;

use atomicbuild::distro::lock::Lock;

fn load(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every mismatch between the SBOMs beside the outputs (`outside`) and in
/// the image (`inside`), the `lock`, and `dpkg` (lines `STATUS|NAME|SOURCE|
/// SOURCE-VERSION` queried in the image).
pub fn check(outside: &Path, inside: &Path, lock: &Lock, dpkg: &str) -> Vec<String> {
    let (out, ins) = (load(outside), load(inside));
    let mut bad = Vec::new();
    let tree = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["packageFileName"].is_null())
            .cloned()
            .collect()
    };
    if tree(&out) != tree(&ins)
        || tree(&ins).len() != ins["packages"].as_array().map_or(0, |a| a.len())
    {
        bad.push("the image's SBOM lists other packages than the one beside the outputs".into());
    }
    // The outputs, with the checksums SHA256SUMS has.
    let sums = std::fs::read_to_string(outside.with_file_name("SHA256SUMS")).unwrap_or_default();
    let outputs: Vec<String> = out["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(format!(
                "{}  {}",
                p["checksums"][0]["checksumValue"].as_str()?,
                p["packageFileName"].as_str()?
            ))
        })
        .collect();
    if outputs.len() != 2 || !outputs.iter().all(|o| sums.lines().any(|l| l == o)) {
        bad.push(format!(
            "the outputs in the SBOM {outputs:?} are not SHA256SUMS':\n{sums}"
        ));
    }
    let pk = out["packages"].as_array().cloned().unwrap_or_default();
    let by_id: BTreeMap<&str, &serde_json::Value> = pk
        .iter()
        .filter_map(|p| Some((p["SPDXID"].as_str()?, p)))
        .collect();
    let source_of: BTreeMap<&str, &str> = out["relationships"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["relationshipType"] == "GENERATED_FROM")
        .filter_map(|r| {
            Some((
                r["spdxElementId"].as_str()?,
                r["relatedSpdxElement"].as_str()?,
            ))
        })
        .collect();
    // Binary packages by name: (purl, sha256, source name, source version).
    let mut binaries = BTreeMap::new();
    for p in &pk {
        let Some(src) = p["SPDXID"].as_str().and_then(|id| source_of.get(id)) else {
            continue;
        };
        let s = by_id[src];
        binaries.insert(
            p["name"].as_str().unwrap_or_default().to_string(),
            (
                p["externalRefs"][0]["referenceLocator"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["checksums"][0]["checksumValue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
                s["versionInfo"].as_str().unwrap_or_default().to_string(),
            ),
        );
    }
    for l in &lock.packages {
        match binaries.get(&l.name) {
            Some((purl, sha, _, _)) => {
                if !purl.starts_with(&format!("pkg:deb/debian/{}@", l.name.replace('+', "%2B")))
                    || sha != &l.sha256
                {
                    bad.push(format!(
                        "{}: purl {purl} or sha256 {sha} does not match the lock",
                        l.name
                    ));
                }
            }
            None => bad.push(format!("{} of the lock is not in the SBOM", l.name)),
        }
    }
    let mut installed = 0;
    for line in dpkg.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 4 || !f[0].starts_with("ii") {
            continue;
        }
        installed += 1;
        let src_name = if f[2].is_empty() { f[1] } else { f[2] };
        match binaries.get(f[1]) {
            Some((_, _, s, v)) if s == src_name && v == f[3] => {}
            other => bad.push(format!(
                "{}: dpkg says source {src_name} {}, the SBOM {other:?}",
                f[1], f[3]
            )),
        }
    }
    if installed != binaries.len() || installed != lock.packages.len() {
        bad.push(format!(
            "{installed} packages installed (dpkg), {} in the SBOM, {} in the lock",
            binaries.len(),
            lock.packages.len()
        ));
    }
    eprintln!(
        "SBOM: {} binary packages (dpkg in the image: {installed}), {} files besides them",
        binaries.len(),
        out["files"].as_array().map_or(0, |f| f.len())
    );
    bad
}

/// The build's `SHA256SUMS` is signed: `gpgv` holding only `public`
/// accepts it; the lock, SBOM and metadata are in it (checked on copies
/// in `scratch`); a tampered output fails its line of the validly signed
/// sums, and tampered sums fail the signature. What is wrong, if anything.
pub fn signatures(public: &Path, out: &Path, stem: &str, scratch: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let (good, said) = crate::keys::gpgv(public, out);
    if !good {
        return vec![format!("gpgv refused the build's SHA256SUMS: {said}")];
    }
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    std::fs::create_dir_all(scratch).unwrap();
    for f in ["SHA256SUMS", "SHA256SUMS.asc"]
        .into_iter()
        .map(String::from)
        .chain(["lock", "spdx.json", "json"].map(|e| format!("{stem}.{e}")))
    {
        if !sums.contains(&format!("  {f}\n")) && !f.starts_with("SHA") {
            bad.push(format!("{f} is not in SHA256SUMS:\n{sums}"));
        }
        std::fs::copy(out.join(&f), scratch.join(&f)).unwrap();
    }
    let check = |dir: &Path| {
        std::process::Command::new("sha256sum")
            .args(["-c", "--ignore-missing", "--quiet", "SHA256SUMS"])
            .current_dir(dir)
            .status()
            .unwrap()
            .success()
    };
    if !check(scratch) {
        bad.push("the copies do not match SHA256SUMS".into());
    }
    let lock = scratch.join(format!("{stem}.lock"));
    let t = std::fs::read_to_string(&lock).unwrap();
    std::fs::write(&lock, t.replacen("version", "vErsion", 1)).unwrap();
    if !crate::keys::gpgv(public, scratch).0 || check(scratch) {
        bad.push("a tampered lock should fail its line of the validly signed sums".into());
    }
    std::fs::write(scratch.join("SHA256SUMS"), sums.replacen('0', "1", 1)).unwrap();
    if crate::keys::gpgv(public, scratch).0 {
        bad.push("tampered sums should fail the signature".into());
    }
    bad
}
