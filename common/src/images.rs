//! Container images preloaded into an image: OCI archives the builder
//! stores under `/usr` (part of the signed, read-only commit) with a list
//! of them, which `atomic-firstboot import-images` reads on every boot to
//! import what containerd does not have yet.
//!
//! The list is one line per image, tab-separated: the manifest's name for
//! it, the archive's file name in [`DIR`], the archive's sha256, the
//! reference containerd knows it by, and its manifest digest.

use std::fmt::Write as _;

/// Where the archives and the list are, relative to the root.
pub const DIR: &str = "usr/share/atomicbuild/images";
/// The list, relative to the root.
pub const LIST: &str = "usr/share/atomicbuild/images/images.list";
/// The containerd namespace the images go into: the kubelet's (CRI), so
/// that its pause image and the workloads are found without a registry.
pub const NAMESPACE: &str = "k8s.io";

/// One preloaded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preloaded {
    /// The manifest's name for it.
    pub name: String,
    /// The archive's file name in [`DIR`].
    pub file: String,
    /// sha256 (hex) of the archive file.
    pub sha256: String,
    /// What containerd calls it, e.g. `registry.k8s.io/pause:3.10.1`.
    pub reference: String,
    /// Its manifest digest, `sha256:HEX`.
    pub digest: String,
}

impl Preloaded {
    /// The reference pinned by digest (`REPO@sha256:…`, the tag dropped).
    pub fn pinned(&self) -> String {
        format!("{}@{}", repository(&self.reference), self.digest)
    }
}

/// The repository part of a reference: without `:TAG` and `@DIGEST` (a
/// registry's `:PORT` stays).
pub fn repository(reference: &str) -> &str {
    let r = reference.split('@').next().unwrap_or(reference);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => &r[..i],
        _ => r,
    }
}

/// The list's text.
pub fn render(images: &[Preloaded]) -> String {
    let mut s = String::from(
        "# Written by atomicbuild: container images preloaded into this image.\n\
         # name\tfile\tsha256\treference\tdigest\n",
    );
    for i in images {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}",
            i.name, i.file, i.sha256, i.reference, i.digest
        );
    }
    s
}

/// Parse the list (`Err`: the first bad line, 1-based, and why).
pub fn parse(text: &str) -> Result<Vec<Preloaded>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [name, file, sha256, reference, digest] = f[..] else {
            return Err(format!("line {}: expected 5 tab-separated fields", n + 1));
        };
        if file.contains('/') || file.starts_with('.') {
            return Err(format!("line {}: bad file name {file:?}", n + 1));
        }
        if !is_sha256_hex(sha256) || !digest.strip_prefix("sha256:").is_some_and(is_sha256_hex) {
            return Err(format!("line {}: bad sha256 or digest", n + 1));
        }
        out.push(Preloaded {
            name: name.into(),
            file: file.into(),
            sha256: sha256.into(),
            reference: reference.into(),
            digest: digest.into(),
        });
    }
    Ok(out)
}

/// 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause() -> Preloaded {
        Preloaded {
            name: "pause".into(),
            file: "pause.oci.tar".into(),
            sha256: "a".repeat(64),
            reference: "registry.k8s.io/pause:3.10.1".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
        }
    }

    #[test]
    fn the_list_reads_back_what_was_written() {
        let l = vec![pause()];
        assert_eq!(parse(&render(&l)).unwrap(), l);
        assert_eq!(
            l[0].pinned(),
            format!("registry.k8s.io/pause@sha256:{}", "b".repeat(64))
        );
    }

    #[test]
    fn repositories_keep_ports_and_drop_tags_and_digests() {
        assert_eq!(
            repository("10.0.2.2:5000/test/bb:v1"),
            "10.0.2.2:5000/test/bb"
        );
        assert_eq!(repository("10.0.2.2:5000/test/bb"), "10.0.2.2:5000/test/bb");
        assert_eq!(repository("busybox@sha256:00"), "busybox");
        assert_eq!(repository("busybox:1@sha256:00"), "busybox");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let good = render(&[pause()]);
        let e = parse(&format!("{good}oops\n")).unwrap_err();
        assert!(e.starts_with("line 4:"), "{e}");
        let e = parse(&good.replace("pause.oci.tar", "../etc/shadow")).unwrap_err();
        assert!(e.contains("bad file name"), "{e}");
        let e = parse(&good.replace(&"a".repeat(64), "A")).unwrap_err();
        assert!(e.contains("bad sha256"), "{e}");
    }
}
