//! `[[base.repos]]`: apt repositories on a Debian base (pinned keys,
//! suite or flat path), RPM repositories on a Fedora base, and the keys of
//! one family refused on the other, each with its position.

use super::{good, rejects};

fn with_repo(repo: &str) -> String {
    format!("{}\n[[base.repos]]\n{repo}", good())
}

const FPR: &str = "DE15 B144 86CD 377B 9E87  6E1A 2346 54DA 9A29 6436";

#[test]
fn an_apt_repository_needs_uri_dist_key_and_fingerprint() {
    let lines = good().lines().count();
    let t = with_repo("name = \"kubernetes\"\n");
    rejects(
        &t,
        &[
            &format!("host.toml:{}:", lines + 2),
            "base.repos[0].uri: an apt repository needs its uri",
            "base.repos[0]: an apt repository needs a suite",
            "base.repos[0].signed_by: an apt repository needs the key",
            "base.repos[0].fingerprint: give the OpenPGP fingerprint",
        ],
    );
}

#[test]
fn apt_repository_fields_are_checked() {
    let t = with_repo(
        "name = \"Bad Name\"\nuri = \"ftp://x/\"\nsuite = \"bookworm\"\npath = \"flat\"\nsigned_by = \"missing.asc\"\nfingerprint = \"12345\"\narchitectures = [\"AMD64\"]\n",
    );
    rejects(
        &t,
        &[
            "base.repos[0].name: \"Bad Name\" is not a valid repository name",
            "base.repos[0].uri: \"ftp://x/\" is not an http://",
            "give either suite (with components) or path",
            "base.repos[0].signed_by: the key file \"missing.asc\" does not exist",
            "base.repos[0].fingerprint: \"12345\" is not an OpenPGP fingerprint",
            "base.repos[0].architectures[0]: \"AMD64\"",
        ],
    );
    let t = with_repo(&format!(
        "name = \"k\"\nuri = \"https://x/\"\npath = \"flat\"\ncomponents = [\"main\"]\nsigned_by = \"https://x/k.asc\"\nfingerprint = \"{FPR}\"\n"
    ));
    rejects(
        &t,
        &[
            "base.repos[0].components: a flat repository (path) has no components",
            "base.repos[0].path: \"flat\" is not a flat repository path",
        ],
    );
}

#[test]
fn rpm_keys_on_an_apt_repository_and_apt_keys_on_an_rpm_repository() {
    let t = with_repo(&format!(
        "name = \"k\"\nuri = \"https://x/\"\npath = \"/\"\nsigned_by = \"https://x/k.asc\"\nfingerprint = \"{FPR}\"\nbaseurl = \"https://x/\"\ngpgcheck = false\n"
    ));
    rejects(
        &t,
        &[
            "base.repos[0].baseurl: this key is for RPM repositories",
            "base.repos[0].gpgcheck: this key is for RPM repositories",
        ],
    );
    let fedora = good()
        .replace("distro = \"debian\"", "distro = \"fedora\"")
        .replace("release = \"bookworm\"", "release = \"45\"");
    let t = format!(
        "{fedora}\n[[base.repos]]\nname = \"f\"\nbaseurl = \"https://x/\"\ngpgkey = \"https://x/k\"\nfingerprint = \"{FPR}\"\nsuite = \"bookworm\"\n"
    );
    rejects(
        &t,
        &["base.repos[0].suite: this key is for apt repositories"],
    );
    let t = format!(
        "{fedora}\n[[base.repos]]\nname = \"f\"\nbaseurl = \"https://x/\"\ngpgcheck = false\nfingerprint = \"{FPR}\"\n"
    );
    rejects(
        &t,
        &["base.repos[0].fingerprint: a fingerprint pins the key that gpgkey names"],
    );
}

#[test]
fn repository_names_are_unique_and_not_the_base_s() {
    let repo = format!(
        "uri = \"https://x/\"\npath = \"/\"\nsigned_by = \"https://x/k.asc\"\nfingerprint = \"{FPR}\"\n"
    );
    let t = format!(
        "{}\n[[base.repos]]\nname = \"k\"\n{repo}\n[[base.repos]]\nname = \"k\"\n{repo}\n[[base.repos]]\nname = \"debian\"\n{repo}",
        good()
    );
    rejects(
        &t,
        &[
            "base.repos[1].name: repository \"k\" is defined twice (also base.repos[0])",
            "base.repos[2].name: \"debian\" names the base's own archive",
        ],
    );
}
