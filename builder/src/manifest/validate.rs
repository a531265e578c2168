//! Semantic checks on a [`RawManifest`]: each problem is recorded with its
//! field path and a message that says how to fix it; all are reported at once.

use std::collections::BTreeMap;
use std::path::Path;

use super::raw::{Distro, RawManifest};
use super::{Base, DiskSpec, Manifest, OstreeSpec, Output, Repo, Units, User};

const MIB: u64 = 1 << 20;
/// Minimum root filesystem the layout leaves room for.
pub const MIN_ROOT: u64 = 1 << 30;
/// GPT headers, the BIOS boot partition and alignment take this much.
pub const LAYOUT_OVERHEAD: u64 = 4 * MIB;

/// Collects problems while building a [`Manifest`].
pub struct Validator<'a> {
    dir: &'a Path,
    /// `(field path, message)` pairs.
    pub problems: Vec<(String, String)>,
}

impl<'a> Validator<'a> {
    /// Overlay paths resolve relative to `dir` (the manifest's directory).
    pub fn new(dir: &'a Path) -> Self {
        Validator {
            dir,
            problems: Vec::new(),
        }
    }

    fn bad(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.problems.push((field.into(), msg.into()));
    }

    /// Check everything; `Some` only when no problem was found.
    pub fn check(&mut self, raw: RawManifest, file: &Path, sha256: String) -> Option<Manifest> {
        let RawManifest {
            image,
            base,
            packages,
            system,
            units,
            users,
            disk,
            ostree,
            output,
            firstboot,
            upload,
        } = raw;

        if !is_name(&image.name) {
            self.bad(
                "image.name",
                format!("\"{}\" is not a valid image name: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (it becomes part of file names)", image.name),
            );
        }
        if image.version.is_empty()
            || !image
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+~-".contains(c))
        {
            self.bad(
                "image.version",
                format!("\"{}\" is not a valid version: use letters, digits and . _ + ~ - (for example \"1.0.0\")", image.version),
            );
        }

        let base = self.check_base(base);

        if packages.include.is_empty() {
            self.bad(
                "packages.include",
                "no packages listed: an image needs at least a kernel, systemd and ostree",
            );
        }
        let mut seen = BTreeMap::new();
        for (i, p) in packages.include.iter().enumerate() {
            let field = format!("packages.include[{i}]");
            if !is_package_name(p) {
                self.bad(&field, format!("\"{p}\" is not a valid package name (lowercase letters, digits, + - . and no spaces)"));
            } else if let Some(first) = seen.insert(p.clone(), i) {
                self.bad(&field, format!("package \"{p}\" is listed twice (also packages.include[{first}]); remove one"));
            }
        }

        if base.as_ref().is_some_and(|b| b.distro == Distro::Debian) && !packages.include.is_empty()
        {
            let has = |p: &str| packages.include.iter().any(|x| x == p);
            if !packages
                .include
                .iter()
                .any(|p| p.starts_with("linux-image-"))
            {
                self.bad("packages.include", "no kernel: the Debian backend needs a linux-image-* package (e.g. linux-image-amd64)");
            }
            for (need, why) in [
                ("systemd-sysv", "systemd as init"),
                (
                    "ostree-boot",
                    "ostree-prepare-root and the dracut module that boot an OSTree deployment",
                ),
                (
                    "dracut",
                    "the initramfs generator atomicbuild runs once per build",
                ),
            ] {
                if !has(need) {
                    self.bad(
                        "packages.include",
                        format!("the Debian backend needs {need} ({why}); add it to the list"),
                    );
                }
            }
        }

        let hostname = system
            .hostname
            .clone()
            .unwrap_or_else(|| image.name.clone());
        if !is_hostname(&hostname) {
            self.bad(
                "system.hostname",
                format!("\"{hostname}\" is not a valid hostname: use labels of letters, digits and '-', separated by dots, at most 253 characters"),
            );
        }
        let mut overlays = Vec::new();
        for (i, o) in system.overlays.iter().enumerate() {
            let field = format!("system.overlays[{i}]");
            let p = self.dir.join(o);
            if !p.is_dir() {
                self.bad(
                    &field,
                    format!("overlay directory \"{o}\" does not exist (looked for {}); paths are relative to the manifest's directory", p.display()),
                );
            } else {
                overlays.push(p.canonicalize().unwrap_or(p));
            }
        }
        for (i, a) in system.kernel_args.iter().enumerate() {
            let field = format!("system.kernel_args[{i}]");
            if a.is_empty() || a.chars().any(char::is_whitespace) {
                self.bad(&field, format!("kernel argument \"{a}\" is empty or contains whitespace; write each argument as its own list item"));
            } else if ["root=", "ostree=", "BOOT_IMAGE="]
                .iter()
                .any(|p| a.starts_with(p))
            {
                self.bad(&field, format!("\"{a}\" is set by atomicbuild itself (root, ostree and BOOT_IMAGE arguments come from the disk layout); remove it"));
            } else if a.starts_with("atomic.") {
                self.bad(
                    &field,
                    format!(
                        "\"{a}\" is the first-boot agent's; set it through the [firstboot] table"
                    ),
                );
            }
        }

        let units = self.check_units(units);
        let users = self.check_users(users);
        let disk = self.check_disk(disk);
        let ostree = self.check_ostree(ostree);

        let outputs = self.check_outputs(&output);
        let firstboot = self.check_firstboot(firstboot);
        let uploads = self.check_uploads(
            upload,
            &outputs,
            &format!("{}-{}", image.name, image.version),
            base.as_ref(),
        );

        if !self.problems.is_empty() {
            return None;
        }
        Some(Manifest {
            path: file.to_owned(),
            sha256,
            name: image.name,
            version: image.version,
            base: base?,
            packages: packages.include,
            hostname,
            overlays,
            kernel_args: system.kernel_args,
            units,
            users,
            disk: disk?,
            ostree,
            outputs,
            firstboot,
            uploads,
        })
    }

