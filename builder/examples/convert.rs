//! Thin front end to `atomicbuild::formats` for benchmarks and manual checks
//! (to be replaced by an `atomicbuild convert` subcommand):
//!
//! `convert RAW FORMAT DEST [--compression none|deflate|zstd] [--level N]
//!  [--threads N] [--seed HEX64] [--outer xz|zstd [--outer-level N]]`
//!
//! FORMAT is one of raw, qcow2, vmdk, vmdk-sparse, vdi, vhd, vhd-dynamic, ova.
//! With `--outer`, DEST is written first and then compressed to
//! `DEST.xz` / `DEST.zst`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use atomicbuild::formats::{
    compress_file, write_image, DiskFormat, OuterCompression, Qcow2Compression, WriteOptions,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: convert RAW FORMAT DEST [options]");
    }
    let (raw, dest) = (PathBuf::from(&args[0]), PathBuf::from(&args[2]));
    let format = match args[1].as_str() {
        "raw" => DiskFormat::Raw,
        "qcow2" => DiskFormat::Qcow2,
        "vmdk" => DiskFormat::VmdkStream,
        "vmdk-sparse" => DiskFormat::VmdkSparse,
        "vdi" => DiskFormat::Vdi,
        "vhd" => DiskFormat::VhdFixed,
        "vhd-dynamic" => DiskFormat::VhdDynamic,
        "ova" => DiskFormat::Ova,
        f => bail!("unknown format {f}"),
    };
    let mut opts = WriteOptions::default();
    let (mut outer, mut outer_level) = (OuterCompression::None, None);
    let mut it = args[3..].iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--compression" => {
                opts.qcow2_compression = match value.as_str() {
                    "none" => Qcow2Compression::None,
                    "deflate" => Qcow2Compression::Deflate,
                    "zstd" => Qcow2Compression::Zstd,
                    v => bail!("unknown compression {v}"),
                }
            }
            "--level" => opts.level = Some(value.parse()?),
            "--threads" => opts.threads = value.parse()?,
            "--seed" => {
                let mut s = [0u8; 32];
                hex::decode_to_slice(value, &mut s).context("--seed takes 64 hex digits")?;
                opts.seed = Some(s);
            }
            "--outer" => {
                outer = match value.as_str() {
                    "xz" => OuterCompression::Xz,
                    "zstd" => OuterCompression::Zstd,
                    v => bail!("unknown outer compression {v}"),
                }
            }
            "--outer-level" => outer_level = Some(value.parse()?),
            f => bail!("unknown option {f}"),
        }
    }
    write_image(&raw, format, &opts, &dest)?;
    if outer == OuterCompression::None {
        return Ok(());
    }
    let mut packed = dest.clone().into_os_string();
    packed.push(outer.suffix());
    compress_file(
        &dest,
        outer,
        outer_level,
        opts.threads,
        &PathBuf::from(packed),
    )
}
