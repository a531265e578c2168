//! The manifest: `host.toml` parsed strictly, then validated into a typed,
//! defaults-resolved [`Manifest`].
//!
//! Every error names the file, line, column and field path, and says how to
//! fix it. Loading a manifest never touches anything outside the manifest's
//! own file and the overlay directories it names (which are only checked).

mod locate;
pub mod raw;
mod sections;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::disk::DiskSpec;
use crate::distro::spec::Base;
use crate::formats::Output;
use crate::signing::Signing;
use crate::updates::Updates;
use crate::upload::spec::Upload;
pub use raw::Platform;

/// A validated manifest with every default filled in.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The file this came from.
    pub path: PathBuf,
    /// sha256 of the manifest file's bytes.
    pub sha256: String,
    /// Image name (file names derive from it).
    pub name: String,
    /// Image version.
    pub version: String,
    /// Where packages come from.
    pub base: Base,
    /// Packages to install, in the order written.
    pub packages: Vec<String>,
    /// What the image leaves out (docs, translations, kernel modules).
    pub lean: crate::model::Lean,
    /// Static hostname.
    pub hostname: String,
    /// Overlay directories, absolute, applied in order.
    pub overlays: Vec<PathBuf>,
    /// Extra kernel arguments (the builder adds root=, console=).
    pub kernel_args: Vec<String>,
    /// systemd unit presets.
    pub units: Units,
    /// Users to create.
    pub users: Vec<User>,
    /// Disk geometry.
    pub disk: DiskSpec,
    /// OSTree naming.
    pub ostree: OstreeSpec,
    /// Image formats to write besides the raw image.
    pub outputs: Vec<Output>,
    /// First-boot agent settings.
    pub firstboot: Firstboot,
    /// Cloud uploads (`--upload`).
    pub uploads: Vec<Upload>,
    /// Where hosts look for updates, and how.
    pub updates: Option<Updates>,
    /// The key `publish` and every build's `SHA256SUMS` are signed with.
    pub signing: Option<Signing>,
    /// Size and boot-time limits.
    pub budgets: crate::budgets::Budgets,
    /// Image lint rules waived, with reasons (`[[lint.waive]]`).
    pub lint_waivers: Vec<crate::lint::Waiver>,
    /// Container images preloaded under /usr (`[[container_images]]`).
    pub container_images: Vec<crate::containers::ContainerImage>,
    /// Registry settings written into /etc/containerd/certs.d (`[[registries]]`).
    #[serde(skip)] // a shared type without serde; the image's files show them
    pub registries: Vec<common::registries::Registry>,
}

/// Units to enable, disable and mask.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Units {
    /// `systemctl enable`
    pub enable: Vec<String>,
    /// `systemctl disable`
    pub disable: Vec<String>,
    /// `systemctl mask`
    pub mask: Vec<String>,
}

/// A login user.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Supplementary groups (must exist in the image).
    pub groups: Vec<String>,
    /// OpenSSH public keys.
    pub ssh_authorized_keys: Vec<String>,
    /// crypt(3) hash, or none for a locked password.
    pub password_hash: Option<String>,
    /// Login shell.
    pub shell: String,
}

/// How the image's first-boot agent finds its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Firstboot {
    /// The platform the image is built for.
    pub platform: Platform,
    /// AWS: allow the IMDSv1 fallback.
    pub aws_imdsv1: bool,
    /// file: label of the partition holding the config.
    pub config_label: Option<String>,
    /// file: path of the config (on that partition or the root).
    pub config_path: Option<String>,
}

impl Firstboot {
    /// The kernel arguments that tell the agent where to look.
    pub fn kernel_args(&self) -> Vec<String> {
        let mut v = vec![format!("atomic.platform={}", self.platform.name())];
        if self.aws_imdsv1 {
            v.push("atomic.aws-imdsv1=1".into());
        }
        if let Some(l) = &self.config_label {
            v.push(format!("atomic.config-label={l}"));
        }
        if let Some(c) = &self.config_path {
            v.push(format!("atomic.config-path={c}"));
        }
        v
    }
}

/// OSTree ref and OS name.
#[derive(Debug, Clone, Serialize)]
pub struct OstreeSpec {
    /// Branch the commit is written to.
    #[serde(rename = "ref")]
    pub ref_: String,
    /// Stateroot name.
    pub osname: String,
}

