//! The manifest's `[[output]]` entries: as written (serde, unknown keys
//! refused), checked against the format table, and as the build uses them.

use serde::Deserialize;

use super::{Compression, Format};
use crate::model::{Scope, Size};

/// One `[[output]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // fields: README's manifest reference
pub struct RawOutput {
    pub format: Format,
    pub compression: Option<Compression>,
    pub level: Option<i64>,
    pub cpus: Option<i64>,
    pub memory: Option<Size>,
}

/// One image file to write from the raw image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Output {
    /// The format.
    pub format: Format,
    /// Its compression.
    pub compression: Compression,
    /// Compression level (`None`: the compressor's default).
    pub level: Option<u32>,
    /// OVA: virtual CPUs.
    pub cpus: u32,
    /// OVA: memory in MiB.
    pub memory_mib: u64,
}

impl Output {
    /// The file name this output gets for an image `stem`.
    pub fn file_name(&self, stem: &str) -> String {
        self.format.file_name(self.compression, stem)
    }

    /// A short name such as `qcow2+zstd`.
    pub fn label(&self) -> String {
        self.format.label(self.compression)
    }
}

/// Check every `[[output]]` (problems go to `p`, the `output` list scope);
/// the outputs besides the raw image, which is always written.
pub fn check(output: &[RawOutput], p: &mut Scope) -> Vec<Output> {
    let mut outputs: Vec<Output> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (i, o) in output.iter().enumerate() {
        let mut p = p.scope(&format!("[{i}]"));
        let out = check_one(o, &mut p);
        let name = out.file_name("NAME-VERSION");
        if let Some(j) = seen.iter().position(|x| *x == name) {
            p.bad(
                "format",
                format!("output[{j}] already writes {name}; remove one"),
            );
        }
        seen.push(name);
        if o.format != Format::Raw {
            outputs.push(out);
        }
    }
    outputs
}

fn check_one(o: &RawOutput, p: &mut Scope) -> Output {
    let compression = o.compression.unwrap_or(Compression::None);
    if let Err(why) = o.format.check_compression(compression) {
        p.bad("compression", why);
    }
    let level = match (o.level, compression) {
        (None, _) => None,
        (Some(_), Compression::None) => {
            p.bad(
                "level",
                "a level needs a compression; set compression or remove level",
            );
            None
        }
        (Some(l), c) => {
            let (lo, hi) = c.levels();
            if l < lo || l > hi {
                p.bad(
                    "level",
                    format!(
                        "level {l} is out of range for {}: use {lo} to {hi}",
                        c.name()
                    ),
                );
            }
            Some(l.clamp(0, 22) as u32)
        }
    };
    if o.format != Format::Ova && (o.cpus.is_some() || o.memory.is_some()) {
        let k = if o.cpus.is_some() { "cpus" } else { "memory" };
        p.bad(k, "cpus and memory describe the virtual machine of an OVA; they only apply to format = \"ova\"");
    }
    let cpus = o.cpus.unwrap_or(2);
    if !(1..=64).contains(&cpus) {
        p.bad("cpus", format!("{cpus} CPUs: use 1 to 64"));
    }
    if o.memory
        .is_some_and(|m| m.0 % (1 << 20) != 0 || m.0 < 256 << 20)
    {
        p.bad(
            "memory",
            "memory must be a whole number of MiB, at least \"256MiB\" (e.g. \"2GiB\")",
        );
    }
    Output {
        format: o.format,
        compression,
        level,
        cpus: cpus.clamp(1, 64) as u32,
        memory_mib: o.memory.map_or(2048, |m| m.0 >> 20),
    }
}
