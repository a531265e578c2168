//! Just enough DER to find a certificate's SubjectPublicKeyInfo, and the
//! kubeadm-style CA pin computed from it: `sha256:` + hex of SHA-256 over the
//! SPKI's DER encoding.
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
//!                               issuer, validity, subject, subjectPublicKeyInfo, ... }
//! ```

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

/// One DER element: its tag, its contents and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
}

/// Split the first DER element off `input`.
fn next_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    ensure!(input.len() >= 2, "truncated DER element");
    let tag = input[0];
    ensure!(tag & 0x1f != 0x1f, "multi-byte DER tags are not supported");
    let first = input[1];
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        ensure!(
            (1..=4).contains(&n),
            "unsupported DER length encoding (0x{first:02x})"
        );
        ensure!(input.len() >= 2 + n, "truncated DER length");
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header
        .checked_add(len)
        .filter(|e| *e <= input.len())
        .context("DER element runs past the end of its input")?;
    Ok((
        Tlv {
            tag,
            contents: &input[header..end],
            whole: &input[..end],
        },
        &input[end..],
    ))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;

/// The DER encoding of the SubjectPublicKeyInfo of the certificate `cert_der`.
pub fn spki_der(cert_der: &[u8]) -> Result<&[u8]> {
    let (cert, _) = next_tlv(cert_der).context("not a DER certificate")?;
    ensure!(
        cert.tag == SEQUENCE,
        "not a DER certificate (no outer SEQUENCE)"
    );
    let (tbs, _) = next_tlv(cert.contents).context("no tbsCertificate")?;
    ensure!(tbs.tag == SEQUENCE, "tbsCertificate is not a SEQUENCE");
    let mut rest = tbs.contents;
    let mut index = 0;
    while !rest.is_empty() {
        let (el, more) = next_tlv(rest)?;
        rest = more;
        if index == 0 && el.tag == VERSION {
            continue; // the optional [0] version does not count
        }
        // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
        if index == 5 {
            ensure!(el.tag == SEQUENCE, "subjectPublicKeyInfo is not a SEQUENCE");
            return Ok(el.whole);
        }
        index += 1;
    }
    bail!("tbsCertificate has no subjectPublicKeyInfo")
}

/// SHA-256 of the certificate's SubjectPublicKeyInfo.
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32]> {
    Ok(Sha256::digest(spki_der(cert_der)?).into())
}

/// The pin as kubeadm prints it: `sha256:<64 lowercase hex>`.
pub fn pin_string(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_form_lengths() {
        let mut v = vec![0x04, 0x82, 0x01, 0x00];
        v.extend(std::iter::repeat_n(7u8, 256));
        v.push(0xff);
        let (t, rest) = next_tlv(&v).unwrap();
        assert_eq!(t.contents.len(), 256);
        assert_eq!(rest, &[0xff]);
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        assert!(next_tlv(&[0x30, 0x05, 1, 2]).is_err());
        assert!(next_tlv(&[0x30, 0x80]).is_err());
        assert!(spki_der(b"hello world").is_err());
        assert!(spki_der(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    }
    // Pins of real certificates are compared with openssl in tests/ca_pin.rs.
}
