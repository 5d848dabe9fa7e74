//! Software keys: PKCS#8 files (mode 0600) in the data directory, signing with aws-lc-rs.
//!
//! A loaded key is in memory, but it is used only while its file can still be read: an
//! operator who moves the key directory away (or makes it unreadable) takes the key out of
//! service, exactly as removing it from a token would ([`super::health`]: one rule for both
//! backends). The file is re-checked at most every [`FILE_CHECK_TTL`], so signing stays a
//! memory operation. A key file that its group or other users may read is refused at load.
//!
//! The data-sealing key ([`super::seal`]) is a file here too: `seal.key`, 32 random bytes, mode
//! 0600, used for AES-256-GCM by [`SoftwareSealer`].

use super::seal::{self, DataSealer, SealError, KEY_LEN, SEAL_KEY_NAME};
use super::{KeyBackend, KeyError, KeyRole, SignError, Signer};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, KeyPair};
use pkid_protocols::algorithm::parse_spki;
use pkid_protocols::{KeyType, SignatureAlgorithm};
use spki::SubjectPublicKeyInfoOwned;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long a successful check that a key file can still be read is trusted. Opening a file
/// costs microseconds; once per second per key keeps it off the signing path.
const FILE_CHECK_TTL: Duration = Duration::from_secs(1);
/// Permission bits a private key file must not have: any access by the group or others.
const LOOSE_BITS: u32 = 0o077;

/// Keys as `<dir>/<role>.p8` PKCS#8 DER files.
pub struct SoftwareBackend {
    dir: PathBuf,
    loaded: super::health::LoadedKeys,
}

impl SoftwareBackend {
    /// A backend over `dir` (created on first key generation, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            loaded: Default::default(),
        }
    }

    /// `signer` kept in service only while `path` can be read, and probed by [`Self::check`].
    fn track(&self, role: &KeyRole, signer: SoftwareSigner, path: PathBuf) -> Arc<dyn Signer> {
        let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner {
            file: Some(KeyFile {
                path,
                checked: Mutex::new(None),
            }),
            ..signer
        });
        self.loaded.register(role, &signer);
        signer
    }

    fn path(&self, role: &KeyRole) -> PathBuf {
        self.dir.join(format!("{}.p8", role.name()))
    }

    /// The PKCS#8 file of a role (the TLS listener loads it directly into rustls).
    pub fn key_path(&self, role: &KeyRole) -> PathBuf {
        self.path(role)
    }
}

enum Key {
    Ec(EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

/// A software key loaded into memory.
pub struct SoftwareSigner {
    key: Key,
    algorithm: SignatureAlgorithm,
    public_key: SubjectPublicKeyInfoOwned,
    rng: SystemRandom,
    /// The file the key was loaded from, when it came from a backend.
    file: Option<KeyFile>,
}

/// A key's file, and when it was last seen readable.
struct KeyFile {
    path: PathBuf,
    checked: Mutex<Option<Instant>>,
}

impl KeyFile {
    /// Whether the file can still be read (cached for [`FILE_CHECK_TTL`] when it could).
    fn readable(&self) -> Result<(), SignError> {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.is_some_and(|at| at.elapsed() < FILE_CHECK_TTL) {
            return Ok(());
        }
        match fs::File::open(&self.path) {
            Ok(_) => {
                *checked = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                *checked = None;
                Err(SignError::Unavailable(format!(
                    "key file {} cannot be read: {e}",
                    self.path.display()
                )))
            }
        }
    }
}

impl SoftwareSigner {
    /// Parses a PKCS#8 key (P-256, P-384 or RSA).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let bad =
            || KeyError::Failed("key file is not a PKCS#8 P-256, P-384 or RSA private key".into());
        let ec = [
            &lc::ECDSA_P256_SHA256_ASN1_SIGNING,
            &lc::ECDSA_P384_SHA384_ASN1_SIGNING,
        ]
        .into_iter()
        .find_map(|alg| EcdsaKeyPair::from_pkcs8(alg, der).ok());
        let (spki_der, key) = match ec {
            Some(k) => (spki_der(&k).ok_or_else(bad)?, Key::Ec(k)),
            None => {
                let k = aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|_| bad())?;
                (spki_der(&k).ok_or_else(bad)?, Key::Rsa(k))
            }
        };
        let public_key = parse_spki(&spki_der).map_err(|e| KeyError::Failed(e.to_string()))?;
        let algorithm = KeyType::of(&public_key)
            .map_err(|e| KeyError::Failed(e.to_string()))?
            .signature_algorithm();
        Ok(Self {
            key,
            algorithm,
            public_key,
            rng: SystemRandom::new(),
            file: None,
        })
    }

