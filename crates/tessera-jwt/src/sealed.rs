//! A key set as one document whose private keys are encrypted, for keeping
//! signing keys in a shared database or Redis rather than on a disk.
//!
//! Each private key (PKCS#8) is sealed with AES-256-GCM under a
//! key-encryption key (KEK) that never leaves the instances' configuration,
//! so whoever reads the database (a backup, a replica, an operator with
//! `SELECT`) learns the public keys and nothing that signs (OWASP Key
//! Management Cheat Sheet: encrypt keys at rest with a separate KEK; NIST
//! SP 800-38D for GCM). The nonce is 96 random bits per seal; a key set is
//! sealed a handful of times per rotation, far below GCM's random-nonce
//! limit of 2^32 messages per key. The associated data binds each
//! ciphertext to its `kid` and algorithm, so moving a sealed key to another
//! entry of the document fails to open instead of signing under the wrong
//! name.
//!
//! ```text
//! {"version":1,"kek":"<16 hex: names the KEK, reveals nothing of it>",
//!  "keys":[{"kid","algorithm","created_at","retired_at","sealed":"<base64url nonce‖ciphertext‖tag>"}]}
//! ```

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::key::PrivateKey;
use crate::keys::{KeyEntry, KeyInfo, KeySet};

const DOCUMENT_VERSION: u32 = 1;
/// Prefix of the associated data: a ciphertext made for another purpose
/// never opens here.
const AAD_CONTEXT: &str = "tessera signing key v1";
/// Bound on a document read back from a store: a key entry is under 400
/// bytes, and a set holds a few keys.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// A 256-bit key-encryption key. Never printed; zeroed on drop.
///
/// ```
/// use tessera_jwt::KeyEncryptionKey;
/// // 32 random bytes, as `openssl rand -base64 32` prints them.
/// let kek = KeyEncryptionKey::from_base64("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=")?;
/// assert_eq!(format!("{kek:?}"), "KeyEncryptionKey(<redacted>)");
/// assert!(KeyEncryptionKey::from_base64("too short").is_err());
/// # Ok::<(), tessera_jwt::KeyError>(())
/// ```
pub struct KeyEncryptionKey {
    key: LessSafeKey,
    /// Names this KEK in sealed documents, so a document sealed under
    /// another KEK gets a clear error rather than a decryption failure.
    id: String,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

impl KeyEncryptionKey {
    /// Parses 32 bytes written in base64 (standard or URL-safe alphabet,
    /// padding optional; surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`KeyError::KeyEncryptionKey`] when the text is not base64 of
    /// exactly 32 bytes. The message never contains the text.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let unpadded = text.trim_end_matches('=');
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .map_err(|_| {
                    KeyError::KeyEncryptionKey(
                        "not base64 (generate one with `openssl rand -base64 32`)",
                    )
                })?,
        );
        let raw: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            KeyError::KeyEncryptionKey("not 32 bytes (generate one with `openssl rand -base64 32`)")
        })?;
        Self::from_bytes(raw)
    }

    /// A KEK from its 32 raw bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::KeyEncryptionKey`] if the AEAD refuses the key (it does
    /// not for 32 bytes).
    pub fn from_bytes(raw: &[u8; 32]) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, raw)
            .map_err(|_| KeyError::KeyEncryptionKey("unusable key"))?;
        // A one-way name for the KEK: SHA-256 over a context label and the
        // key, 8 bytes in hex. It tells two KEKs apart and, the key being
        // 256 random bits, reveals nothing usable about it.
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"tessera key-encryption key id\0");
        ctx.update(raw);
        let digest = ctx.finish();
        let id = digest
            .as_ref()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            key: LessSafeKey::new(unbound),
            id,
        })
    }

    /// A short public name of this KEK (16 hex digits), written into sealed
    /// documents and safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    kek: String,
    keys: Vec<SealedKey>,
}

#[derive(Serialize, Deserialize)]
struct SealedKey {
    #[serde(flatten)]
    info: KeyInfo,
    sealed: String,
}

/// What binds a ciphertext to its entry.
fn aad(info: &KeyInfo) -> String {
    format!("{AAD_CONTEXT}\0{}\0{}", info.kid, info.algorithm)
}

