//! Sealing personal data (placeholder until the sealing key lands).

/// Sealing failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

/// Seals and opens small secrets under the data key.
pub trait DataSealer: Send + Sync {
    /// Seals.
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Opens.
    fn open(&self, sealed: &[u8], context: &[u8])
        -> Result<zeroize::Zeroizing<Vec<u8>>, SealError>;
}
