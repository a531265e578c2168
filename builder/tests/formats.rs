//! Integration tests of the native disk-format writers (`atomicbuild::formats`),
//! judged by an independent reader: `qemu-img` (qemu-utils) must check each
//! image clean where the format supports checks (qcow2, vmdk, vdi; not vpc
//! or raw), read it back identical to the raw input, and reject corrupted
//! headers. The OVA is unpacked with the `tar` crate and its OVF parsed with
//! `roxmltree`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use atomicbuild::formats::{
    compress_file, write_image, write_image_with_progress, DiskFormat, OuterCompression,
    OvaOptions, Qcow2Compression, WriteOptions,
};
use sha2::{Digest, Sha256};

mod onepass;

const MIB: u64 = 1 << 20;
/// 150 MiB + 37 sectors: not a MiB multiple, so fixed VHD rounds it up.
const RAW_SIZE: u64 = 150 * MIB + 37 * 512;

/// Deterministic bytes: xorshift64*, `mask` limits entropy (0xff: random,
/// 0x0f: compressible).
fn prng(seed: u64, len: usize, mask: u8) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8 & mask
        })
        .collect()
}

/// The shared test image, written once: random data, compressible text, a
/// written all-zero region, data straddling grain-table (32 MiB) and block
/// boundaries, an unaligned fragment, a half-zero cluster, holes, and data
/// in the very last sector.
fn raw_image() -> &'static Path {
    static RAW: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RAW.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let f = File::create(&path).unwrap();
        f.set_len(RAW_SIZE).unwrap();
        f.write_all_at(&prng(1, MIB as usize, 0xff), 0).unwrap();
        let text: Vec<u8> = (0..120_000)
            .flat_map(|i| {
                format!("line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes()
            })
            .take(4 * MIB as usize)
            .collect();
        f.write_all_at(&text, 10 * MIB).unwrap();
        f.write_all_at(&vec![0u8; 3 * MIB as usize], 20 * MIB)
            .unwrap();
        f.write_all_at(&prng(2, 200 << 10, 0x0f), 32 * MIB - (100 << 10))
            .unwrap();
        f.write_all_at(&prng(3, 1000, 0xff), 33 * MIB + 12345)
            .unwrap();
        let mut half = prng(4, 64 << 10, 0xff);
        half[32 << 10..].fill(0);
        f.write_all_at(&half, 64 * MIB + 7 * (64 << 10)).unwrap();
        f.write_all_at(&prng(5, 512, 0xff), RAW_SIZE - 512).unwrap();
        f.sync_all().unwrap();
        (dir, path)
    })
    .1
}

fn opts(threads: usize) -> WriteOptions {
    WriteOptions {
        threads,
        seed: Some([7; 32]),
        timestamp: 1_700_000_000,
        ..WriteOptions::default()
    }
}

fn qemu_img(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img not found: install qemu-utils");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256(p: &Path) -> String {
    let mut h = Sha256::new();
    std::io::copy(&mut File::open(p).unwrap(), &mut h).unwrap();
    hex::encode(h.finalize())
}

fn info(fmt: &str, p: &Path) -> serde_json::Value {
    let (ok, out) = qemu_img(&["info", "--output=json", "-f", fmt, s(p)]);
    assert!(ok, "qemu-img info {}: {out}", p.display());
    serde_json::from_str(&out).unwrap()
}

/// Every writer, with the qemu-img driver reading it and whether that
/// driver implements `qemu-img check`.
struct Case {
    name: &'static str,
    format: DiskFormat,
    compression: Qcow2Compression,
    driver: &'static str,
    checkable: bool,
}

const CASES: &[Case] = &[
    case("raw", DiskFormat::Raw, Qcow2Compression::None, "raw", false),
    case(
        "qcow2",
        DiskFormat::Qcow2,
        Qcow2Compression::None,
        "qcow2",
        true,
    ),
    case(
        "qcow2-deflate",
        DiskFormat::Qcow2,
        Qcow2Compression::Deflate,
        "qcow2",
        true,
    ),
    case(
        "qcow2-zstd",
        DiskFormat::Qcow2,
        Qcow2Compression::Zstd,
        "qcow2",
        true,
    ),
    case(
        "stream.vmdk",
        DiskFormat::VmdkStream,
        Qcow2Compression::None,
        "vmdk",
        true,
    ),
    case(
        "sparse.vmdk",
        DiskFormat::VmdkSparse,
        Qcow2Compression::None,
        "vmdk",
        true,
    ),
    case("vdi", DiskFormat::Vdi, Qcow2Compression::None, "vdi", true),
    case(
        "fixed.vhd",
        DiskFormat::VhdFixed,
        Qcow2Compression::None,
        "vpc",
        false,
    ),
    case(
        "dynamic.vhd",
        DiskFormat::VhdDynamic,
        Qcow2Compression::None,
        "vpc",
        false,
    ),
];

