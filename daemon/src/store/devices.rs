//! Key devices (USB tokens, PKI SIMs) the CA prepared for subscribers, and each one's history.
//!
//! ```text
//! device        token serial (C_GetTokenInfo) · model · manufacturer · label · organisation
//!               request · certificate serial · SO PIN sealed under the data key · state
//!               receiver · handed over at · returned at
//! device event  serial · at · actor · action (provisioned, handed-over, unlocked, returned,
//!               wiped) · detail
//!
//!  provisioned ──hand over──▶ handed-over ──take back──▶ returned ──wipe──▶ wiped
//!       └──────────────────────take back──────────────────▲            (re-provisionable)
//! ```
//!
//! Every change commits with its history event and its audit record in one transaction. The
//! user PIN is never stored; the SO PIN only sealed ([`so_pin_context`]), and erased on wipe.

use super::{AuditEntry, StoreError};

/// Where a device is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Key pair and certificate on the device, recorded; still at the CA.
    Provisioned,
    /// Given to the organisation's receiver.
    HandedOver,
    /// Taken back (certificate expired or revoked).
    Returned,
    /// Re-initialised for reuse: no key, no certificate, no escrowed SO PIN.
    Wiped,
}

impl DeviceState {
    /// `provisioned`, `handed-over`, `returned` or `wiped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioned => "provisioned",
            Self::HandedOver => "handed-over",
            Self::Returned => "returned",
            Self::Wiped => "wiped",
        }
    }

    /// Parses [`DeviceState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "provisioned" => Some(Self::Provisioned),
            "handed-over" => Some(Self::HandedOver),
            "returned" => Some(Self::Returned),
            "wiped" => Some(Self::Wiped),
            _ => None,
        }
    }

    /// Whether the device is out in service (a subscriber's key is on it).
    pub fn in_service(self) -> bool {
        matches!(self, Self::Provisioned | Self::HandedOver)
    }
}

/// One key device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The token's serial number (`C_GetTokenInfo`), trimmed.
    pub serial: String,
    /// The token's model.
    pub model: String,
    /// The token's manufacturer.
    pub manufacturer: String,
    /// The token's label (kept as the factory or the pool set it).
    pub label: String,
    /// The organisation the subscriber belongs to.
    pub organisation: String,
    /// The `issue` request it was provisioned for.
    pub request: i64,
    /// The serial (hex) of the certificate on it.
    pub certificate: String,
    /// The SO PIN, sealed under the data key with [`so_pin_context`]; `None` once wiped.
    pub so_pin_sealed: Option<Vec<u8>>,
    /// Where it is.
    pub state: DeviceState,
    /// Who received it (hand-over).
    pub receiver: Option<String>,
    /// When it was handed over, Unix seconds.
    pub handed_over_at: Option<u64>,
    /// When it was taken back, Unix seconds.
    pub returned_at: Option<u64>,
    /// When it was provisioned (this time), Unix seconds.
    pub provisioned_at: u64,
    /// Last change, Unix seconds.
    pub updated_at: u64,
}

/// One step of a device's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEvent {
    /// Unix seconds.
    pub at: u64,
    /// Who.
    pub actor: String,
    /// `provisioned`, `handed-over`, `unlocked`, `returned`, `wiped`.
    pub action: String,
    /// What else is worth keeping (the request, the receiver, the reason). Never a PIN.
    pub detail: String,
}

/// The key-device role of the store.
pub trait KeyDevices: Send + Sync {
    /// Writes `device` if its row is in state `expected` (`None`: there must be no row, or a
    /// wiped one being provisioned again), with its history event and audit record, in one
    /// transaction. [`StoreError::Changed`] when the row is not in the expected state.
    fn put_device(
        &self,
        device: &DeviceRecord,
        expected: Option<DeviceState>,
        event: &DeviceEvent,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Puts a device back as it was before a provisioning that could not finish (`previous`:
    /// its wiped row, or `None` to remove it), with an audit record; its history keeps the
    /// event.
    fn restore_device(
        &self,
        serial: &str,
        previous: Option<&DeviceRecord>,
        event: &DeviceEvent,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// One device.
    fn device(&self, serial: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// The device holding certificate `serial`, if any.
    fn device_by_certificate(&self, serial: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// The device provisioned for request `id`, if any.
    fn device_by_request(&self, id: i64) -> Result<Option<DeviceRecord>, StoreError>;
    /// Devices of these organisations (`None`: every organisation), by serial.
    fn devices(&self, organisations: Option<&[String]>) -> Result<Vec<DeviceRecord>, StoreError>;
    /// A device's history, oldest first.
    fn device_history(&self, serial: &str) -> Result<Vec<DeviceEvent>, StoreError>;
    /// Stores a server-generated private key in escrow, sealed, with its audit record, in one
    /// transaction. [`StoreError::Changed`] when the certificate already has one.
    fn put_escrowed_key(&self, key: &EscrowedKey, audit: &AuditEntry) -> Result<(), StoreError>;
    /// The escrowed key of certificate `serial`, if it has one.
    fn escrowed_key(&self, serial: &str) -> Result<Option<EscrowedKey>, StoreError>;
    /// Records that the escrowed key of certificate `serial` was released at `at`, with the
    /// audit record, in one transaction.
    fn record_key_release(
        &self,
        serial: &str,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
}

/// A private key pkid generated (EST `serverkeygen` on a label with `escrow = true`) and keeps
/// sealed under the data key, so that a lost key can be recovered through an approved RA
/// `recover` request. Never for a profile whose keys sign with non-repudiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscrowedKey {
    /// The certificate's serial (hex): the key is its subject's.
    pub certificate: String,
    /// The organisation the subscriber belongs to.
    pub organisation: String,
    /// Where the key was made (`est:<label>`).
    pub origin: String,
    /// The PKCS#8 private key, sealed with [`escrow_context`].
    pub sealed: Vec<u8>,
    /// When it was escrowed, Unix seconds.
    pub escrowed_at: u64,
    /// How many times it was released.
    pub releases: u32,
    /// The last release, Unix seconds.
    pub last_released_at: Option<u64>,
}

/// The context an escrowed key is sealed under: bound to its certificate's serial, so a sealed
/// key copied to another certificate's row does not open.
pub fn escrow_context(serial: &str) -> String {
    format!("certificate:{serial}:escrowed-key")
}

/// The context a device's SO PIN is sealed under: bound to the token's serial, so a sealed PIN
/// copied to another device's row does not open.
pub fn so_pin_context(serial: &str) -> String {
    format!("device:{serial}:so-pin")
}