impl KeySet {
    /// This key set as one JSON document with every private key encrypted
    /// under `kek`: AES-256-GCM with a fresh random 96-bit nonce per key,
    /// the key's `kid` and algorithm as associated data (a ciphertext moved
    /// to another entry does not open), and the KEK named by a one-way id.
    /// Public data — key ids, algorithms, dates — stays readable.
    ///
    /// ```
    /// use tessera::time::Timestamp;
    /// use tessera_jwt::{Algorithm, DEFAULT_RETENTION, KeyEncryptionKey, KeySet};
    ///
    /// let kek = KeyEncryptionKey::from_bytes(&[7; 32])?;
    /// let t0 = Timestamp::from_millis(1_700_000_000_000);
    /// let keys = KeySet::generate(Algorithm::EdDSA, t0)?;
    /// let document = keys.seal(&kek)?;
    /// assert!(!document.contains("PRIVATE KEY"));
    ///
    /// let opened = KeySet::unseal(&document, &kek, DEFAULT_RETENTION)?;
    /// assert_eq!(opened.jwks(t0), keys.jwks(t0));
    ///
    /// // Another KEK cannot open it.
    /// let other = KeyEncryptionKey::from_bytes(&[8; 32])?;
    /// assert!(KeySet::unseal(&document, &other, DEFAULT_RETENTION).is_err());
    /// # Ok::<(), tessera_jwt::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Encoding`] if a key cannot be encoded; [`KeyError::Random`]
    /// if the CSPRNG fails.
    pub fn seal(&self, kek: &KeyEncryptionKey) -> Result<String, KeyError> {
        let mut keys = Vec::new();
        for entry in self.entries() {
            let pem = entry.private.to_pkcs8_pem()?;
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce).map_err(|_| KeyError::Random)?;
            let mut in_out = Zeroizing::new(pem.as_bytes().to_vec());
            kek.key
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad(&entry.info).as_bytes()),
                    &mut *in_out,
                )
                .map_err(|_| KeyError::Encoding)?;
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&in_out);
            keys.push(SealedKey {
                info: entry.info.clone(),
                sealed: URL_SAFE_NO_PAD.encode(sealed),
            });
        }
        let document = Document {
            version: DOCUMENT_VERSION,
            kek: kek.id.clone(),
            keys,
        };
        serde_json::to_string(&document).map_err(|e| KeyError::Manifest(e.to_string()))
    }

    /// Opens a document made by [`KeySet::seal`] with the same KEK.
    /// Checks what a key directory's manifest is checked for (at most one
    /// active key, no duplicate `kid`).
    ///
    /// # Errors
    ///
    /// [`KeyError::WrongKeyEncryptionKey`] if the document names another
    /// KEK; [`KeyError::Sealed`] if a ciphertext does not open (tampered
    /// with, or moved between entries); [`KeyError::Manifest`] if the
    /// document is malformed, too large or inconsistent.
    pub fn unseal(
        document: &str,
        kek: &KeyEncryptionKey,
        retention: Duration,
    ) -> Result<KeySet, KeyError> {
        if document.len() > MAX_DOCUMENT {
            return Err(KeyError::Manifest("sealed key set too large".into()));
        }
        let document: Document =
            serde_json::from_str(document).map_err(|e| KeyError::Manifest(e.to_string()))?;
        if document.version != DOCUMENT_VERSION {
            return Err(KeyError::Manifest(format!(
                "unsupported sealed key set version {}",
                document.version
            )));
        }
        if document.kek != kek.id {
            return Err(KeyError::WrongKeyEncryptionKey {
                sealed_with: document.kek,
                configured: kek.id.clone(),
            });
        }
        let mut entries: Vec<KeyEntry> = Vec::with_capacity(document.keys.len());
        for SealedKey { info, sealed } in document.keys {
            if entries.iter().any(|e| e.info.kid == info.kid) {
                return Err(KeyError::Manifest(format!("duplicate kid {}", info.kid)));
            }
            let opened_fail = || KeyError::Sealed {
                kid: info.kid.as_str().to_owned(),
            };
            let mut bytes =
                Zeroizing::new(URL_SAFE_NO_PAD.decode(&sealed).map_err(|_| opened_fail())?);
            if bytes.len() < NONCE_LEN {
                return Err(opened_fail());
            }
            let (nonce, in_out) = bytes.split_at_mut(NONCE_LEN);
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| opened_fail())?;
            let plain = kek
                .key
                .open_in_place(nonce, Aad::from(aad(&info).as_bytes()), in_out)
                .map_err(|_| opened_fail())?;
            let pem = std::str::from_utf8(plain).map_err(|_| opened_fail())?;
            let private = PrivateKey::from_pkcs8_pem(info.algorithm, pem).ok_or_else(|| {
                KeyError::InvalidKeyFile {
                    kid: info.kid.as_str().to_owned(),
                }
            })?;
            entries.push(KeyEntry { info, private });
        }
        if entries
            .iter()
            .filter(|e| e.info.retired_at.is_none())
            .count()
            > 1
        {
            return Err(KeyError::Manifest("more than one active key".into()));
        }
        Ok(KeySet::from_entries(entries, retention))
    }
}

