//! The check of an OpenSSH public key line (`type base64 [comment]`), the
//! same for keys in a manifest and in first-boot user data: a known key
//! type first (no `authorized_keys` options), valid base64, and a key blob
//! that names the same type and is long enough to hold a key.

use base64::Engine as _;

/// Key types an `authorized_keys` line may carry.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// `Ok` for a well-formed public key line, else why not (one line).
pub fn check(line: &str) -> Result<(), String> {
    if line.contains(['\n', '\r']) {
        return Err(
            "it spans several lines: a key must be one line; give one key per list item".into(),
        );
    }
    let mut parts = line.split_whitespace();
    let ty = parts.next().ok_or("it is empty")?;
    if !KEY_TYPES.contains(&ty) {
        return Err(format!(
            "unknown key type \"{ty}\": a key must start with a key type ({}); options before the type are not supported",
            KEY_TYPES.join(", ")
        ));
    }
    let b64 = parts.next().ok_or("the base64 key data is missing")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key data is not valid base64".to_string())?;
    let n = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .ok_or("the key data is too short")?;
    let named = blob.get(4..4 + n).ok_or("the key data is truncated")?;
    if named != ty.as_bytes() {
        return Err(format!(
            "the key data says \"{}\" but the line says \"{ty}\": the base64 key blob does not hold a key of the type written before it",
            String::from_utf8_lossy(named)
        ));
    }
    if blob.len() < 4 + n + 16 {
        return Err("the key data is truncated".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBpMAzgtQAhjeae+JWGlNyCENKbOoDyos0z/33rrqJbt test@atomicbuild";

    #[test]
    fn accepts_real_ed25519_key() {
        assert_eq!(check(KEY), Ok(()));
    }

    #[test]
    fn rejects_mismatched_or_garbled_keys() {
        let e = check(&KEY.replace("ssh-ed25519 ", "ssh-rsa ")).unwrap_err();
        assert!(
            e.contains("says") && e.contains("does not hold a key of the type"),
            "{e}"
        );
        assert!(check("ssh-ed25519 not*base64")
            .unwrap_err()
            .contains("not valid base64"));
        assert!(check("ssh-ed25519").is_err());
        let e = check("ssh-dss AAAA").unwrap_err();
        assert!(
            e.contains("unknown key type") && e.contains("must start with a key type"),
            "{e}"
        );
        assert!(check(&format!("command=\"x\" {KEY}"))
            .unwrap_err()
            .contains("options before the type"));
        assert!(check(&format!("{KEY}\n{KEY}"))
            .unwrap_err()
            .contains("one line"));
        assert!(check("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
            .unwrap_err()
            .contains("truncated"));
    }
}
