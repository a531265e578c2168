//! Semantic checks of a [`RawManifest`]: every section is checked by the
//! code that owns it (the base by `distro`, the disk by `disk`, outputs by
//! `formats`, uploads by `upload`, the rest in [`super::sections`]), each
//! reporting into its own scope of one [`Problems`] collector, so that all
//! problems are reported at once with their field paths.

use std::path::Path;

use super::raw::RawManifest;
use super::{sections, Manifest};
use crate::model::Problems;
use crate::{budgets, disk, distro, formats, updates, upload};

/// Check everything: the manifest, or every problem found.
pub fn check(
    raw: RawManifest,
    file: &Path,
    dir: &Path,
    sha256: String,
) -> Result<Manifest, Problems> {
    let mut p = Problems::new();
    let r = raw;
    sections::image(&r.image, &mut p.scope("image"));
    let base = distro::spec::check(r.base, dir, &mut p.scope("base"));
    sections::packages(&r.packages, &mut p.scope("packages.include"));
    let lean = sections::lean(&r.packages, &r.kernel, &mut p.scope(""));
    if let Some(b) = &base {
        distro::spec::check_packages(b, &r.packages.include, &mut p.scope("packages.include"));
    }
    let (hostname, overlays) =
        sections::system(&r.system, &r.image.name, dir, &mut p.scope("system"));
    let units = sections::units(r.units, &mut p.scope("units"));
    let users = sections::users(r.users, &mut p.scope("users"));
    let disk = disk::spec::check(r.disk, &mut p.scope("disk"));
    let ostree = sections::ostree(r.ostree, &mut p.scope("ostree"));
    let outputs = formats::spec::check(&r.output, &mut p.scope("output"));
    let firstboot = sections::firstboot(r.firstboot, &mut p.scope("firstboot"));
    let stem = format!("{}-{}", r.image.name, r.image.version);
    let cx = upload::spec::Context {
        outputs: &outputs,
        stem: &stem,
        os_distro: base.as_ref().map_or("debian", |b| b.distro.name()),
        os_version: base.as_ref().map(|b| b.os_version()),
    };
    let uploads = upload::spec::check(r.upload, &cx, &mut p.scope("upload"));
    let updates = r
        .updates
        .map(|u| updates::check(u, &ostree.ref_, dir, &mut p.scope("updates")));
    let signing = r
        .signing
        .and_then(|s| crate::signing::check(s, dir, &mut p.scope("signing")));
    let labels: Vec<String> = outputs.iter().map(|o| o.label()).collect();
    let budgets = budgets::check(r.budgets, &labels, &mut p.scope("budgets"));
    let lint_waivers = crate::lint::check(r.lint, &mut p.scope("lint"));
    let container_images =
        crate::containers::check(r.container_images, dir, &mut p.scope("container_images"));
    let registries =
        crate::containers::registries::check(r.registries, dir, &mut p.scope("registries"));
    match (p.is_empty(), base, disk) {
        (true, Some(base), Some(disk)) => Ok(Manifest {
            path: file.to_owned(),
            sha256,
            name: r.image.name,
            version: r.image.version,
            base,
            packages: r.packages.include,
            lean,
            hostname,
            overlays,
            kernel_args: r.system.kernel_args,
            units,
            users,
            disk,
            ostree,
            outputs,
            firstboot,
            uploads,
            updates,
            signing,
            budgets,
            lint_waivers,
            container_images,
            registries,
        }),
        _ => Err(p),
    }
}