#[cfg(test)]
mod tests {
    use tessera::time::Timestamp;

    use super::*;
    use crate::key::Algorithm;
    use crate::{DEFAULT_RETENTION, Kid};

    fn t0() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000)
    }

    fn two_keys() -> KeySet {
        let mut keys = KeySet::generate(Algorithm::Es256, t0()).unwrap();
        keys.rotate(Algorithm::EdDSA, t0()).unwrap();
        keys
    }

    #[test]
    fn a_sealed_set_opens_to_the_same_keys_and_hides_the_private_parts() {
        let kek = KeyEncryptionKey::from_bytes(&[1; 32]).unwrap();
        let keys = two_keys();
        let doc = keys.seal(&kek).unwrap();
        for needle in ["PRIVATE", "BEGIN", "\"d\""] {
            assert!(!doc.contains(needle), "{needle} in {doc}");
        }
        let opened = KeySet::unseal(&doc, &kek, DEFAULT_RETENTION).unwrap();
        assert_eq!(opened.jwks(t0()), keys.jwks(t0()));
        assert_eq!(
            opened.keys().cloned().collect::<Vec<_>>(),
            keys.keys().cloned().collect::<Vec<_>>()
        );
        // The same private keys: a token signed by one set verifies with
        // the other's public keys (checked through the JWKS equality above
        // for the public half; the private half must still sign).
        assert_eq!(
            opened.current_entry().unwrap().private.public(),
            keys.current_entry().unwrap().private.public()
        );
        // Sealing twice gives different ciphertexts (fresh nonces).
        assert_ne!(keys.seal(&kek).unwrap(), doc);
    }

    #[test]
    fn another_kek_is_named_and_refused() {
        let doc = two_keys()
            .seal(&KeyEncryptionKey::from_bytes(&[1; 32]).unwrap())
            .unwrap();
        let other = KeyEncryptionKey::from_bytes(&[2; 32]).unwrap();
        let err = KeySet::unseal(&doc, &other, DEFAULT_RETENTION).unwrap_err();
        assert!(
            matches!(err, KeyError::WrongKeyEncryptionKey { .. }),
            "{err}"
        );
    }

    #[test]
    fn tampered_or_swapped_ciphertexts_do_not_open() {
        let kek = KeyEncryptionKey::from_bytes(&[1; 32]).unwrap();
        let doc = two_keys().seal(&kek).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&doc).unwrap();

        // One bit of a ciphertext flipped.
        let mut flipped = value.clone();
        let sealed = flipped["keys"][0]["sealed"].as_str().unwrap().to_owned();
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        raw[NONCE_LEN + 3] ^= 1;
        flipped["keys"][0]["sealed"] = URL_SAFE_NO_PAD.encode(raw).into();
        let err = KeySet::unseal(&flipped.to_string(), &kek, DEFAULT_RETENTION).unwrap_err();
        assert!(matches!(err, KeyError::Sealed { .. }), "{err}");

        // The two ciphertexts swapped between entries: each is bound to
        // its kid (and algorithm) by the associated data.
        let a = value["keys"][0]["sealed"].clone();
        let b = value["keys"][1]["sealed"].clone();
        value["keys"][0]["sealed"] = b;
        value["keys"][1]["sealed"] = a;
        let err = KeySet::unseal(&value.to_string(), &kek, DEFAULT_RETENTION).unwrap_err();
        assert!(matches!(err, KeyError::Sealed { .. }), "{err}");

        // A renamed kid does not open either.
        let mut renamed: serde_json::Value = serde_json::from_str(&doc).unwrap();
        renamed["keys"][0]["kid"] = Kid::generate().unwrap().as_str().into();
        let err = KeySet::unseal(&renamed.to_string(), &kek, DEFAULT_RETENTION).unwrap_err();
        assert!(matches!(err, KeyError::Sealed { .. }), "{err}");
    }

    #[test]
    fn kek_text_must_be_32_bytes_of_base64() {
        let standard = STANDARD.encode([9u8; 32]);
        let url = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        let a = KeyEncryptionKey::from_base64(&format!("  {standard}\n")).unwrap();
        let b = KeyEncryptionKey::from_bytes(&[9; 32]).unwrap();
        assert_eq!(a.id(), b.id());
        KeyEncryptionKey::from_base64(&url).unwrap();
        for bad in [
            "",
            "not base64!",
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
        ] {
            let err = KeyEncryptionKey::from_base64(bad).unwrap_err();
            assert!(!err.to_string().contains(bad) || bad.is_empty(), "{err}");
        }
    }
}
