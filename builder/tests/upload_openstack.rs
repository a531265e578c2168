//! `atomicbuild upload openstack` against a real Keystone (30.0.0) and a
//! real Glance (33.0.0), both from PyPI in one venv that
//! `scripts/install-deps` makes, started here on 127.0.0.1 ports: Keystone
//! with sqlite + fernet tokens under gunicorn, provisioned over its API
//! (service user for Glance, a demo project and user, the image service in
//! the catalog, an application credential); Glance with sqlite, the file
//! store and keystonemiddleware validating every token against Keystone.
//! Nothing is faked.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};

const ADMIN_PW: &str = "admin-secret-7c1";
const GLANCE_PW: &str = "glance-secret-2b9";
const DEMO_PW: &str = "demo-secret-9f4";
const APPCRED_SECRET: &str = "appcred-secret-5d3";
/// Glance refuses image data above this (the failure case uploads more).
const SIZE_CAP: u64 = 32 << 20;

fn venv() -> PathBuf {
    std::env::var_os("ATOMICBUILD_OPENSTACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/atomicbuild-openstack"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gunicorn server in its own process group; stopped (master and
/// workers) when dropped.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(name: &'static str, dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Server {
        let log = dir.join(format!("{name}.gunicorn.log"));
        let mut c = Command::new(venv().join("bin/gunicorn"));
        c.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({e}); scripts/install-deps installs it"));
        Server { name, child, log }
    }

    /// Wait until `url` answers with any HTTP status (bounded).
    fn wait(&mut self, url: &str) {
        let t = Instant::now();
        loop {
            match ureq::get(url).timeout(Duration::from_secs(5)).call() {
                Ok(_) | Err(ureq::Error::Status(..)) => return,
                Err(_) => {}
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited ({st}):\n{}", self.name, tail(&self.log));
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "{} did not answer on {url} in 120 s:\n{}",
                self.name,
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pg = -(self.child.id() as i32);
        unsafe { libc::kill(pg, libc::SIGTERM) };
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && t.elapsed().as_secs() < 15 {
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe { libc::kill(pg, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Start a management command (`args` include the step); its output goes
/// to DIR/TOOL-STEP.log.
fn manage(dir: &Path, tool: &str, step: &str, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{tool}-{step}.log"))).unwrap();
    Command::new(venv().join("bin").join(tool))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/install-deps installs it)"))
}

fn finish(dir: &Path, what: &str, mut c: Child) {
    let st = c.wait().unwrap();
    if !st.success() {
        let logs: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| format!("== {}\n{}", e.path().display(), tail(&e.path())))
            .collect();
        panic!("{what} failed ({st}):\n{}", logs.join("\n"));
    }
}

/// A JSON call to Keystone's API.
fn ks(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (Option<String>, serde_json::Value) {
    let mut r = ureq::request(method, url).timeout(Duration::from_secs(60));
    if let Some(t) = token {
        r = r.set("x-auth-token", t);
    }
    let resp = match body {
        Some(b) => r
            .set("content-type", "application/json")
            .send_string(&b.to_string()),
        None => r.call(),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let tok = resp.header("x-subject-token").map(String::from);
    let text = resp.into_string().unwrap();
    let v = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (tok, v)
}

fn password_auth(user: &str, pw: &str, scope: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": pw}}}, "scope": scope}})
}

struct OpenStack {
    _glance: Server,
    _keystone: Server,
    auth_url: String,
    glance_url: String,
    appcred_id: String,
}

impl OpenStack {
    fn start(dir: &Path) -> OpenStack {
        let (ks_port, gl_port) = (free_port(), free_port());
        let auth_url = format!("http://127.0.0.1:{ks_port}");
        let glance_url = format!("http://127.0.0.1:{gl_port}");
        let k = dir.join("keystone");
        let g = dir.join("glance");
        for d in [&k, &g] {
            std::fs::create_dir_all(d).unwrap();
        }
        let kd = k.display();
        std::fs::write(
            k.join("keystone.conf"),
            format!(
                "[DEFAULT]\nlog_file = {kd}/keystone.log\nuse_stderr = false\n\
                 [database]\nconnection = sqlite:///{kd}/keystone.sqlite\n\
                 [token]\nprovider = fernet\n\
                 [fernet_tokens]\nkey_repository = {kd}/fernet-keys\n\
                 [fernet_receipts]\nkey_repository = {kd}/fernet-keys\n\
                 [credential]\nkey_repository = {kd}/credential-keys\n\
                 # bcrypt cost 4 instead of 12: password checks take ms, not seconds\n\
                 [identity]\npassword_hash_rounds = 4\n[cache]\nenabled = false\n"
            ),
        )
        .unwrap();
        // keystone parses gunicorn's argv as its own options, so every
        // gunicorn setting lives in ./gunicorn.conf.py and argv stays empty.
        std::fs::write(
            k.join("gunicorn.conf.py"),
            format!(
                "wsgi_app = \"keystone.wsgi.api:application\"\nbind = \"127.0.0.1:{ks_port}\"\n\
                 workers = 1\nthreads = 4\ntimeout = 120\ngraceful_timeout = 5\n\
                 control_socket_disable = True\nraw_env = [\"OS_KEYSTONE_CONFIG_DIR={kd}\"]\n"
            ),
        )
        .unwrap();
        let gd = g.display();
        std::fs::write(
            g.join("glance-api.conf"),
            format!(
                "[DEFAULT]\nlog_file = {gd}/glance-api.log\nuse_stderr = false\n\
                 image_size_cap = {SIZE_CAP}\nnode_staging_uri = file://{gd}/staging\n\
                 worker_self_reference_url = {glance_url}\n\
                 [paste_deploy]\nconfig_file = {paste}\nflavor = keystone\n\
                 [database]\nconnection = sqlite:///{gd}/glance.sqlite\n\
                 [keystone_authtoken]\nwww_authenticate_uri = {auth_url}\nauth_url = {auth_url}\n\
                 auth_type = password\nusername = glance\npassword = {GLANCE_PW}\n\
                 project_name = service\nuser_domain_id = default\nproject_domain_id = default\n\
                 region_name = RegionOne\ninterface = public\nservice_type = image\n\
                 http_connect_timeout = 10\nhttp_request_max_retries = 1\n\
                 [glance_store]\nstores = file\ndefault_store = file\n\
                 filesystem_store_datadir = {gd}/images/\n\
                 [oslo_policy]\nenforce_new_defaults = true\nenforce_scope = true\n\
                 [oslo_concurrency]\nlock_path = {gd}/locks\n",
                paste = venv().join("etc/glance/glance-api-paste.ini").display()
            ),
        )
        .unwrap();

        // The four independent set-up commands at once (each is mostly
        // Python start-up), then bootstrap.
        let kconf_path = k.join("keystone.conf");
        let kc = kconf_path.to_str().unwrap();
        let owner = ["--keystone-user", "root", "--keystone-group", "root"];
        let gconf = g.join("glance-api.conf");
        let gc = gconf.to_str().unwrap();
        let jobs = [
            ("keystone-manage", "db_sync", &k, vec![]),
            ("keystone-manage", "fernet_setup", &k, owner.to_vec()),
            ("keystone-manage", "credential_setup", &k, owner.to_vec()),
            ("glance-manage", "db_sync", &g, vec![]),
        ]
        .map(|(tool, step, d, opts)| {
            let conf = if tool == "glance-manage" { gc } else { kc };
            let args = [&["--config-file", conf, step][..], &opts[..]].concat();
            (tool, step, manage(d, tool, step, &args))
        });
        for (tool, step, c) in jobs {
            finish(dir, &format!("{tool} {step}"), c);
        }
        let v3 = format!("{auth_url}/v3");
        let boot = [
            "--config-file",
            kc,
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PW,
            "--bootstrap-region-id",
            "RegionOne",
            "--bootstrap-admin-url",
            &v3,
            "--bootstrap-internal-url",
            &v3,
            "--bootstrap-public-url",
            &v3,
        ];
        let c = manage(&k, "keystone-manage", "bootstrap", &boot);
        finish(dir, "keystone-manage bootstrap", c);
        let mut keystone = Server::start("keystone", &k, &[], &[]);
        keystone.wait(&v3);
        let appcred_id = provision(&v3, &glance_url);
        let mut glance = Server::start(
            "glance",
            &g,
            &[
                "--bind",
                &format!("127.0.0.1:{gl_port}"),
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "600",
                "--no-control-socket",
                "glance.wsgi.api:application",
            ],
            &[("OS_GLANCE_CONFIG_DIR", &g)],
        );
        glance.wait(&format!("{glance_url}/versions"));
        OpenStack {
            _glance: glance,
            _keystone: keystone,
            auth_url,
            glance_url,
            appcred_id,
        }
    }

    /// A token of the demo user (for reading Glance back).
    fn demo_token(&self) -> String {
        let scope = serde_json::json!({"project": {"name": "demo", "domain": {"id": "default"}}});
        ks(
            "POST",
            &format!("{}/v3/auth/tokens", self.auth_url),
            None,
            Some(password_auth("demo", DEMO_PW, scope)),
        )
        .0
        .unwrap()
    }

    fn glance(&self, token: &str, path: &str) -> serde_json::Value {
        serde_json::from_str(
            &ureq::get(&format!("{}{path}", self.glance_url))
                .set("x-auth-token", token)
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )
        .unwrap()
    }

    fn images_named(&self, token: &str, name: &str) -> Vec<serde_json::Value> {
        self.glance(token, &format!("/v2/images?name={name}"))["images"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Projects, users, roles, the image service's endpoints and an
/// application credential, through Keystone's API; returns the credential id.
fn provision(v3: &str, glance_url: &str) -> String {
    let (adm, _) = ks(
        "POST",
        &format!("{v3}/auth/tokens"),
        None,
        Some(password_auth(
            "admin",
            ADMIN_PW,
            serde_json::json!({"system": {"all": true}}),
        )),
    );
    let adm = adm.unwrap();
    let post = |path: &str, key: &str, body: serde_json::Value| -> String {
        let (_, v) = ks(
            "POST",
            &format!("{v3}{path}"),
            Some(&adm),
            Some(serde_json::json!({ key: body })),
        );
        v[key]["id"].as_str().unwrap().to_string()
    };
    let roles = ks("GET", &format!("{v3}/roles"), Some(&adm), None).1;
    let role = |n: &str| {
        roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .map(|r| r["id"].as_str().unwrap().to_string())
    };
    let member = role("member").expect("bootstrap makes the member role");
    let service = role("service")
        .unwrap_or_else(|| post("/roles", "role", serde_json::json!({"name": "service"})));
    let svc_p = post(
        "/projects",
        "project",
        serde_json::json!({"name": "service", "domain_id": "default"}),
    );
    let demo_p = post(
        "/projects",
        "project",
        serde_json::json!({"name": "demo", "domain_id": "default"}),
    );
    let glance_u = post(
        "/users",
        "user",
        serde_json::json!({"name": "glance", "domain_id": "default", "password": GLANCE_PW}),
    );
    let demo_u = post(
        "/users",
        "user",
        serde_json::json!({"name": "demo", "domain_id": "default", "password": DEMO_PW}),
    );
    for (p, u, r) in [(&svc_p, &glance_u, &service), (&demo_p, &demo_u, &member)] {
        ks(
            "PUT",
            &format!("{v3}/projects/{p}/users/{u}/roles/{r}"),
            Some(&adm),
            None,
        );
    }
    let img = post(
        "/services",
        "service",
        serde_json::json!({"type": "image", "name": "glance"}),
    );
    for iface in ["public", "internal"] {
        post(
            "/endpoints",
            "endpoint",
            serde_json::json!({"service_id": img, "interface": iface,
                "region_id": "RegionOne", "url": glance_url}),
        );
    }
    // Only its owner can make an application credential.
    let (demo_tok, _) = ks(
        "POST",
        &format!("{v3}/auth/tokens"),
        None,
        Some(password_auth(
            "demo",
            DEMO_PW,
            serde_json::json!({"project": {"name": "demo", "domain": {"id": "default"}}}),
        )),
    );
    let (_, ac) = ks(
        "POST",
        &format!("{v3}/users/{demo_u}/application_credentials"),
        demo_tok.as_deref(),
        Some(serde_json::json!({"application_credential": {
            "name": "atomicbuild-test", "secret": APPCRED_SECRET}})),
    );
    ac["application_credential"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A raw image with data here and there and holes between.
fn write_raw(p: &Path, size: u64, seed: u8) {
    let f = std::fs::File::create(p).unwrap();
    f.set_len(size).unwrap();
    let mut w = std::io::BufWriter::new(&f);
    let mut x = 0x9e3779b97f4a7c15u64 ^ seed as u64;
    let chunk: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    use std::io::Seek;
    for off in (0..size).step_by(5 << 20) {
        w.seek(std::io::SeekFrom::Start(off)).unwrap();
        w.write_all(&chunk[..chunk.len().min((size - off) as usize)])
            .unwrap();
    }
    w.flush().unwrap();
    f.sync_all().unwrap();
}

fn sha512(p: &Path) -> String {
    hex::encode(Sha512::digest(std::fs::read(p).unwrap()))
}

/// `atomicbuild` with only the given OS_* variables (the caller's are
/// removed so nothing leaks in from the machine).
fn atomicbuild(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomicbuild"));
    c.args(args).current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", cwd).env_remove("XDG_CONFIG_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "atomicbuild failed:\n{err}");
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn uploads_to_glance_authenticated_by_keystone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t = Instant::now();
    let os = OpenStack::start(dir);
    eprintln!("keystone + glance up in {:.1} s", t.elapsed().as_secs_f64());
    let demo = os.demo_token();
    let openrc = [
        ("OS_AUTH_URL", format!("{}/v3", os.auth_url)),
        ("OS_USERNAME", "demo".into()),
        ("OS_PASSWORD", DEMO_PW.into()),
        ("OS_PROJECT_NAME", "demo".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_ID", "default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
    ];
    let env: Vec<(&str, &str)> = openrc.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // 1. A raw image with the openrc variables (password auth).
    let raw = dir.join("host.raw");
    write_raw(&raw, 24 << 20, 1);
    let t = Instant::now();
    let o = atomicbuild(
        &[
            "upload",
            "openstack",
            "--image",
            raw.to_str().unwrap(),
            "--name",
            "host-raw",
            "--firmware",
            "bios",
            "--os-distro",
            "fedora",
            "--os-version",
            "45",
        ],
        &env,
        dir,
    );
    let id = ok(&o);
    eprintln!(
        "24 MiB raw uploaded in {:.2} s:\n{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&o.stderr)
    );
    let img = os.glance(&demo, &format!("/v2/images/{id}"));
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512(&raw).as_str());
    assert_eq!(img["size"], 24 << 20);
    for (k, v) in [
        ("disk_format", "raw"),
        ("container_format", "bare"),
        ("visibility", "private"),
        ("architecture", "x86_64"),
        ("hw_firmware_type", "bios"),
        ("hw_machine_type", "q35"),
        ("os_distro", "fedora"),
        ("os_version", "45"),
    ] {
        assert_eq!(img[k], v, "{k} in {img}");
    }
    assert_eq!(
        (img["min_disk"].as_u64(), img["min_ram"].as_u64()),
        (Some(1), Some(1024))
    );
    // Glance's copy is our file.
    let mut back = Vec::new();
    use std::io::Read;
    ureq::get(&format!("{}/v2/images/{id}/file", os.glance_url))
        .set("x-auth-token", &demo)
        .call()
        .unwrap()
        .into_reader()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        back == std::fs::read(&raw).unwrap(),
        "Glance's data differs"
    );

    // 2. The same again: found, nothing uploaded, still one image.
    let o = atomicbuild(
        &[
            "upload",
            "openstack",
            "--image",
            raw.to_str().unwrap(),
            "--name",
            "host-raw",
            "--firmware",
            "bios",
        ],
        &env,
        dir,
    );
    assert_eq!(ok(&o), id);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing uploaded"));
    assert_eq!(os.images_named(&demo, "host-raw").len(), 1);
    assert_eq!(
        os.glance(&demo, &format!("/v2/images/{id}"))["updated_at"],
        img["updated_at"]
    );

    // 3. A wrong password: refused with Keystone named, the password never shown.
    let mut bad = env.clone();
    bad.retain(|(k, _)| *k != "OS_PASSWORD");
    bad.push(("OS_PASSWORD", "not-the-Password-4711"));
    let o = atomicbuild(
        &[
            "upload",
            "openstack",
            "--image",
            raw.to_str().unwrap(),
            "--name",
            "host-bad",
        ],
        &bad,
        dir,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains(&os.auth_url), "{err}");
    assert!(!err.contains("not-the-Password-4711"), "{err}");
    assert!(os.images_named(&demo, "host-bad").is_empty());

    // 4. A qcow2 (written by atomicbuild convert) through clouds.yaml with
    //    the application credential; secret in secure.yaml.
    let qcow2 = dir.join("host.qcow2");
    ok(&atomicbuild(
        &[
            "convert",
            "--image",
            raw.to_str().unwrap(),
            "--format",
            "qcow2",
            "--output",
            qcow2.to_str().unwrap(),
        ],
        &[],
        dir,
    ));
    std::fs::write(
        dir.join("clouds.yaml"),
        format!(
            "clouds:\n  lab:\n    auth_type: v3applicationcredential\n    region_name: RegionOne\n    \
             auth:\n      auth_url: {}/v3\n      application_credential_id: {}\n",
            os.auth_url, os.appcred_id
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("secure.yaml"),
        format!(
            "clouds:\n  lab:\n    auth:\n      application_credential_secret: {APPCRED_SECRET}\n"
        ),
    )
    .unwrap();
    let o = atomicbuild(
        &[
            "upload",
            "openstack",
            "--cloud",
            "lab",
            "--image",
            qcow2.to_str().unwrap(),
            "--name",
            "host-qcow2",
        ],
        &[],
        dir,
    );
    let qid = ok(&o);
    let img = os.glance(&demo, &format!("/v2/images/{qid}"));
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["hw_firmware_type"], "uefi");
    assert_eq!(img["os_hash_value"], sha512(&qcow2).as_str());
    // An unknown cloud names the file and the clouds in it.
    let o = atomicbuild(
        &[
            "upload",
            "openstack",
            "--cloud",
            "nope",
            "--image",
            qcow2.to_str().unwrap(),
            "--name",
            "x",
        ],
        &[],
        dir,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no cloud \"nope\" (clouds there: lab)"),
        "{err}"
    );

    // 5. Glance refuses the data (over its size cap): the queued image is
    //    deleted, nothing is left under the name.
    let big = dir.join("big.raw");
    write_raw(&big, SIZE_CAP + (8 << 20), 2);
    let o = atomicbuild(
        &[
            "upload",
            "openstack",
            "--image",
            big.to_str().unwrap(),
            "--name",
            "host-big",
        ],
        &env,
        dir,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "an image over Glance's cap was accepted"
    );
    assert!(
        err.contains("uploading the image data") && err.contains("was deleted again"),
        "{err}"
    );
    assert!(
        os.images_named(&demo, "host-big").is_empty(),
        "a refused image was left behind"
    );
}
