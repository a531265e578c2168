//! Every output of a build in one pass (`write_outputs`): the same bytes
//! as each output written alone, whatever the thread count (xz's
//! multithreaded encoder included), CPU charged to the right output, and a
//! failing output stopping the pass without debris.

use std::fs;
use std::path::PathBuf;

use atomicbuild::formats::{
    compress_file, write_output, write_outputs, Compression, Format, Identity, OuterCompression,
    Output,
};

use super::{raw_image, sha256};

#[test]
fn multithreaded_xz_output_is_independent_of_the_thread_count() {
    // The whole test image at xz's default level: several 24 MiB blocks, so
    // the workers really split the input.
    let dir = tempfile::tempdir().unwrap();
    let digests: Vec<String> = [1, 2, 3]
        .iter()
        .map(|&threads| {
            let out = dir.path().join(format!("t{threads}.raw.xz"));
            compress_file(raw_image(), OuterCompression::Xz, None, threads, &out).unwrap();
            sha256(&out)
        })
        .collect();
    assert_eq!(digests[0], digests[1], "xz: 1 and 2 threads differ");
    assert_eq!(digests[0], digests[2], "xz: 1 and 3 threads differ");
}

/// The seven outputs of a nightly build.
fn nightly_outputs() -> Vec<Output> {
    let o = |format, compression| Output {
        format,
        compression,
        level: None,
        cpus: 2,
        memory_mib: 2048,
    };
    vec![
        o(Format::Qcow2, Compression::Zstd),
        o(Format::Vmdk, Compression::None),
        o(Format::VmdkSparse, Compression::None),
        o(Format::Vdi, Compression::Xz),
        o(Format::Vhd, Compression::None),
        o(Format::VhdDynamic, Compression::Zstd),
        o(Format::Ova, Compression::None),
    ]
}

fn identity(threads: usize) -> Identity {
    Identity {
        name: "host".into(),
        seed: Some([9; 32]),
        timestamp: 1_700_000_000,
        threads,
    }
}

#[test]
fn one_pass_writes_every_output_as_it_is_written_alone() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = nightly_outputs();
    let alone: Vec<String> = outputs
        .iter()
        .map(|o| {
            let sub = dir.path().join(format!("alone-{}", o.label()));
            fs::create_dir_all(&sub).unwrap();
            let dest = sub.join(o.file_name("host-1"));
            let t = write_output(raw_image(), o, &identity(2), &dest, &mut |_| {}).unwrap();
            assert!(t.wall.as_nanos() > 0, "{}: no wall time", o.label());
            sha256(&dest)
        })
        .collect();
    for threads in [1, 3] {
        let sub = dir.path().join(format!("pass-t{threads}"));
        fs::create_dir_all(&sub).unwrap();
        let jobs: Vec<(&Output, PathBuf)> = outputs
            .iter()
            .map(|o| (o, sub.join(o.file_name("host-1"))))
            .collect();
        let mut lines = Vec::new();
        let times = write_outputs(raw_image(), &jobs, &identity(threads), &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        for (((o, dest), want), t) in jobs.iter().zip(&alone).zip(&times) {
            assert_eq!(
                &sha256(dest),
                want,
                "{} from the pass ({threads} threads) differs from the file written alone",
                o.label()
            );
            // Every output compresses or copies data: some CPU is charged.
            assert!(t.cpu.as_micros() > 0, "{}: no CPU charged", o.label());
        }
        let names: Vec<String> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            outputs.len(),
            "leftovers in {sub:?}: {names:?}"
        );
    }
    // The xz output's CPU (liblzma's own threads) is charged to it: xz at
    // level 6 costs more than copying the fixed VHD.
    let sub = dir.path().join("pass-t1");
    let jobs: Vec<(&Output, PathBuf)> = outputs
        .iter()
        .map(|o| (o, sub.join(format!("again-{}", o.file_name("host-1")))))
        .collect();
    let times = write_outputs(raw_image(), &jobs, &identity(2), &mut |_| {}).unwrap();
    assert!(
        times[3].cpu > times[4].cpu,
        "vdi+xz {:?} vs vhd {:?}",
        times[3].cpu,
        times[4].cpu
    );
    // The OVA takes the VMDK's compressed grains instead of deflating the
    // image again.
    assert!(
        times[6].cpu * 2 < times[1].cpu,
        "ova {:?} vs vmdk {:?}",
        times[6].cpu,
        times[1].cpu
    );
}

#[test]
fn one_pass_failure_leaves_no_output() {
    // A destination under a plain file fails its writer; the pass stops
    // the others and leaves no temporary files behind.
    let dir = tempfile::tempdir().unwrap();
    let outputs = nightly_outputs();
    let mut jobs: Vec<(&Output, PathBuf)> = outputs
        .iter()
        .map(|o| (o, dir.path().join(o.file_name("host-1"))))
        .collect();
    fs::write(dir.path().join("file"), b"").unwrap();
    jobs[3].1 = dir.path().join("file").join("x.vdi.xz");
    let err = write_outputs(raw_image(), &jobs, &identity(2), &mut |_| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("vdi+xz"), "{msg}");
    assert!(!msg.contains("another output failed"), "{msg}");
    for e in fs::read_dir(dir.path()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with(".atomicbuild-tmp"), "debris: {n}");
    }
}
