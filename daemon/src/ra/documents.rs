//! Request documents (placeholder until the verifier lands).

/// Who signed a document.
#[derive(Clone, Debug)]
pub struct DocumentSigner {
    /// Serial, hex.
    pub serial_hex: String,
    /// Issuer DN.
    pub issuer: String,
    /// Subject DN.
    pub subject: String,
    /// SHA-256 of the certificate's DER.
    pub fingerprint: [u8; 32],
}

/// The verification result.
#[derive(Clone, Debug)]
pub struct DocumentVerdict {
    /// Valid evidence.
    pub valid: bool,
    /// Why not: code and text.
    pub problem: Option<(String, String)>,
    /// The signer.
    pub signer: Option<DocumentSigner>,
    /// The signing time relied on.
    pub signed_at: Option<u64>,
}

/// Verifies documents.
pub struct DocumentVerifier;

impl DocumentVerifier {
    /// Verifies.
    pub fn verify(&self, _content: &[u8], _sig: Option<&[u8]>, _now: u64) -> DocumentVerdict {
        DocumentVerdict {
            valid: false,
            problem: Some(("not-verified".into(), "not verified".into())),
            signer: None,
            signed_at: None,
        }
    }
}
