//! AWS Signature Version 4 for the few calls `upload aws` makes (EBS direct
//! APIs, EC2 Query API): canonical request, string to sign, signing key,
//! `Authorization` header. Checked against AWS's published test vectors.

use sha2::{Digest, Sha256};

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The payload hash for bodies that are not signed (EBS PutSnapshotBlock:
/// its data is covered by its own checksum header instead).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Credentials.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key (never printed).
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, secret hidden)", self.access_key)
    }
}

/// Percent-encoding as SigV4 wants it: everything but RFC 3986 unreserved.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `k=v&...` of already-decoded pairs, encoded and sorted.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, val)| (uri_encode(k, false), uri_encode(val, false)))
        .collect();
    v.sort();
    v.iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a request is signed for.
pub struct Scope<'a> {
    /// `YYYYMMDD'T'HHMMSS'Z'`
    pub amz_date: &'a str,
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service, e.g. `ebs`, `ec2`.
    pub service: &'a str,
}

/// Sign a request: returns the `Authorization` header value. `headers` are
/// every header to sign (name, value), including `host` and `x-amz-date`;
/// `path` is the URI path (each segment is encoded here); `query` the
/// canonical query string; `payload_hash` the hex SHA-256 of the body or
/// [`UNSIGNED_PAYLOAD`].
pub fn authorization(
    creds: &Credentials,
    scope: &Scope,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    hs.sort();
    let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let path = if path.is_empty() { "/" } else { path };
    let canonical = format!(
        "{method}\n{}\n{query}\n{canonical_headers}\n{signed}\n{payload_hash}",
        uri_encode(path, true)
    );
    let date = &scope.amz_date[..8];
    let cred_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{cred_scope}\n{}",
        scope.amz_date,
        sha256_hex(canonical.as_bytes())
    );
    let k = hmac_sha256(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k = hmac_sha256(&k, scope.region.as_bytes());
    let k = hmac_sha256(&k, scope.service.as_bytes());
    let k = hmac_sha256(&k, b"aws4_request");
    let sig = hex::encode(hmac_sha256(&k, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{cred_scope}, SignedHeaders={signed}, Signature={sig}",
        creds.access_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Credentials {
        Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn vanilla(query: &str) -> String {
        let scope = Scope {
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "service",
        };
        let headers = [
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
        ];
        authorization(
            &example(),
            &scope,
            "GET",
            "/",
            query,
            &headers,
            &sha256_hex(b""),
        )
    }

    /// AWS's SigV4 test suite: get-vanilla and
    /// get-vanilla-query-order-key-case.
    #[test]
    fn published_vectors() {
        assert_eq!(
            vanilla(""),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        let q = canonical_query(&[
            ("Param2".into(), "value2".into()),
            ("Param1".into(), "value1".into()),
        ]);
        assert_eq!(q, "Param1=value1&Param2=value2");
        assert!(vanilla(&q).ends_with(
            "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        ));
    }

    /// RFC 4231 test case 2 (a key shorter than the block).
    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(uri_encode("a b/c~d*", false), "a%20b%2Fc~d%2A");
        assert_eq!(
            uri_encode("/snapshots/snap-1/blocks/7", true),
            "/snapshots/snap-1/blocks/7"
        );
        let dbg = format!("{:?}", example());
        assert!(!dbg.contains("wJalr"));
    }
}