const fn case(
    name: &'static str,
    format: DiskFormat,
    compression: Qcow2Compression,
    driver: &'static str,
    checkable: bool,
) -> Case {
    Case {
        name,
        format,
        compression,
        driver,
        checkable,
    }
}

/// Writes `c` as `dir/t<threads>/<name>` (the same file name for every
/// thread count: VMDK descriptors name their own file).
fn write_case(c: &Case, dir: &Path, threads: usize) -> PathBuf {
    let sub = dir.join(format!("t{threads}"));
    fs::create_dir_all(&sub).unwrap();
    let dest = sub.join(c.name);
    let o = WriteOptions {
        qcow2_compression: c.compression,
        ..opts(threads)
    };
    let mut last = (0, 0);
    write_image_with_progress(raw_image(), c.format, &o, &dest, &mut |done, total| {
        assert!(
            done >= last.0 && done <= total,
            "{}: progress {done}/{total}",
            c.name
        );
        last = (done, total);
    })
    .unwrap();
    assert_eq!(
        last,
        (RAW_SIZE, RAW_SIZE),
        "{}: progress did not finish",
        c.name
    );
    dest
}

#[test]
fn every_format_checks_clean_and_reads_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    for c in CASES {
        let out = write_case(c, dir.path(), 2);
        let (ok, text) = qemu_img(&["check", "-f", c.driver, s(&out)]);
        if c.checkable {
            assert!(ok, "{}: qemu-img check failed:\n{text}", c.name);
            assert!(text.contains("No errors were found"), "{}: {text}", c.name);
        } else {
            assert!(
                text.contains("does not support checks"),
                "{}: {text}",
                c.name
            );
        }
        let (ok, text) = qemu_img(&[
            "compare",
            "-f",
            "raw",
            s(raw_image()),
            "-F",
            c.driver,
            s(&out),
        ]);
        assert!(
            ok && text.contains("Images are identical"),
            "{}: {text}",
            c.name
        );

        let i = info(c.driver, &out);
        let want = if c.format == DiskFormat::VhdFixed {
            RAW_SIZE.next_multiple_of(MIB)
        } else {
            RAW_SIZE
        };
        assert_eq!(i["virtual-size"], want, "{}", c.name);
    }
    let names: Vec<_> = fs::read_dir(dir.path().join("t2"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".atomicbuild-tmp.")),
        "temporary files left behind: {names:?}"
    );
}

#[test]
fn compressed_formats_really_compress() {
    let dir = tempfile::tempdir().unwrap();
    let size = |c: &Case| fs::metadata(write_case(c, dir.path(), 2)).unwrap().len();
    let plain = size(&CASES[1]);
    for c in &CASES[2..5] {
        let (ok, text) = qemu_img(&[
            "check",
            "--output=json",
            "-f",
            c.driver,
            s(&write_case(c, dir.path(), 2)),
        ]);
        assert!(ok, "{text}");
        if c.format == DiskFormat::Qcow2 {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(
                v["compressed-clusters"].as_u64().unwrap() > 0,
                "{}: {text}",
                c.name
            );
        }
        assert!(
            size(c) * 2 < plain,
            "{} is not much smaller than plain qcow2",
            c.name
        );
    }
    let zstd = info("qcow2", &write_case(&CASES[3], dir.path(), 2));
    assert_eq!(zstd["format-specific"]["data"]["compression-type"], "zstd");
    let deflate = info("qcow2", &write_case(&CASES[2], dir.path(), 2));
    assert_eq!(
        deflate["format-specific"]["data"]["compression-type"],
        "zlib"
    );
}

#[test]
fn output_is_reproducible_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    for c in CASES {
        let a = sha256(&write_case(c, dir.path(), 1));
        let b = sha256(&write_case(c, dir.path(), 3));
        assert_eq!(a, b, "{} differs between 1 and 3 threads", c.name);
    }
    // A different seed changes derived identifiers (and so the bytes).
    let other = dir.path().join("other").join("vdi");
    fs::create_dir_all(other.parent().unwrap()).unwrap();
    let o = WriteOptions {
        seed: Some([8; 32]),
        ..opts(1)
    };
    write_image(raw_image(), DiskFormat::Vdi, &o, &other).unwrap();
    assert_ne!(
        sha256(&other),
        sha256(&write_case(&CASES[6], dir.path(), 1))
    );
}

