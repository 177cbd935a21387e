//! `Upload-Checksum`: a PATCH body's digest, checked before its bytes are
//! kept.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::TusError;

/// The algorithms offered in `Tus-Checksum-Algorithm`.
pub const ALGORITHMS: &str = "sha1,sha256,md5";

/// A body's expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    algorithm: Algorithm,
    expected: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha256,
    Md5,
}

impl Checksum {
    /// Parses `Upload-Checksum: ALGORITHM BASE64`.
    pub fn parse(header: &str) -> Result<Self, TusError> {
        let Some((name, digest)) = header.trim().split_once(' ') else {
            return Err(TusError::bad_request(
                "Upload-Checksum is not `algorithm base64digest`",
            ));
        };
        let algorithm = match name.to_ascii_lowercase().as_str() {
            "sha1" => Algorithm::Sha1,
            "sha256" => Algorithm::Sha256,
            "md5" => Algorithm::Md5,
            _ => {
                return Err(TusError::bad_request(format!(
                    "Upload-Checksum: unsupported algorithm; supported: {ALGORITHMS}"
                )));
            }
        };
        let expected = STANDARD
            .decode(digest.trim())
            .map_err(|_| TusError::bad_request("Upload-Checksum: the digest is not base64"))?;
        Ok(Self {
            algorithm,
            expected,
        })
    }

    /// A hasher for the body.
    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }

    /// Whether `hasher` saw the expected bytes.
    pub fn matches(&self, hasher: Hasher) -> bool {
        let digest: Vec<u8> = match hasher {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        };
        digest == self.expected
    }
}

/// A running digest of a body.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(Sha1),
    /// SHA-256.
    Sha256(Sha256),
    /// MD5.
    Md5(md5::Md5),
}

impl Hasher {
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
            Self::Md5(h) => h.update(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_checks_its_digest() {
        // "hello" in each algorithm, base64.
        for (header, ok) in [
            ("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=", true),
            ("sha256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", true),
            ("md5 XUFAKrxLKna5cZ2REBfFkg==", true),
            ("sha256 qvTGHdzF6KLavt4PO0gs2a6pQ00=", false),
        ] {
            let Ok(checksum) = Checksum::parse(header) else {
                panic!("{header} refused");
            };
            let mut hasher = checksum.hasher();
            hasher.update(b"hel");
            hasher.update(b"lo");
            assert_eq!(checksum.matches(hasher), ok, "{header}");
        }
        assert!(Checksum::parse("crc32 AAAA").is_err());
        assert!(Checksum::parse("sha1 not*base64").is_err());
        assert!(Checksum::parse("sha1").is_err());
    }
}
