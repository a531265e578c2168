//! `ctr run --cni` on this machine with the container network atomicbuild
//! writes into every image that has the CNI plugins
//! (`atomicbuild::stage::node::cni_conflist`), through real parts: Debian's
//! containerd, runc and containernetworking-plugins, and a tiny image of
//! `busybox-static` made by the test. Everything runs in a network and
//! mount namespace the test creates (`unshare --net --mount`), with
//! `/etc` and `/var/lib` overlaid there, so this machine's network and
//! files are not touched: the container gets an address on `cni0` from
//! 10.88.0.0/16 (not host networking), and its output, an HTTP fetch from a
//! server at the bridge's gateway and a write to its own file system come
//! back.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::containerd::Containerd;
use testkit::oci::busybox;

/// Processes killed when the test ends, however it ends.
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    let said =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{c:?}: {said}");
    said
}

/// A process whose namespaces are new: a network with nothing but `lo`,
/// and a private copy of the mounts.
fn namespace_holder() -> Child {
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let child = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sleep",
            "900",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let ns = format!("/proc/{}/ns/net", child.id());
    while std::fs::read_link(&ns).ok().as_ref() == Some(&own) || !Path::new(&ns).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "unshare did not unshare"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_container_on_the_image_s_cni_network_gets_an_address_fetches_and_writes() {
    let tmp = tempfile::Builder::new()
        .prefix("atomicbuild-cni.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let t = tmp.path();
    let holder = namespace_holder();
    let pid = holder.id().to_string();
    let mut procs = Kill(vec![holder]);
    let prefix = ["nsenter", "-t", &pid, "-n", "-m"];
    let inside = |args: &[&str]| {
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).args(args);
        c
    };

    // The image's network, in the namespace's own /etc; its addresses are
    // kept in the namespace's own /var/lib.
    let conflist = t.join("net.conflist");
    std::fs::write(&conflist, atomicbuild::stage::node::cni_conflist()).unwrap();
    std::fs::create_dir_all(t.join("www")).unwrap();
    std::fs::write(t.join("www/greeting"), "served-from-the-gateway\n").unwrap();
    let setup = format!(
        "set -e; T={t}; mkdir -p $T/eu $T/ew $T/vu $T/vw\n\
         mount -t overlay overlay -o lowerdir=/etc,upperdir=$T/eu,workdir=$T/ew /etc\n\
         mount -t overlay overlay -o lowerdir=/var/lib,upperdir=$T/vu,workdir=$T/vw /var/lib\n\
         mkdir -p /etc/cni/net.d\n\
         cp {c} /etc/cni/net.d/10-atomicbuild-bridge.conflist\n\
         ip link set lo up\n",
        t = t.display(),
        c = conflist.display()
    );
    ok(&mut inside(&["sh", "-c", &setup]));
    let www = t.join("www");
    let httpd = inside(&["busybox", "httpd", "-f", "-p", "0.0.0.0:8099", "-h"])
        .arg(&www)
        .spawn()
        .unwrap();
    procs.0.push(httpd);
    let t0 = Instant::now();
    let url = "http://127.0.0.1:8099/greeting";
    while !inside(&["busybox", "wget", "-q", "-O", "/dev/null", url])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "busybox httpd did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = Containerd::start_under(&t.join("ctrd"), "default", &prefix);

    let archive = t.join("bb.oci.tar");
    busybox("cni test", "v1").write(&archive);
    let o = c.ctr(&[
        "images",
        "import",
        "--base-name",
        "local/bb",
        archive.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = "echo hello-from-the-container; \
                  ip -4 addr show eth0 | grep inet; \
                  timeout 20 wget -q -O - http://10.88.0.1:8099/greeting; \
                  echo written > /data.txt && cat /data.txt";
    let o = c.ctr(&[
        "run",
        "--rm",
        "--cni",
        "local/bb:v1",
        "cni-test",
        "/bin/sh",
        "-c",
        script,
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "ctr run failed:\n{out}\n{err}");
    assert!(out.contains("hello-from-the-container\n"), "{out}");
    assert!(
        out.contains("inet 10.88."),
        "no address from 10.88.0.0/16: {out}"
    );
    assert!(out.contains("served-from-the-gateway\n"), "{out}\n{err}");
    assert!(out.contains("written\n"), "{out}");
    let bridge = ok(&mut inside(&["ip", "-4", "addr", "show", "cni0"]));
    assert!(bridge.contains("inet 10.88.0.1/16"), "{bridge}");
    assert!(
        !Path::new("/etc/cni/net.d/10-atomicbuild-bridge.conflist").exists(),
        "the test's network leaked into this machine's /etc"
    );
    drop(c);
}
