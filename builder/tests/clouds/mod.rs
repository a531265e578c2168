//! Cloud services for the upload tests, real and on 127.0.0.1: moto (the
//! AWS API emulator) and OpenStack Keystone + Glance, from the venvs that
//! `scripts/install-deps` makes. Shared by several test binaries, each of
//! which uses a part.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn moto_server() -> PathBuf {
    std::env::var_os("ATOMICBUILD_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/atomicbuild-test-venv/bin/moto_server"))
}

pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    /// Start moto_server on a free port (bounded wait).
    pub fn start(dir: &Path) -> Moto {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            // The request recording (with every block's body) goes to the
            // test's directory, not the working directory.
            .env("MOTO_RECORDER_FILEPATH", dir.join("moto_recording"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server (scripts/install-deps installs it)");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "moto did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Moto { child, port }
    }

    /// http://127.0.0.1:PORT
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An unsigned EC2 Query call straight to moto (it does not check signatures
/// from the test's side either; the upload itself signs everything).
pub fn ec2(moto: &str, params: &[(&str, &str)]) -> String {
    ec2_in(moto, "us-east-1", params)
}

/// The same in another region (moto takes it from the credential scope).
pub fn ec2_in(moto: &str, region: &str, params: &[(&str, &str)]) -> String {
    let mut body = String::from("Version=2016-11-15");
    for (k, v) in params {
        body.push_str(&format!("&{k}={v}"));
    }
    ureq::post(&format!("{moto}/"))
        .set("content-type", "application/x-www-form-urlencoded")
        .set(
            "authorization",
            &format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/ec2/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .send_string(&body)
        .unwrap()
        .into_string()
        .unwrap()
}

// ---- OpenStack ----

pub const ADMIN_PW: &str = "admin-secret-7c1";
pub const GLANCE_PW: &str = "glance-secret-2b9";
pub const DEMO_PW: &str = "demo-secret-9f4";
pub const APPCRED_SECRET: &str = "appcred-secret-5d3";
/// Glance refuses image data above this, unless the test sets its own.
pub const SIZE_CAP: u64 = 8 << 30;

pub fn venv() -> PathBuf {
    std::env::var_os("ATOMICBUILD_OPENSTACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/atomicbuild-openstack"))
}

pub fn free_port() -> u16 {
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
        let out = std::fs::File::create(&log).unwrap();
        let mut c = Command::new(venv().join("bin/gunicorn"));
        c.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
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

pub fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Start a management command (`args` include the step); its output goes
/// to DIR/TOOL-STEP.log.
pub fn manage(dir: &Path, tool: &str, step: &str, args: &[&str]) -> Child {
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

pub fn finish(dir: &Path, what: &str, mut c: Child) {
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
pub fn ks(
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

pub fn password_auth(user: &str, pw: &str, scope: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": pw}}}, "scope": scope}})
}

/// Keystone + Glance, stopped when dropped.
pub struct OpenStack {
    _glance: Server,
    _keystone: Server,
    /// Keystone (without /v3).
    pub auth_url: String,
    /// Glance.
    pub glance_url: String,
    /// The demo user's application credential (secret APPCRED_SECRET).
    pub appcred_id: String,
}

impl OpenStack {
    /// Set up and start both (about 20 s), provisioned.
    pub fn start(dir: &Path) -> OpenStack {
        Self::start_with_cap(dir, SIZE_CAP)
    }

    /// The same, with Glance refusing image data above `size_cap` bytes.
    pub fn start_with_cap(dir: &Path, size_cap: u64) -> OpenStack {
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
                 image_size_cap = {size_cap}\nnode_staging_uri = file://{gd}/staging\n\
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
    pub fn demo_token(&self) -> String {
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

    /// GET from Glance as JSON.
    pub fn glance(&self, token: &str, path: &str) -> serde_json::Value {
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

    /// Images of this name the token sees.
    pub fn images_named(&self, token: &str, name: &str) -> Vec<serde_json::Value> {
        self.glance(token, &format!("/v2/images?name={name}"))["images"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Projects, users, roles, the image service's endpoints and an
/// application credential, through Keystone's API; returns the credential id.
pub fn provision(v3: &str, glance_url: &str) -> String {
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
