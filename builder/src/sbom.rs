//! The software bill of materials of a build, as SPDX 2.3 JSON, written from
//! the package database and the lock (never by scanning): every installed
//! package with its version, architecture, source package and version,
//! purl, the archive's sha256 from the lock and the licence its copyright
//! file declares machine-readably; the files that came from no package
//! (overlays, the agents) with their checksums; next to the outputs also
//! the output files (with the sha256 the build recorded). Deterministic:
//! the same build gives the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha1::Digest as _;

use crate::model::Package;

/// Where the image carries the SBOM of its tree.
pub const IN_IMAGE: &str = "usr/share/atomicbuild/sbom.spdx.json";

/// A file the SBOM lists besides the packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path (`./usr/libexec/atomic-firstboot`, or an output's file name).
    pub name: String,
    /// sha1 (SPDX requires it) and sha256, hex.
    pub sha1: String,
    /// sha256, hex.
    pub sha256: String,
    /// What the file is (`overlay`, `agent`, `output`).
    pub comment: String,
}

impl FileEntry {
    /// The entry of the file at `path`, named `name`.
    pub fn of(path: &Path, name: &str, comment: &str) -> anyhow::Result<FileEntry> {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let (mut s1, mut s256) = (sha1::Sha1::new(), sha2::Sha256::new());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            s1.update(&buf[..n]);
            sha2::Digest::update(&mut s256, &buf[..n]);
        }
        Ok(FileEntry {
            name: name.to_string(),
            sha1: hex::encode(s1.finalize()),
            sha256: hex::encode(sha2::Digest::finalize(s256)),
            comment: comment.to_string(),
        })
    }
}

/// What the SBOM describes.
pub struct Input<'a> {
    /// Image name and version.
    pub name: &'a str,
    /// Image version.
    pub version: &'a str,
    /// `debian` or `fedora`.
    pub distro: &'a str,
    /// The distro's version for purls (`12`, `45`).
    pub distro_version: &'a str,
    /// SOURCE_DATE_EPOCH (the document's creation time).
    pub epoch: u64,
    /// Installed packages.
    pub packages: &'a [Package],
    /// Archive sha256 by (name, arch), from the lock.
    pub archive_sha256: &'a BTreeMap<(String, String), String>,
    /// Declared licence (an SPDX expression) by package name.
    pub licences: &'a BTreeMap<String, String>,
    /// Files besides the packages.
    pub files: &'a [FileEntry],
    /// Output files (name, sha256): described as packages that contain
    /// the image (SPDX files would need a SHA1 of every multi-GiB image).
    pub outputs: &'a [(String, String)],
}

/// `s` percent-encoded for a purl component.
fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._-~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The package URL of a binary (or, with `arch` "source", a source) package.
pub fn purl(distro: &str, distro_version: &str, name: &str, version: &str, arch: &str) -> String {
    let (kind, ns) = match distro {
        "fedora" => ("rpm", "fedora"),
        _ => ("deb", "debian"),
    };
    format!(
        "pkg:{kind}/{ns}/{}@{}?arch={}&distro={distro}-{distro_version}",
        pct(name),
        pct(version),
        pct(arch)
    )
}

/// An SPDX identifier from `parts` (letters, digits, `.` and `-` only).
fn spdx_id(parts: &[&str]) -> String {
    let mut id = String::from("SPDXRef");
    for p in parts {
        id.push('-');
        id.extend(p.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        }));
    }
    id
}

/// RFC 3339 UTC time of `epoch`.
fn rfc3339(epoch: u64) -> String {
    let (days, secs) = ((epoch / 86_400) as i64, epoch % 86_400);
    let (y, m, d) = common::units::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn package_json(i: &Input, idx: usize, p: &Package) -> Value {
    let checksums: Vec<Value> = i
        .archive_sha256
        .get(&(p.name.clone(), p.arch.clone()))
        .map(|s| json!({"algorithm": "SHA256", "checksumValue": s}))
        .into_iter()
        .collect();
    json!({
        "SPDXID": spdx_id(&["Package", &idx.to_string(), &p.name]),
        "name": p.name,
        "versionInfo": p.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": i.licences.get(&p.name).map_or("NOASSERTION", String::as_str),
        "copyrightText": "NOASSERTION",
        "supplier": "NOASSERTION",
        "sourceInfo": format!("built from the source package {} {}", p.source, p.source_version),
        "checksums": checksums,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(i.distro, i.distro_version, &p.name, &p.version, &p.arch),
        }],
    })
}

