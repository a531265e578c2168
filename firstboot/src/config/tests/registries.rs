//! `[[registries]]` in user data.

use super::*;

#[test]
fn registries_parse_with_ca_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = self_signed(dir.path(), "regca");
    let src = format!(
        "version = 1\n[[registries]]\nhost = \"10.0.2.2:5000\"\nmirrors = [\"https://m.example\"]\n\
         ca = \"\"\"{ca}\"\"\"\nusername = \"u\"\npassword = \"hunter2\"\n\
         [[registries]]\nhost = \"lab:80\"\ninsecure = true\nmirrors = [\"http://m2\"]\n\
         ca_file = \"/etc/pki/lab.crt\"\n"
    );
    let c = parse(&src, "t").unwrap();
    assert_eq!(c.registries.len(), 2);
    let r = &c.registries[0];
    assert_eq!(r.settings.host, "10.0.2.2:5000");
    assert_eq!(r.ca.as_ref().unwrap().field, "registries[0].ca");
    assert_eq!(r.settings.credentials.as_ref().unwrap().password, "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(c.registries[1].settings.insecure);
    assert_eq!(
        c.registries[1].ca.as_ref().unwrap().field,
        "registries[1].ca_file"
    );
}

#[test]
fn registries_are_checked_field_by_field() {
    let src = r#"version = 1
[[registries]]
mirrors = ["https://m"]
[[registries]]
host = "https://r.example"
[[registries]]
host = "r.example"
mirrors = ["http://plain", "ftp://x"]
username = "u"
[[registries]]
host = "r.example"
password = "SECRETPW"
[[registries]]
host = "_default"
insecure = true
ca = "not pem"
"#;
    at(src, "registries[0].host", (2, 1), "required");
    at(src, "registries[1].host", (5, 1), "without a scheme");
    at(src, "registries[2].mirrors[0]", (8, 12), "insecure = true");
    at(src, "registries[2].mirrors[1]", (8, 28), "https://HOST");
    problem(src, "registries[2].password");
    at(src, "registries[3].host", (11, 1), "earlier");
    problem(src, "registries[3].username");
    at(src, "registries[4].insecure", (15, 1), "_default");
    problem(src, "registries[4].ca");
    for p in problems(src) {
        assert!(!p.message.contains("SECRETPW"), "{p:?}");
    }
}
