//! Ed25519 keys in Nix's key-file format, and narinfo signatures.
//!
//! A secret key file holds `<name>:<base64(seed ‖ public key)>` and a public key
//! `<name>:<base64(public key)>`, exactly what `nix key generate-secret` and
//! `nix key convert-secret-to-public` produce, so keys move freely between this cache and Nix.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// Why a key could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret key {path} may be read by others (mode {mode:o}): make it the cache user's alone with `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("key is not of the form `<name>:<base64>`")]
    Format,
    #[error("key name {0:?} is empty or contains `:` or whitespace")]
    Name(String),
    #[error("key data is not valid base64")]
    Base64,
    #[error("key data is {0} bytes; a secret key has 64 (seed and public key), a public key 32")]
    Length(usize),
    #[error("the public half of the secret key does not match its seed")]
    Mismatch,
    #[error("public key is not a valid ed25519 point")]
    Point,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(':') && !name.chars().any(char::is_whitespace)
}

fn split(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let (name, data) = text.trim().split_once(':').ok_or(KeyError::Format)?;
    if !valid_name(name) {
        return Err(KeyError::Name(name.to_owned()));
    }
    let bytes = BASE64.decode(data).map_err(|_| KeyError::Base64)?;
    Ok((name, bytes))
}

/// A named signing key.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the seed, not even in debug logs.
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<SecretKey, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Name(name.to_owned()));
        }
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed);
        Ok(SecretKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let (name, bytes) = split(text)?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::Length(b.len()))?;
        let key = SigningKey::from_keypair_bytes(&bytes).map_err(|_| KeyError::Mismatch)?;
        Ok(SecretKey {
            name: name.to_owned(),
            key,
        })
    }

    /// Reads a secret key file, refusing one that anyone but its owner may read: whoever
    /// reads it can sign store paths every worker trusts.
    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let read_error = |source| KeyError::Read {
            path: path.display().to_string(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_error)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.display().to_string(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        SecretKey::parse(&text)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key file contents, `<name>:<base64(seed ‖ public)>`.
    pub fn to_file_contents(&self) -> String {
        format!(
            "{}:{}",
            self.name,
            BASE64.encode(self.key.to_keypair_bytes())
        )
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// A `Sig:` value for `fingerprint`: `<name>:<base64 signature>`.
    pub fn sign(&self, fingerprint: &str) -> String {
        let sig = self.key.sign(fingerprint.as_bytes());
        format!("{}:{}", self.name, BASE64.encode(sig.to_bytes()))
    }
}

/// A named verifying key, as listed in Nix's `trusted-public-keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let (name, bytes) = split(text)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::Length(b.len()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Point)?;
        Ok(PublicKey {
            name: name.to_owned(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `sig` (a `Sig:` value) is this key's signature of `fingerprint`.
    pub fn verify(&self, fingerprint: &str, sig: &str) -> bool {
        let Some((name, data)) = sig.split_once(':') else {
            return false;
        };
        let Ok(bytes) = BASE64.decode(data) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        name == self.name && self.key.verify(fingerprint.as_bytes(), &sig).is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pcr-cache once served with a signing key anyone on the host could read.
    #[test]
    fn a_secret_key_others_may_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.secret");
        let key = SecretKey::generate("k-1").expect("key");
        std::fs::write(&path, key.to_file_contents()).expect("write");
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = SecretKey::read(&path).expect_err("refused");
            assert!(matches!(e, KeyError::Exposed { .. }), "{mode:o}: {e}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(SecretKey::read(&path).expect("read").name(), "k-1");
    }

    // Generated with `nix key generate-secret --key-name test-1` and
    // `nix key convert-secret-to-public` (nix 2.8).
    const NIX_SECRET: &str = "test-1:r3wCMsXYJ/28/zBi0kHCYHRDLQ/DgLLeIVsYuzXKSf++rwYiLvixdJ0ELjwQjDTA0FULHrZ5BySkE6jscZhHwA==";
    const NIX_PUBLIC: &str = "test-1:vq8GIi74sXSdBC48EIw0wNBVCx62eQckpBOo7HGYR8A=";

    #[test]
    fn reads_nix_key_files() {
        let secret = SecretKey::parse(&format!("{NIX_SECRET}\n")).expect("nix secret key");
        assert_eq!(secret.name(), "test-1");
        assert_eq!(secret.public().to_string(), NIX_PUBLIC);
        assert_eq!(secret.to_file_contents(), NIX_SECRET);
        assert_eq!(
            PublicKey::parse(NIX_PUBLIC).expect("nix public key"),
            secret.public()
        );
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = SecretKey::generate("cache-1").expect("valid name");
        let fingerprint = "1;/nix/store/9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid;sha256:0v1x0hz4kzd1ns1nrl4g1j2ghb3ks06mxr89iyx3pdla4q9fyzsl;440;";
        let sig = key.sign(fingerprint);
        assert!(sig.starts_with("cache-1:"));
        assert!(key.public().verify(fingerprint, &sig));
        assert!(!key
            .public()
            .verify(&fingerprint.replace("440", "441"), &sig));
        let other = SecretKey::generate("cache-1").expect("valid name");
        assert!(!other.public().verify(fingerprint, &sig));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(matches!(SecretKey::parse("nocolon"), Err(KeyError::Format)));
        assert!(matches!(SecretKey::parse(":AAAA"), Err(KeyError::Name(_))));
        assert!(matches!(SecretKey::parse("k:!!"), Err(KeyError::Base64)));
        assert!(matches!(
            SecretKey::parse(NIX_PUBLIC),
            Err(KeyError::Length(32))
        ));
        // Seed of one key with the public half of another.
        let mut bytes = BASE64
            .decode(
                NIX_SECRET
                    .split_once(':')
                    .map(|(_, d)| d)
                    .unwrap_or_default(),
            )
            .expect("base64");
        bytes[40] ^= 1;
        assert!(matches!(
            SecretKey::parse(&format!("k:{}", BASE64.encode(bytes))),
            Err(KeyError::Mismatch)
        ));
        assert!(matches!(
            SecretKey::generate("has space"),
            Err(KeyError::Name(_))
        ));
    }
}