/// A source package.
fn source_json(i: &Input, id: &str, name: &str, version: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "SOURCE",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(i.distro, i.distro_version, name, version, "source"),
        }],
    })
}

/// The files, each described by the document (not CONTAINS: the image
/// package is not file-analyzed, since its packages' files are not listed).
fn files_json(files: &[FileEntry], rel: &mut Vec<Value>) -> Vec<Value> {
    files
        .iter()
        .enumerate()
        .map(|(idx, f)| {
            let id = spdx_id(&["File", &idx.to_string()]);
            rel.push(json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": id
            }));
            json!({
                "SPDXID": id,
                "fileName": f.name,
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "comment": f.comment,
            })
        })
        .collect()
}

/// The SPDX 2.3 JSON document.
pub fn spdx(i: &Input) -> Value {
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": i.name,
        "versionInfo": i.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": "The OSTree tree of this image, built by atomicbuild.",
    })];
    let mut rel = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}),
    ];
    let mut sources: BTreeMap<(String, String), String> = BTreeMap::new();
    for (idx, p) in i.packages.iter().enumerate() {
        let v = package_json(i, idx, p);
        let id = v["SPDXID"].as_str().unwrap_or_default().to_string();
        rel.push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
        let n = sources.len();
        let src = sources
            .entry((p.source.clone(), p.source_version.clone()))
            .or_insert_with(|| spdx_id(&["Source", &n.to_string(), &p.source]))
            .clone();
        rel.push(json!({"spdxElementId": id, "relationshipType": "GENERATED_FROM", "relatedSpdxElement": src}));
        packages.push(v);
    }
    packages.extend(
        sources
            .iter()
            .map(|((name, version), id)| source_json(i, id, name, version)),
    );
    let files = files_json(i.files, &mut rel);
    for (idx, (file, sha256)) in i.outputs.iter().enumerate() {
        let id = spdx_id(&["Output", &idx.to_string()]);
        rel.push(json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": id}));
        rel.push(json!({"spdxElementId": id, "relationshipType": "CONTAINS", "relatedSpdxElement": image_id}));
        packages.push(json!({
            "SPDXID": id,
            "name": file,
            "packageFileName": file,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "FILE",
            "checksums": [{"algorithm": "SHA256", "checksumValue": sha256}],
            "comment": "An output file of the build: a disk image holding the image's tree.",
        }));
    }
    let ns_key = hex::encode(sha2::Sha256::digest(
        serde_json::to_vec(&(&packages, &files)).unwrap_or_default(),
    ));
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", i.name, i.version),
        "documentNamespace": format!("https://atomicbuild.invalid/spdx/{}-{}-{}", i.name, i.version, &ns_key[..16]),
        "creationInfo": {
            "created": rfc3339(i.epoch),
            "creators": [format!("Tool: atomicbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "files": files,
        "relationships": rel,
    })
}

/// Debian licence short names (DEP-5) as SPDX identifiers; others are not
/// claimed (NOASSERTION).
const DEBIAN_LICENCES: &[(&str, &str)] = &[
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("Expat", "MIT"),
    ("MIT", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("Apache-2.0", "Apache-2.0"),
    ("ISC", "ISC"),
    ("Zlib", "Zlib"),
    ("MPL-2.0", "MPL-2.0"),
    ("public-domain", "LicenseRef-public-domain"),
];

/// The licence a machine-readable (DEP-5) copyright file declares for
/// `Files: *`, as SPDX; `None` when it is not machine-readable or names a
/// licence not in the table.
pub fn debian_licence(copyright: &str) -> Option<String> {
    if !copyright.starts_with("Format:") {
        return None;
    }
    let mut in_star = false;
    for l in copyright.lines() {
        if l.trim().is_empty() {
            in_star = false;
        } else if let Some(f) = l.strip_prefix("Files:") {
            in_star = f.split_whitespace().next() == Some("*");
        } else if let Some(lic) = l.strip_prefix("License:").filter(|_| in_star) {
            let name = lic.trim();
            let ids: Option<Vec<&str>> = name
                .split(" or ")
                .map(|part| {
                    DEBIAN_LICENCES
                        .iter()
                        .find(|(d, _)| d.eq_ignore_ascii_case(part.trim()))
                        .map(|(_, s)| *s)
                })
                .collect();
            return ids
                .map(|v| v.join(" OR "))
                .filter(|s| !s.contains("LicenseRef"));
        }
    }
    None
}

#[cfg(test)]
mod tests;
