//! `[[registries]]`: names, mirrors, the CA file, plain HTTP only where
//! named, and no credentials in an image.

use super::{after_good as at, good, rejects};

#[test]
fn registries_are_checked_with_positions_and_credentials_refused() {
    let t = format!(
        "{}\n[[registries]]\nhost = \"https://r.example\"\n\n[[registries]]\nhost = \"r.example:5000\"\nmirrors = [\"http://m.example\"]\nca = \"missing-ca.pem\"\nusername = \"me\"\npassword = \"TOPSECRET\"\n\n[[registries]]\nhost = \"_default\"\ninsecure = true\n",
        good()
    );
    rejects(
        &t,
        &[
            &format!(
                "{} registries[0].host: the registry as image references name it",
                at(3, 1)
            ),
            &format!("{} registries[1].mirrors[0]: plain http://", at(7, 12)),
            &format!("{} registries[1].ca: cannot read", at(8, 1)),
            &format!(
                "{} registries[1].username: credentials never go into an image",
                at(9, 1)
            ),
            &format!("{} registries[1].password: credentials never go", at(10, 1)),
            &format!(
                "{} registries[2].insecure: plain HTTP must name its registry",
                at(14, 1)
            ),
        ],
    );
}