/// Overwrites `bytes` at `at` (negative: from the end) of a copy of `src`.
fn corrupt(src: &Path, at: i64, bytes: &[u8]) -> PathBuf {
    let dst = src.with_extension("corrupt");
    fs::copy(src, &dst).unwrap();
    let f = File::options().write(true).open(&dst).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let off = if at < 0 { len + at } else { at };
    f.write_all_at(bytes, off as u64).unwrap();
    dst
}

#[test]
fn corrupted_headers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let by_name: HashMap<_, _> = CASES.iter().map(|c| (c.name, c)).collect();
    // (case, offset, bytes, what is broken)
    let damage: &[(&str, i64, &[u8], &str)] = &[
        ("qcow2", 0, b"QFIX", "magic"),
        (
            "qcow2-zstd",
            48 + 7,
            &[0x01],
            "unaligned refcount table offset",
        ),
        (
            "qcow2-deflate",
            40 + 7,
            &[0x08],
            "unaligned L1 table offset",
        ),
        ("stream.vmdk", -1024, b"XXXX", "footer magic"),
        ("stream.vmdk", -1024 + 4, &[9], "footer header version"),
        ("sparse.vmdk", 0, b"XXXX", "magic"),
        ("vdi", 0x40, &[0; 4], "signature"),
        ("vdi", 0x178, &[0, 0, 2, 0], "block size"),
        ("fixed.vhd", -512, b"XXXXXXXX", "footer cookie"),
        ("dynamic.vhd", 512, b"XXXXXXXX", "dynamic header cookie"),
    ];
    for &(name, at, bytes, what) in damage {
        let c = by_name[name];
        let good = write_case(c, dir.path(), 1);
        let bad = corrupt(&good, at, bytes);
        let (info_ok, info_text) = qemu_img(&["info", "-f", c.driver, s(&bad)]);
        let (check_ok, check_text) = qemu_img(&["check", "-f", c.driver, s(&bad)]);
        assert!(
            !info_ok && !check_ok,
            "{name} with a broken {what} was accepted:\n{info_text}\n{check_text}"
        );
    }
}

#[test]
fn bad_input_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.raw");
    fs::write(&odd, vec![1u8; 1000]).unwrap();
    let dest = dir.path().join("out.qcow2");
    let err = write_image(&odd, DiskFormat::Qcow2, &opts(1), &dest).unwrap_err();
    assert!(format!("{err:#}").contains("multiple of 512"), "{err:#}");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input remains"
    );
}

#[test]
fn outer_compression_round_trips_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_case(&CASES[1], dir.path(), 2);
    let original = fs::read(&src).unwrap();
    for (kind, ext) in [
        (OuterCompression::Xz, "xz"),
        (OuterCompression::Zstd, "zst"),
    ] {
        let a = dir.path().join(format!("a.{ext}"));
        let b = dir.path().join(format!("b.{ext}"));
        compress_file(&src, kind, Some(1), 1, &a).unwrap();
        compress_file(&src, kind, Some(1), 3, &b).unwrap();
        assert_eq!(sha256(&a), sha256(&b), "{ext} depends on the thread count");
        let mut back = Vec::new();
        match kind {
            OuterCompression::Xz => {
                xz2::read::XzDecoder::new(File::open(&a).unwrap())
                    .read_to_end(&mut back)
                    .unwrap();
            }
            _ => back = zstd::decode_all(File::open(&a).unwrap()).unwrap(),
        }
        assert!(back == original, "{ext} does not round-trip");
        assert!(fs::metadata(&a).unwrap().len() < original.len() as u64 / 2);
    }
}