impl Manifest {
    /// `NAME-VERSION`, the stem of every output file.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Seed for the disk's GUIDs and file-system UUIDs: the image's
    /// identity (name, version, disk sizes, OSTree ref and OS name) rather
    /// than the whole manifest, so a change that does not touch the disk
    /// (another output format, a comment) gives the same disk bytes.
    pub fn image_seed(&self) -> String {
        let d = &self.disk;
        let mut h = crate::cache::KeyHasher::new();
        h.put(&self.name)
            .put(&self.version)
            .put(format!("{}:{}:{}", d.size, d.esp_size, d.boot_size))
            .put(&self.ostree.ref_)
            .put(&self.ostree.osname);
        h.finish()
    }
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `users[1].name` (empty for syntax errors).
    pub field: String,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A manifest that could not be read or did not validate.
#[derive(Debug)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// Everything found wrong, in file order.
    pub problems: Vec<Problem>,
}

impl std::error::Error for ManifestError {}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{} has {} problem{}:",
            self.file.display(),
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            let loc = match p.pos {
                Some((l, c)) => format!("{}:{l}:{c}", self.file.display()),
                None => self.file.display().to_string(),
            };
            let field = if p.field.is_empty() {
                String::new()
            } else {
                format!(" {}:", p.field)
            };
            write!(f, "  {loc}:{field} {}", p.message)?;
            if i + 1 < n {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// A problem found after validation (e.g. by the build), placed at the
/// line of `field` (`container_images[1].sha256`) in the manifest `file`.
pub fn problem_at(file: &Path, field: &str, message: String) -> ManifestError {
    let pos = std::fs::read_to_string(file)
        .ok()
        .and_then(|src| locate::locate(&src, &locate::parse(field)));
    ManifestError {
        file: file.to_owned(),
        problems: vec![Problem {
            field: field.to_string(),
            pos,
            message,
        }],
    }
}

/// Read, parse and validate the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let (src, sha256) = read_source(path, "the manifest")?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let dir = abs.parent().map(Path::to_owned).unwrap_or_default();
    parse_str(&src, path, &dir, sha256)
}

/// The UTF-8 text of `path` (`what` it is, for errors) and its sha256.
pub fn read_source(path: &Path, what: &str) -> Result<(String, String), ManifestError> {
    let fail = |message: String| ManifestError {
        file: path.to_owned(),
        problems: vec![Problem {
            field: String::new(),
            pos: None,
            message,
        }],
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read {what}: {e}")))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let src = String::from_utf8(bytes).map_err(|_| fail(format!("{what} is not valid UTF-8")))?;
    Ok((src, sha256))
}

/// Parse and validate manifest text; `dir` resolves relative overlay paths.
pub fn parse_str(
    src: &str,
    file: &Path,
    dir: &Path,
    sha256: String,
) -> Result<Manifest, ManifestError> {
    parse_checked(src, file, |raw: raw::RawManifest| {
        validate::check(raw, file, dir, sha256)
    })
}

/// Parse TOML text into `R` (unknown keys and wrong types are errors with
/// their position), then `check` it; every problem `check` finds is placed
/// at the line and column of its field. Manifests and test expectations
/// (`expect.toml`) are read this way.
pub fn parse_checked<R: serde::de::DeserializeOwned, T>(
    src: &str,
    file: &Path,
    check: impl FnOnce(R) -> Result<T, crate::model::Problems>,
) -> Result<T, ManifestError> {
    let de = toml::Deserializer::new(src);
    let raw: R = match serde_path_to_error::deserialize(de) {
        Ok(r) => r,
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let inner = e.inner();
            let pos = inner
                .span()
                .map(|s| crate::model::line_col(src, s.start))
                .or_else(|| locate::locate(src, &locate::parse(&field)));
            return Err(ManifestError {
                file: file.to_owned(),
                problems: vec![Problem {
                    field,
                    pos,
                    message: inner.message().trim().to_string(),
                }],
            });
        }
    };
    match check(raw) {
        Ok(m) => Ok(m),
        Err(found) => {
            let mut problems: Vec<Problem> = found
                .into_vec()
                .into_iter()
                .map(|(field, message)| Problem {
                    pos: locate::locate(src, &locate::parse(&field)),
                    field,
                    message,
                })
                .collect();
            problems.sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
            Err(ManifestError {
                file: file.to_owned(),
                problems,
            })
        }
    }
}