    fn check_base(&mut self, b: super::raw::RawBase) -> Option<Base> {
        if b.release.trim().is_empty() {
            self.bad(
                "base.release",
                "release is empty: name the release, e.g. \"bookworm\" or \"41\"",
            );
        }
        for (field, url) in [
            ("base.mirror", &b.mirror),
            ("base.security_mirror", &b.security_mirror),
        ] {
            if let Some(u) = url {
                if !is_url(u) {
                    self.bad(
                        field,
                        format!("\"{u}\" is not an http://, https:// or file:// URL"),
                    );
                }
            }
        }
        match b.distro {
            Distro::Debian => {
                if !b.repos.is_empty() {
                    self.bad("base.repos", "repos are for RPM distributions; a Debian base takes base.mirror and base.components");
                }
                let components = b.components.unwrap_or_else(|| vec!["main".into()]);
                if components.is_empty() {
                    self.bad(
                        "base.components",
                        "no components listed; Debian needs at least \"main\"",
                    );
                }
                for (i, c) in components.iter().enumerate() {
                    if c.is_empty() || !c.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                        self.bad(format!("base.components[{i}]"), format!("\"{c}\" is not a valid archive component (e.g. main, contrib, non-free-firmware)"));
                    }
                }
                Some(Base {
                    distro: b.distro,
                    release: b.release,
                    mirror: Some(
                        b.mirror
                            .unwrap_or_else(|| "http://deb.debian.org/debian".into()),
                    ),
                    security_mirror: Some(
                        b.security_mirror
                            .unwrap_or_else(|| "http://deb.debian.org/debian-security".into()),
                    ),
                    components,
                    repos: Vec::new(),
                })
            }
            Distro::Fedora => {
                for (field, set) in [
                    ("base.mirror", b.mirror.is_some()),
                    ("base.security_mirror", b.security_mirror.is_some()),
                    ("base.components", b.components.is_some()),
                ] {
                    if set {
                        self.bad(field, "this key is for Debian bases; a Fedora base lists its repositories as [[base.repos]]");
                    }
                }
                if b.repos.is_empty() {
                    self.bad("base.repos", "a Fedora base needs at least one [[base.repos]] entry with a baseurl or metalink");
                }
                let mut repos = Vec::new();
                let mut names = BTreeMap::new();
                for (i, r) in b.repos.into_iter().enumerate() {
                    let f = format!("base.repos[{i}]");
                    if !is_name(&r.name) {
                        self.bad(format!("{f}.name"), format!("\"{}\" is not a valid repository id (lowercase letters, digits, . _ -)", r.name));
                    } else if let Some(first) = names.insert(r.name.clone(), i) {
                        self.bad(
                            format!("{f}.name"),
                            format!(
                                "repository \"{}\" is defined twice (also base.repos[{first}])",
                                r.name
                            ),
                        );
                    }
                    match (&r.baseurl, &r.metalink) {
                        (None, None) => self.bad(&f, "a repository needs a baseurl or a metalink"),
                        (Some(_), Some(_)) => {
                            self.bad(&f, "give either baseurl or metalink, not both")
                        }
                        _ => {}
                    }
                    for (k, u) in [
                        ("baseurl", &r.baseurl),
                        ("metalink", &r.metalink),
                        ("gpgkey", &r.gpgkey),
                    ] {
                        if let Some(u) = u {
                            if !is_url(u) {
                                self.bad(
                                    format!("{f}.{k}"),
                                    format!("\"{u}\" is not an http://, https:// or file:// URL"),
                                );
                            }
                        }
                    }
                    if r.gpgcheck && r.gpgkey.is_none() {
                        self.bad(format!("{f}.gpgkey"), "gpgcheck is on but no gpgkey is given; add the key URL (or set gpgcheck = false for a trusted local repository)");
                    }
                    repos.push(Repo {
                        name: r.name,
                        baseurl: r.baseurl,
                        metalink: r.metalink,
                        gpgkey: r.gpgkey,
                        gpgcheck: r.gpgcheck,
                    });
                }
                Some(Base {
                    distro: b.distro,
                    release: b.release,
                    mirror: None,
                    security_mirror: None,
                    components: Vec::new(),
                    repos,
                })
            }
        }
    }

    fn check_units(&mut self, u: super::raw::RawUnits) -> Units {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (list, names) in [
            ("enable", &u.enable),
            ("disable", &u.disable),
            ("mask", &u.mask),
        ] {
            for (i, n) in names.iter().enumerate() {
                let field = format!("units.{list}[{i}]");
                if !is_unit_name(n) {
                    self.bad(&field, format!("\"{n}\" is not a systemd unit name: write the full name with its type, like \"etcd.service\" or \"fstrim.timer\""));
                } else if let Some(prev) = seen.insert(n.clone(), field.clone()) {
                    self.bad(&field, format!("unit \"{n}\" already appears at {prev}; a unit can be in only one of enable, disable and mask"));
                }
            }
        }
        Units {
            enable: u.enable,
            disable: u.disable,
            mask: u.mask,
        }
    }

    fn check_users(&mut self, users: Vec<super::raw::RawUser>) -> Vec<User> {
        let mut out = Vec::new();
        let mut names = BTreeMap::new();
        for (i, u) in users.into_iter().enumerate() {
            let f = format!("users[{i}]");
            if !is_user_name(&u.name) {
                self.bad(format!("{f}.name"), format!("\"{}\" is not a valid user name: start with a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most 32 characters", u.name));
            } else if [
                "root",
                "daemon",
                "bin",
                "sys",
                "nobody",
                "sshd",
                "etcd",
                "messagebus",
            ]
            .contains(&u.name.as_str())
            {
                self.bad(format!("{f}.name"), format!("\"{}\" is a system account that already exists in the image; choose another name", u.name));
            } else if let Some(first) = names.insert(u.name.clone(), i) {
                self.bad(
                    format!("{f}.name"),
                    format!(
                        "user \"{}\" is defined twice (also users[{first}]); merge the two entries",
                        u.name
                    ),
                );
            }
            for (j, g) in u.groups.iter().enumerate() {
                if !is_user_name(g) {
                    self.bad(
                        format!("{f}.groups[{j}]"),
                        format!("\"{g}\" is not a valid group name"),
                    );
                }
            }
            for (j, k) in u.ssh_authorized_keys.iter().enumerate() {
                if let Err(why) = check_ssh_key(k) {
                    self.bad(format!("{f}.ssh_authorized_keys[{j}]"), format!("malformed SSH public key: {why}; paste one line of a .pub file, like \"ssh-ed25519 AAAAC3Nza... you@host\""));
                }
            }
            if let Some(h) = &u.password_hash {
                let ok = h.starts_with('$')
                    && h.split('$').count() >= 4
                    && !h.contains(char::is_whitespace)
                    && !h.contains(':');
                if !ok {
                    self.bad(format!("{f}.password_hash"), "not a crypt(3) hash: write a hash such as the output of `mkpasswd -m yescrypt` or `openssl passwd -6`, never a plain password");
                }
            }
            let shell = u.shell.unwrap_or_else(|| "/bin/bash".into());
            if !shell.starts_with('/') {
                self.bad(
                    format!("{f}.shell"),
                    format!("shell \"{shell}\" must be an absolute path such as /bin/bash"),
                );
            }
            out.push(User {
                name: u.name,
                groups: u.groups,
                ssh_authorized_keys: u.ssh_authorized_keys,
                password_hash: u.password_hash,
                shell,
            });
        }
        out
    }

    fn check_firstboot(&mut self, f: super::raw::RawFirstboot) -> super::Firstboot {
        use super::Platform as P;
        let platform = f.platform.unwrap_or_default();
        if f.aws_imdsv1.is_some() && platform != P::Aws {
            self.bad(
                "firstboot.aws_imdsv1",
                "only the aws platform has IMDSv1; remove it or set platform = \"aws\"",
            );
        }
        for (k, v) in [
            ("config_label", &f.config_label),
            ("config_path", &f.config_path),
        ] {
            let Some(v) = v else { continue };
            if platform != P::File {
                self.bad(format!("firstboot.{k}"), "only the file platform reads a config file; remove it or set platform = \"file\"");
            } else if v.is_empty() || v.chars().any(|c| c.is_whitespace()) {
                self.bad(
                    format!("firstboot.{k}"),
                    "must be non-empty and without spaces (it becomes a kernel argument)",
                );
            } else if k == "config_path" && !v.starts_with('/') {
                self.bad(
                    format!("firstboot.{k}"),
                    format!("\"{v}\" is not an absolute path"),
                );
            }
        }
        super::Firstboot {
            platform,
            aws_imdsv1: f.aws_imdsv1.unwrap_or(false),
            config_label: f.config_label,
            config_path: f.config_path,
        }
    }

    fn check_uploads(
        &mut self,
        upload: Vec<super::raw::RawUpload>,
        outputs: &[Output],
        stem: &str,
        base: Option<&Base>,
    ) -> Vec<super::Upload> {
        use super::{Format as F, UploadTarget as T};
        let mut out: Vec<super::Upload> = Vec::new();
        for (i, u) in upload.into_iter().enumerate() {
            let f = |k: &str| format!("upload[{i}].{k}");
            let (mine, theirs) = match u.target {
                T::Aws => ("aws", "openstack"),
                T::Openstack => ("openstack", "aws"),
            };
            let aws_only = [
                ("region", u.region.is_some()),
                ("profile", u.profile.is_some()),
                ("endpoint_url", u.endpoint_url.is_some()),
                ("boot_mode", u.boot_mode.is_some()),
                ("copy_to_regions", u.copy_to_regions.is_some()),
                ("launch_permissions", u.launch_permissions.is_some()),
                ("tags", u.tags.is_some()),
            ];
            let openstack_only = [
                ("cloud", u.cloud.is_some()),
                ("firmware", u.firmware.is_some()),
                ("os_distro", u.os_distro.is_some()),
                ("os_version", u.os_version.is_some()),
            ];
            let foreign = if u.target == T::Aws {
                &openstack_only[..]
            } else {
                &aws_only[..]
            };
            for (k, _) in foreign.iter().filter(|(_, set)| *set) {
                self.bad(
                    f(k),
                    format!("{k} is a setting of target = \"{theirs}\"; this entry uploads to {mine}: remove it"),
                );
            }
            let name = u.name.clone().unwrap_or_else(|| stem.to_string());
            let format = u.format.unwrap_or(F::Raw);
            match (u.target, format) {
                (_, F::Raw) => {}
                (T::Aws, _) => self.bad(
                    f("format"),
                    "AWS snapshots are written from the raw image: remove format (or set \"raw\")",
                ),
                (T::Openstack, F::Qcow2) => {
                    if !outputs.iter().any(|o| o.format == F::Qcow2) {
                        self.bad(f("format"), "no [[output]] writes a qcow2 image: add [[output]] format = \"qcow2\", or upload the raw image");
                    }
                }
                (T::Openstack, _) => self.bad(
                    f("format"),
                    "Glance gets the raw image or the qcow2 output: use \"raw\" or \"qcow2\"",
                ),
            }
            if u.target == T::Aws && !is_ami_name(&name) {
                // The default name comes from the image version, which may
                // hold characters AMI names do not allow.
                let (field, whose) = match u.name {
                    Some(_) => ("name", ""),
                    None => (
                        "target",
                        " (the default name, image.name-image.version): set name = to one that is",
                    ),
                };
                self.bad(
                    f(field),
                    format!("\"{name}\" is not a valid AMI name{whose}: 3 to 128 letters, digits and ( ) [ ] . / - ' @ _ or spaces"),
                );
            }
            if name.is_empty() || name.len() > 255 {
                self.bad(f("name"), "an image name needs 1 to 255 characters");
            }
            if let Some(r) = &u.region {
                if !is_aws_region(r) {
                    self.bad(
                        f("region"),
                        format!("\"{r}\" is not an AWS region name such as \"eu-central-1\""),
                    );
                }
            }
            let copies = u.copy_to_regions.unwrap_or_default();
            for (j, r) in copies.iter().enumerate() {
                if !is_aws_region(r) {
                    self.bad(
                        format!("upload[{i}].copy_to_regions[{j}]"),
                        format!("\"{r}\" is not an AWS region name such as \"us-west-2\""),
                    );
                } else if copies[..j].contains(r) || u.region.as_ref() == Some(r) {
                    self.bad(
                        format!("upload[{i}].copy_to_regions[{j}]"),
                        format!("{r} is listed twice (or is the upload's own region): remove it"),
                    );
                }
            }
            let perms = u.launch_permissions.unwrap_or_default();
            for (j, a) in perms.iter().enumerate() {
                if a != "all" && !(a.len() == 12 && a.chars().all(|c| c.is_ascii_digit())) {
                    self.bad(
                        format!("upload[{i}].launch_permissions[{j}]"),
                        format!(
                            "\"{a}\" is neither a 12-digit AWS account id nor \"all\" (public)"
                        ),
                    );
                }
            }
            let tags = u.tags.unwrap_or_default();
            for (k, v) in &tags {
                if k.starts_with("aws:") || k == crate::upload::aws::SHA_TAG {
                    self.bad(
                        format!("upload[{i}].tags.{k}"),
                        format!(
                            "{k} is reserved (aws: by AWS, {} by atomicbuild)",
                            crate::upload::aws::SHA_TAG
                        ),
                    );
                } else if k.is_empty() || k.len() > 128 || v.len() > 256 {
                    self.bad(
                        format!("upload[{i}].tags.{k}"),
                        "tag keys have 1 to 128 characters, values at most 256",
                    );
                }
            }
            if let Some(e) = &u.endpoint_url {
                if !e.starts_with("http://") && !e.starts_with("https://") || !is_url(e) {
                    self.bad(f("endpoint_url"), format!("\"{e}\" is not an http(s) URL"));
                }
            }
            for (k, v) in [("cloud", &u.cloud), ("profile", &u.profile)] {
                if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
                    self.bad(f(k), format!("{k} is empty: name one or remove the key"));
                }
            }
            // The same name in the same place (another profile or endpoint
            // may be another account).
            let place = |o: &super::Upload| {
                (
                    o.target,
                    o.region.clone(),
                    o.cloud.clone(),
                    o.profile.clone(),
                    o.endpoint_url.clone(),
                    o.name.clone(),
                )
            };
            let key = (
                u.target,
                u.region.clone(),
                u.cloud.clone(),
                u.profile.clone(),
                u.endpoint_url.clone(),
                name.clone(),
            );
            if let Some(j) = out.iter().position(|o| place(o) == key) {
                self.bad(
                    f("name"),
                    format!("upload[{j}] already uploads {name} to the same place; remove one or rename"),
                );
            }
            let (distro, release) = match base.map(|b| b.distro) {
                Some(Distro::Fedora) => ("fedora", base.map(|b| b.release.clone())),
                _ => (
                    "debian",
                    base.map(|b| {
                        debian_version(&b.release)
                            .map(String::from)
                            .unwrap_or_else(|| b.release.clone())
                    }),
                ),
            };
            out.push(super::Upload {
                target: u.target,
                name,
                format,
                region: u.region,
                profile: u.profile,
                endpoint_url: u.endpoint_url,
                boot_mode: u
                    .boot_mode
                    .unwrap_or(crate::upload::aws::BootMode::UefiPreferred),
                copy_to_regions: copies,
                launch_permissions: perms,
                tags,
                cloud: u.cloud,
                firmware: u.firmware.unwrap_or(crate::cli::Firmware::Uefi),
                os_distro: u.os_distro.unwrap_or_else(|| distro.to_string()),
                os_version: u.os_version.or(release).unwrap_or_default(),
            });
        }
        out
    }

    fn check_outputs(&mut self, output: &[super::raw::RawOutput]) -> Vec<Output> {
        use super::{Compression as C, Format as F};
        let mut outputs: Vec<Output> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (i, o) in output.iter().enumerate() {
            let f = |k: &str| format!("output[{i}].{k}");
            let compression = o.compression.unwrap_or(C::None);
            match (o.format, compression) {
                (F::Qcow2, C::Xz) => self.bad(f("compression"), "qcow2 compresses its clusters itself: use \"zstd\" (smaller, QEMU >= 5.1) or \"deflate\" (every reader)"),
                (F::Ova, c) if c != C::None => self.bad(f("compression"), "an OVA is read as it is by VirtualBox and VMware (its disk is already compressed); remove compression"),
                (F::Raw, c) if c != C::None => self.bad(f("compression"), "the raw image is kept uncompressed (it is what the other formats are made from); add another output, e.g. format = \"vhd\" with compression = \"xz\""),
                (ff, C::Deflate) if ff != F::Qcow2 => self.bad(f("compression"), "\"deflate\" is for qcow2 clusters; use \"xz\" or \"zstd\" for other formats"),
                _ => {}
            }
            let level = match (o.level, compression) {
                (None, _) => None,
                (Some(_), C::None) => {
                    self.bad(
                        f("level"),
                        "a level needs a compression; set compression or remove level",
                    );
                    None
                }
                (Some(l), c) => {
                    let (lo, hi) = match c {
                        C::Xz => (0, 9),
                        C::Deflate => (1, 9),
                        _ => (1, 19),
                    };
                    if l < lo || l > hi {
                        self.bad(
                            f("level"),
                            format!(
                                "level {l} is out of range for {}: use {lo} to {hi}",
                                format!("{c:?}").to_lowercase()
                            ),
                        );
                    }
                    Some(l.clamp(0, 22) as u32)
                }
            };
            if o.format != F::Ova && (o.cpus.is_some() || o.memory.is_some()) {
                let k = if o.cpus.is_some() { "cpus" } else { "memory" };
                self.bad(f(k), "cpus and memory describe the virtual machine of an OVA; they only apply to format = \"ova\"");
            }
            let cpus = o.cpus.unwrap_or(2);
            if !(1..=64).contains(&cpus) {
                self.bad(f("cpus"), format!("{cpus} CPUs: use 1 to 64"));
            }
            let memory_mib = o.memory.map_or(2048, |m| m.0 >> 20);
            if o.memory
                .is_some_and(|m| m.0 % (1 << 20) != 0 || m.0 < 256 << 20)
            {
                self.bad(
                    f("memory"),
                    "memory must be a whole number of MiB, at least \"256MiB\" (e.g. \"2GiB\")",
                );
            }
            let out = Output {
                format: o.format,
                compression,
                level,
                cpus: cpus.clamp(1, 64) as u32,
                memory_mib,
            };
            let name = out.file_name("NAME-VERSION");
            if let Some(j) = seen.iter().position(|x| *x == name) {
                self.bad(
                    f("format"),
                    format!("output[{j}] already writes {name}; remove one"),
                );
            }
            seen.push(name);
            if o.format != F::Raw {
                outputs.push(out);
            }
        }
        outputs
    }

    fn check_disk(&mut self, d: super::raw::RawDisk) -> Option<DiskSpec> {
        let size = d.size.map_or(4 << 30, |s| s.0);
        let esp_size = d.esp_size.map_or(64 * MIB, |s| s.0);
        let boot_size = d.boot_size.map_or(512 * MIB, |s| s.0);
        let mut ok = true;
        for (field, v, min) in [
            (
                "disk.size",
                size,
                MIN_ROOT + LAYOUT_OVERHEAD + 32 * MIB + 128 * MIB,
            ),
            ("disk.esp_size", esp_size, 32 * MIB),
            ("disk.boot_size", boot_size, 128 * MIB),
        ] {
            if v % MIB != 0 {
                self.bad(field, format!("{v} bytes is not a whole number of MiB; partitions are MiB-aligned (write e.g. \"{}MiB\")", v.div_ceil(MIB)));
                ok = false;
            } else if v < min {
                self.bad(
                    field,
                    format!(
                        "{} MiB is too small; the minimum is {} MiB",
                        v / MIB,
                        min / MIB
                    ),
                );
                ok = false;
            }
        }
        if ok {
            let need = esp_size + boot_size + LAYOUT_OVERHEAD + MIN_ROOT;
            if need > size {
                self.bad(
                    "disk.size",
                    format!(
                        "the partitions do not fit: ESP {} MiB + /boot {} MiB + {} MiB of GPT and BIOS boot + at least {} MiB of root = {} MiB, but disk.size is {} MiB; raise disk.size or shrink esp_size/boot_size",
                        esp_size / MIB, boot_size / MIB, LAYOUT_OVERHEAD / MIB, MIN_ROOT / MIB, need / MIB, size / MIB
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(DiskSpec {
            size,
            esp_size,
            boot_size,
        })
    }

    fn check_ostree(&mut self, o: super::raw::RawOstree) -> OstreeSpec {
        let ref_ok = !o.ref_.is_empty()
            && !o.ref_.starts_with('/')
            && !o.ref_.ends_with('/')
            && !o.ref_.contains("//")
            && o.ref_
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            && o.ref_.split('/').all(|s| !s.starts_with('.'));
        if !ref_ok {
            self.bad("ostree.ref", format!("\"{}\" is not a valid OSTree ref: use path segments of letters, digits, '.', '_' and '-' separated by '/', like \"debian/bookworm/x86_64/k8s-host\"", o.ref_));
        }
        if o.osname.is_empty()
            || !o
                .osname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            self.bad(
                "ostree.osname",
                format!(
                    "\"{}\" is not a valid OS name (letters, digits, '_' and '-')",
                    o.osname
                ),
            );
        }
        OstreeSpec {
            ref_: o.ref_,
            osname: o.osname,
        }
    }
}

/// Debian's release names → the version Glance's os_version expects.
fn debian_version(release: &str) -> Option<&'static str> {
    Some(match release {
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        _ => return None,
    })
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`.
fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// Characters AWS allows in AMI names (3 to 128 of them).
fn is_ami_name(s: &str) -> bool {
    (3..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c))
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f.is_ascii_digit())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn is_package_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_url(s: &str) -> bool {
    ["http://", "https://", "file://"]
        .iter()
        .any(|p| s.starts_with(p) && s.len() > p.len() && !s.contains(char::is_whitespace))
}

fn is_user_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f == '_')
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

/// Unit types systemd knows.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "path",
    "swap",
    "slice",
    "scope",
    "device",
];

fn is_unit_name(s: &str) -> bool {
    let Some((stem, ty)) = s.rsplit_once('.') else {
        return false;
    };
    UNIT_TYPES.contains(&ty)
        && !stem.is_empty()
        && s.len() <= 255
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c))
        && stem.matches('@').count() <= 1
}

/// Key types an OpenSSH authorized_keys line may carry.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Check one `type base64 [comment]` public key: known type, valid base64,
/// and the blob's embedded type string equal to the declared type.
pub fn check_ssh_key(line: &str) -> Result<(), String> {
    if line.contains('\n') {
        return Err("it spans several lines; give one key per list item".into());
    }
    let mut parts = line.split_whitespace();
    let ty = parts.next().ok_or("it is empty")?;
    if !SSH_KEY_TYPES.contains(&ty) {
        return Err(format!(
            "unknown key type \"{ty}\" (expected one of {})",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let b64 = parts.next().ok_or("the base64 key data is missing")?;
    let blob = base64_decode(b64).ok_or("the key data is not valid base64")?;
    if blob.len() < 4 {
        return Err("the key data is too short".into());
    }
    let n = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    let inner = blob.get(4..4 + n).ok_or("the key data is truncated")?;
    if inner != ty.as_bytes() {
        return Err(format!(
            "the key data says \"{}\" but the line says \"{ty}\"",
            String::from_utf8_lossy(inner)
        ));
    }
    if blob.len() < 4 + n + 16 {
        return Err("the key data is truncated".into());
    }
    Ok(())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpMAzgtQAhjeae+JWGlNyCENKbOoDyos0z/33rrqJbt test@atomicbuild";

    #[test]
    fn accepts_real_ed25519_key() {
        assert_eq!(check_ssh_key(KEY), Ok(()));
    }

    #[test]
    fn rejects_mismatched_or_garbled_keys() {
        assert!(check_ssh_key(&KEY.replace("ssh-ed25519 ", "ssh-rsa "))
            .unwrap_err()
            .contains("says"));
        assert!(check_ssh_key("ssh-ed25519 not*base64").is_err());
        assert!(check_ssh_key("ssh-ed25519").is_err());
        assert!(check_ssh_key("ssh-dss AAAA")
            .unwrap_err()
            .contains("unknown key type"));
    }

    #[test]
    fn unit_names_need_a_type() {
        assert!(is_unit_name("etcd.service"));
        assert!(is_unit_name("getty@ttyS0.service"));
        assert!(!is_unit_name("etcd"));
        assert!(!is_unit_name("etcd.servic"));
        assert!(!is_unit_name("bad name.service"));
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert!(base64_decode("Zm9").is_none());
    }
}