/// Members of a tar archive in order: (name, bytes).
fn untar(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(File::open(p).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            assert_eq!(e.header().mode().unwrap(), 0o644);
            assert_eq!(e.header().uid().unwrap(), 0);
            assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

const OVF_NS: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const RASD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";

fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> roxmltree::Node<'a, 'a> {
    n.children()
        .find(|c| c.has_tag_name((OVF_NS, name)))
        .unwrap_or_else(|| panic!("no <{name}> under <{}>", n.tag_name().name()))
}

fn rasd(item: roxmltree::Node, name: &str) -> Option<String> {
    item.children()
        .find(|c| c.has_tag_name((RASD_NS, name)))
        .and_then(|c| c.text())
        .map(str::to_owned)
}

fn check_ova(uefi: bool) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("appliance.ova");
    let o = WriteOptions {
        ova: OvaOptions {
            name: "test vm".into(),
            cpus: 3,
            memory_mib: 3072,
            uefi,
        },
        ..opts(2)
    };
    write_image(raw_image(), DiskFormat::Ova, &o, &dest).unwrap();
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "scratch files left"
    );

    let members = untar(&dest);
    let names: Vec<_> = members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(names, ["test_vm.ovf", "test_vm-disk1.vmdk", "test_vm.mf"]);
    let (ovf, vmdk, mf) = (&members[0].1, &members[1].1, &members[2].1);

    let text = std::str::from_utf8(ovf).unwrap();
    let doc = roxmltree::Document::parse(text).unwrap();
    let env = doc.root_element();
    assert!(env.has_tag_name((OVF_NS, "Envelope")));
    let attr = |n: roxmltree::Node, a: &str| n.attribute((OVF_NS, a)).unwrap().to_owned();
    let file = child(child(env, "References"), "File");
    assert_eq!(attr(file, "href"), "test_vm-disk1.vmdk");
    assert_eq!(attr(file, "size"), vmdk.len().to_string());
    let disk = child(child(env, "DiskSection"), "Disk");
    assert_eq!(attr(disk, "fileRef"), attr(file, "id"));
    assert_eq!(attr(disk, "capacity"), RAW_SIZE.to_string());
    assert!(attr(disk, "format").ends_with("vmdk.html#streamOptimized"));
    child(child(env, "NetworkSection"), "Network");
    let vs = child(env, "VirtualSystem");
    child(vs, "OperatingSystemSection");
    let hw = child(vs, "VirtualHardwareSection");
    let items: Vec<_> = hw
        .children()
        .filter(|c| c.has_tag_name((OVF_NS, "Item")))
        .collect();
    let of_type = |t: &str| {
        items
            .iter()
            .find(|i| rasd(**i, "ResourceType").as_deref() == Some(t))
            .copied()
            .unwrap_or_else(|| panic!("no item of ResourceType {t}"))
    };
    assert_eq!(rasd(of_type("3"), "VirtualQuantity").unwrap(), "3");
    assert_eq!(rasd(of_type("4"), "VirtualQuantity").unwrap(), "3072");
    let hd = of_type("17");
    assert_eq!(
        rasd(hd, "HostResource").unwrap(),
        format!("ovf:/disk/{}", attr(disk, "diskId"))
    );
    let controller = items
        .iter()
        .find(|i| rasd(**i, "InstanceID") == rasd(hd, "Parent"))
        .expect("disk parent is an item");
    assert_eq!(rasd(*controller, "ResourceType").unwrap(), "20");
    assert_eq!(rasd(of_type("10"), "ResourceSubType").unwrap(), "E1000");
    let efi = hw.children().any(|c| {
        c.tag_name().name() == "Config"
            && c.attribute(("http://www.vmware.com/schema/ovf", "key")) == Some("firmware")
            && c.attribute(("http://www.vmware.com/schema/ovf", "value")) == Some("efi")
    });
    assert_eq!(efi, uefi);

    let mf = std::str::from_utf8(mf).unwrap();
    let want = format!(
        "SHA256(test_vm.ovf)= {}\nSHA256(test_vm-disk1.vmdk)= {}\n",
        hex::encode(Sha256::digest(ovf)),
        hex::encode(Sha256::digest(vmdk))
    );
    assert_eq!(mf, want);

    let extracted = dir.path().join("extracted.vmdk");
    fs::write(&extracted, vmdk).unwrap();
    let (ok, text) = qemu_img(&["check", "-f", "vmdk", s(&extracted)]);
    assert!(ok, "{text}");
    let (ok, text) = qemu_img(&[
        "compare",
        "-f",
        "raw",
        s(raw_image()),
        "-F",
        "vmdk",
        s(&extracted),
    ]);
    assert!(ok && text.contains("Images are identical"), "{text}");

    let again = dir.path().join("again.ova");
    write_image(
        raw_image(),
        DiskFormat::Ova,
        &WriteOptions { threads: 1, ..o },
        &again,
    )
    .unwrap();
    assert_eq!(sha256(&dest), sha256(&again), "OVA not reproducible");
}

#[test]
fn ova_with_uefi_is_a_valid_appliance() {
    check_ova(true);
}

#[test]
fn ova_without_uefi_has_no_firmware_key() {
    check_ova(false);
}