    fn in_service(&self) -> Result<(), SignError> {
        self.file.as_ref().map_or(Ok(()), KeyFile::readable)
    }
}

impl Signer for SoftwareSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &SubjectPublicKeyInfoOwned {
        &self.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.in_service()?;
        match &self.key {
            Key::Ec(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Failed("ECDSA signing failed".into())),
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&lc::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| SignError::Failed("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }

    fn sign_digest(
        &self,
        message: &[u8],
        digest: &aws_lc_rs::digest::Digest,
    ) -> Result<Vec<u8>, SignError> {
        if digest.algorithm() != self.algorithm.digest() {
            return self.sign(message);
        }
        self.in_service()?;
        match &self.key {
            Key::Ec(k) => k
                .sign_digest(digest)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Failed("ECDSA signing failed".into())),
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign_digest(&lc::RSA_PKCS1_SHA256, digest, &mut sig)
                    .map_err(|_| SignError::Failed("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }
}

/// The DER SubjectPublicKeyInfo of a key pair (EC or RSA).
fn spki_der<K>(k: &K) -> Option<Vec<u8>>
where
    K: KeyPair,
    K::PublicKey: AsDer<aws_lc_rs::encoding::PublicKeyX509Der<'static>>,
{
    k.public_key().as_der().ok().map(|d| d.as_ref().to_vec())
}

/// Generates a PKCS#8 private key of the given type.
pub fn generate_pkcs8(key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let fail = |_| KeyError::Failed("key generation failed".into());
    let der = match key_type {
        KeyType::EcP256 => EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_ASN1_SIGNING)
            .map_err(fail)?
            .to_pkcs8v1()
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        KeyType::EcP384 => EcdsaKeyPair::generate(&lc::ECDSA_P384_SHA384_ASN1_SIGNING)
            .map_err(fail)?
            .to_pkcs8v1()
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        KeyType::Rsa(bits) => {
            let size = match bits {
                2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
                other => return Err(KeyError::Failed(format!("unsupported RSA size {other}"))),
            };
            let k = aws_lc_rs::rsa::KeyPair::generate(size).map_err(fail)?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k).map_err(fail)?;
            der.as_ref().to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

/// Refuses a key file its group or other users can access: whoever can read it can sign as
/// the CA. (Refused rather than warned about: a warning in a log nobody reads protects no key.)
pub(super) fn private_enough(path: &Path, file: &fs::File) -> Result<(), KeyError> {
    let mode = file
        .metadata()
        .map_err(|e| KeyError::Failed(format!("reading {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & LOOSE_BITS != 0 {
        return Err(KeyError::Config(format!(
            "{} is mode {:04o}: others than its owner may read the private key; \
             run `chmod 600 {}` (and check who read it)",
            path.display(),
            mode & 0o7777,
            path.display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to a new file with mode 0600 and syncs it (never overwrites).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl KeyBackend for SoftwareBackend {
    fn generate(&self, role: &KeyRole, key_type: KeyType) -> Result<Arc<dyn Signer>, KeyError> {
        let path = self.path(role);
        if path.exists() {
            return Err(KeyError::Exists(role.clone()));
        }
        fs::create_dir_all(&self.dir)
            .map_err(|e| KeyError::Failed(format!("creating {}: {e}", self.dir.display())))?;
        std::fs::set_permissions(
            &self.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| KeyError::Failed(format!("securing {}: {e}", self.dir.display())))?;
        let der = generate_pkcs8(key_type)?;
        write_private_file(&path, &der)
            .map_err(|e| KeyError::Failed(format!("writing {}: {e}", path.display())))?;
        let signer = SoftwareSigner::from_pkcs8(&der)?;
        Ok(self.track(role, signer, path))
    }

    fn load(&self, role: &KeyRole) -> Result<Arc<dyn Signer>, KeyError> {
        let path = self.path(role);
        let file = fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeyError::NotFound(role.clone()),
            _ => KeyError::Failed(format!("reading {}: {e}", path.display())),
        })?;
        private_enough(&path, &file)?;
        let mut der = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut &file, &mut der)
            .map_err(|e| KeyError::Failed(format!("reading {}: {e}", path.display())))?;
        let signer = SoftwareSigner::from_pkcs8(&der)?;
        Ok(self.track(role, signer, path))
    }

    fn check(&self) -> Result<(), KeyError> {
        if !self.dir.is_dir() {
            return Err(KeyError::Unavailable(format!(
                "key directory {} is missing",
                self.dir.display()
            )));
        }
        self.loaded.probe()
    }

    fn describe(&self) -> String {
        format!("software:{}", self.dir.display())
    }

    fn sealer(&self) -> Result<Arc<dyn DataSealer>, KeyError> {
        Ok(Arc::new(SoftwareSealer::open_or_create(&self.dir)?))
    }

    fn generate_exportable(&self, key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        generate_pkcs8(key_type)
    }
}

/// The sealing key as a file: 32 random bytes, mode 0600, in the key directory.
pub struct SoftwareSealer {
    key: LessSafeKey,
}

impl SoftwareSealer {
    /// The key file of a software key directory.
    pub fn key_path(dir: &Path) -> PathBuf {
        dir.join(format!("{SEAL_KEY_NAME}.key"))
    }

    /// Loads `<dir>/seal.key`, creating it (and `dir`, mode 0700) with a new random key if it
    /// does not exist. A key file its group or others may read is refused, as signing keys are.
    pub fn open_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = Self::key_path(dir);
        if !path.exists() {
            fs::create_dir_all(dir)
                .map_err(|e| KeyError::Failed(format!("creating {}: {e}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| KeyError::Failed(format!("securing {}: {e}", dir.display())))?;
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            aws_lc_rs::rand::fill(key.as_mut())
                .map_err(|_| KeyError::Failed("no randomness for the sealing key".into()))?;
            match write_private_file(&path, key.as_ref()) {
                Ok(()) => tracing::info!(path = %path.display(), "created the data-sealing key"),
                // Another process created it first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(KeyError::Failed(format!("writing {}: {e}", path.display()))),
            }
        }
        Self::load(&path)
    }

    /// Loads an existing key file.
    fn load(path: &Path) -> Result<Self, KeyError> {
        let file = fs::File::open(path)
            .map_err(|e| KeyError::Failed(format!("reading {}: {e}", path.display())))?;
        private_enough(path, &file)?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN));
        std::io::Read::read_to_end(
            &mut std::io::Read::take(&file, 1 + KEY_LEN as u64),
            &mut bytes,
        )
        .map_err(|e| KeyError::Failed(format!("reading {}: {e}", path.display())))?;
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Config(format!(
                "{} is not a {KEY_LEN}-byte sealing key; restore it from the backup (without it, \
                 sealed personal data cannot be read)",
                path.display()
            )));
        }
        Self::from_key(&bytes)
    }

    /// A sealer over raw key bytes (32).
    fn from_key(bytes: &[u8]) -> Result<Self, KeyError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError::Failed("the sealing key is not an AES-256 key".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }
}

impl DataSealer for SoftwareSealer {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = seal::prepare(plaintext)?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(seal::aad(context)),
                &mut in_out,
            )
            .map_err(|_| SealError::Failed("AES-GCM sealing failed".into()))?;
        Ok(seal::assemble(&nonce, &in_out))
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let parts = seal::split(sealed)?;
        let mut in_out = Zeroizing::new(parts.ciphertext_and_tag.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(parts.nonce),
                Aad::from(seal::aad(context)),
                &mut in_out,
            )
            .map_err(|_| SealError::Unauthentic)?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_whose_file_is_gone_stops_signing_and_fails_the_probe_until_it_is_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let backend = SoftwareBackend::new(&keys);
        backend
            .generate(&KeyRole::Tsa, KeyType::EcP256)
            .expect("generate");
        let signer = backend.load(&KeyRole::Tsa).expect("load");
        backend.check().expect("ready");
        let away = dir.path().join("away");
        fs::rename(&keys, &away).expect("mv");
        // A fresh signer has no cached check; the loaded one re-checks within FILE_CHECK_TTL.
        let fresh = SoftwareBackend::new(&keys);
        assert!(fresh.check().is_err());
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match signer.sign(b"m") {
                Err(e) => break e,
                Ok(_) if Instant::now() < deadline => std::thread::yield_now(),
                Ok(_) => panic!("kept signing without its file"),
            }
        };
        assert!(matches!(err, SignError::Unavailable(_)), "{err:?}");
        fs::rename(&away, &keys).expect("mv back");
        signer.sign(b"m").expect("back in service");
    }

    #[test]
    fn a_key_others_may_read_is_refused_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = SoftwareBackend::new(dir.path());
        backend
            .generate(&KeyRole::Ocsp, KeyType::EcP256)
            .expect("generate");
        let path = backend.key_path(&KeyRole::Ocsp);
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let e = backend.load(&KeyRole::Ocsp).err().expect("refused");
            assert!(
                matches!(&e, KeyError::Config(m) if m.contains(&format!("{mode:04o}")) && m.contains("chmod 600")),
                "{e}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        backend.load(&KeyRole::Ocsp).expect("owner-only is fine");
    }

    #[test]
    fn generated_keys_are_private_sign_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = SoftwareBackend::new(dir.path().join("keys"));
        for (role, kt) in [
            (KeyRole::Root, KeyType::EcP384),
            (KeyRole::Issuing, KeyType::EcP256),
            (KeyRole::Ocsp, KeyType::Rsa(2048)),
        ] {
            let signer = backend.generate(&role, kt).expect("generate");
            let mode = fs::metadata(backend.key_path(&role))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
            let sig = signer.sign(b"msg").expect("sign");
            let loaded = backend.load(&role).expect("load");
            assert_eq!(loaded.public_key(), signer.public_key());
            pkid_protocols::algorithm::verify(
                loaded.public_key(),
                &loaded.algorithm().identifier(),
                b"msg",
                &sig,
            )
            .expect("verify");
        }
        assert!(matches!(
            backend.generate(&KeyRole::Root, KeyType::EcP256),
            Err(KeyError::Exists(KeyRole::Root))
        ));
        assert!(matches!(
            backend.load(&KeyRole::Tsa),
            Err(KeyError::NotFound(KeyRole::Tsa))
        ));
    }

    #[test]
    fn software_sealer_round_trips_and_refuses_wrong_context_and_tampering() {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = dir.path().join("keys");
        let sealer = SoftwareSealer::open_or_create(&keys).expect("create");
        super::seal::tests::behaves_as_a_sealer(&sealer);
        let path = SoftwareSealer::key_path(&keys);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).expect("read").len(), KEY_LEN);
        // Reopened (a restart): the same key, so earlier values still open.
        let sealed = sealer
            .seal(b"001203004567", b"request:7:id_number")
            .expect("seal");
        let reopened = SoftwareSealer::open_or_create(&keys).expect("reopen");
        assert_eq!(
            reopened
                .open(&sealed, b"request:7:id_number")
                .expect("open")
                .as_slice(),
            b"001203004567"
        );
        // Another installation's key does not open it.
        let other = SoftwareSealer::open_or_create(&dir.path().join("other")).expect("other");
        assert_eq!(
            other.open(&sealed, b"request:7:id_number"),
            Err(SealError::Unauthentic)
        );
    }

    #[test]
    fn a_sealing_key_others_may_read_or_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        SoftwareSealer::open_or_create(dir.path()).expect("create");
        let path = SoftwareSealer::key_path(dir.path());
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let e = SoftwareSealer::open_or_create(dir.path())
                .err()
                .expect("refused");
            assert!(
                matches!(&e, KeyError::Config(m) if m.contains(&format!("{mode:04o}")) && m.contains("chmod 600")),
                "{e}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::write(&path, [7u8; 31]).expect("truncate");
        let e = SoftwareSealer::open_or_create(dir.path())
            .err()
            .expect("refused");
        assert!(
            matches!(&e, KeyError::Config(m) if m.contains("32-byte")),
            "{e}"
        );
        // The broken file is never replaced by a new key: sealed data would be lost.
        assert_eq!(fs::read(&path).expect("read"), [7u8; 31]);
    }
}
