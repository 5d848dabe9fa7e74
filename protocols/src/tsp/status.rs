//! The response envelope of the time-stamp protocol: `TimeStampResp` and `PKIStatusInfo`
//! ([RFC 3161 §2.4.2](https://www.rfc-editor.org/rfc/rfc3161#section-2.4.2)).
//!
//! ```text
//! TimeStampResp ::= SEQUENCE  {
//!     status                  PKIStatusInfo,
//!     timeStampToken          TimeStampToken     OPTIONAL  }
//!
//! PKIStatusInfo ::= SEQUENCE {
//!     status        PKIStatus,
//!     statusString  PKIFreeText     OPTIONAL,
//!     failInfo      PKIFailureInfo  OPTIONAL  }
//!
//! PKIStatus ::= INTEGER {
//!     granted                (0),
//!     grantedWithMods        (1),
//!     rejection              (2),
//!     waiting                (3),
//!     revocationWarning      (4),
//!     revocationNotification (5) }
//!
//! PKIFailureInfo ::= BIT STRING {
//!     badAlg               (0),
//!     badRequest           (2),
//!     badDataFormat        (5),
//!     timeNotAvailable    (14),
//!     unacceptedPolicy    (15),
//!     unacceptedExtension (16),
//!     addInfoNotAvailable (17),
//!     systemFailure       (25) }
//!
//! PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String     -- RFC 4210 §5.1.1
//! ```
//!
//! Why not `x509_tsp::TimeStampResp`: it embeds `cmpv2` 0.2's `PkiFailureInfo`, a `FlagSet<u16>`
//! whose flag values are bit *positions* used as *masks* (`BadRequest = 2` encodes as bit 1,
//! `BadAlg = 0` encodes as nothing, `BadTime` duplicates `BadRequest`, and bits 16 and 25 do not
//! fit in a `u16`). Encoded through it, `unacceptedPolicy` would reach the client as
//! `badAlg|badMessageCheck|badRequest|badTime`. This file models the same production with the
//! failure bits as a DER named-bit `BIT STRING` built from the bit numbers above.

use der::asn1::BitString;
use der::{Enumerated, Sequence};
use x509_tsp::TimeStampToken;

/// `PKIStatus` (RFC 3161 §2.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enumerated)]
#[asn1(type = "INTEGER")]
#[repr(u8)]
pub enum PkiStatus {
    /// A token is present.
    Granted = 0,
    /// A token is present, with modifications the requester must check.
    GrantedWithMods = 1,
    /// No token; `failInfo` says why.
    Rejection = 2,
    /// The request has not been processed yet.
    Waiting = 3,
    /// A revocation is imminent.
    RevocationWarning = 4,
    /// A revocation has occurred.
    RevocationNotification = 5,
}

/// One `PKIFailureInfo` bit used by RFC 3161 (§2.4.2), by its bit number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FailureInfo {
    /// Unrecognized or unsupported algorithm identifier.
    BadAlg = 0,
    /// Transaction not permitted or supported.
    BadRequest = 2,
    /// The data submitted has the wrong format.
    BadDataFormat = 5,
    /// The TSA's time source is not available.
    TimeNotAvailable = 14,
    /// The requested TSA policy is not supported by the TSA.
    UnacceptedPolicy = 15,
    /// The requested extension is not supported by the TSA.
    UnacceptedExtension = 16,
    /// The additional information requested could not be understood or is not available.
    AddInfoNotAvailable = 17,
    /// The request cannot be handled due to system failure.
    SystemFailure = 25,
}

impl FailureInfo {
    /// Every RFC 3161 failure bit, in bit order.
    pub const ALL: [FailureInfo; 8] = [
        Self::BadAlg,
        Self::BadRequest,
        Self::BadDataFormat,
        Self::TimeNotAvailable,
        Self::UnacceptedPolicy,
        Self::UnacceptedExtension,
        Self::AddInfoNotAvailable,
        Self::SystemFailure,
    ];

    /// The bit number in the `PKIFailureInfo` BIT STRING.
    pub fn bit(self) -> u8 {
        self as u8
    }

    /// The RFC's name for the bit (`badAlg`, `unacceptedPolicy`, …): metric label and log field.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadAlg => "badAlg",
            Self::BadRequest => "badRequest",
            Self::BadDataFormat => "badDataFormat",
            Self::TimeNotAvailable => "timeNotAvailable",
            Self::UnacceptedPolicy => "unacceptedPolicy",
            Self::UnacceptedExtension => "unacceptedExtension",
            Self::AddInfoNotAvailable => "addInfoNotAvailable",
            Self::SystemFailure => "systemFailure",
        }
    }

    /// The DER `BIT STRING` with only this bit set. X.690 §11.2.2: trailing zero bits of a
    /// named-bit list are removed, so the string ends at this bit.
    pub fn to_bit_string(self) -> Result<BitString, der::Error> {
        let bit = usize::from(self.bit());
        let mut bytes = vec![0u8; bit / 8 + 1];
        bytes[bit / 8] = 0x80 >> (bit % 8);
        BitString::new(7 - (bit % 8) as u8, bytes)
    }

    /// The RFC 3161 bits set in a `PKIFailureInfo` (other bits are ignored).
    pub fn from_bit_string(bits: &BitString) -> Vec<FailureInfo> {
        let set: Vec<bool> = bits.bits().collect();
        Self::ALL
            .into_iter()
            .filter(|f| set.get(usize::from(f.bit())).copied().unwrap_or(false))
            .collect()
    }
}

/// `PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String` (RFC 4210 §5.1.1).
pub type PkiFreeText = Vec<String>;

/// `PKIStatusInfo` (RFC 3161 §2.4.2).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct PkiStatusInfo {
    /// The status.
    pub status: PkiStatus,
    /// Human-readable reason, for logs on the client side.
    #[asn1(optional = "true")]
    pub status_string: Option<PkiFreeText>,
    /// Why the request was rejected.
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// `TimeStampResp` (RFC 3161 §2.4.2).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct TimeStampResp {
    /// The outcome.
    pub status: PkiStatusInfo,
    /// The token, when granted: a CMS `ContentInfo` holding `SignedData` over a `TSTInfo`.
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<TimeStampToken>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Encode};

    #[test]
    fn failure_bits_encode_as_minimal_named_bit_strings() {
        // Byte-exact against the RFC bit numbers (openssl prints these names for these bytes).
        let expect: [(FailureInfo, &[u8]); 4] = [
            (FailureInfo::BadAlg, &[0x03, 0x02, 0x07, 0x80]),
            (FailureInfo::BadRequest, &[0x03, 0x02, 0x05, 0x20]),
            (
                FailureInfo::UnacceptedPolicy,
                &[0x03, 0x03, 0x00, 0x00, 0x01],
            ),
            (
                FailureInfo::SystemFailure,
                &[0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40],
            ),
        ];
        for (f, der) in expect {
            assert_eq!(
                f.to_bit_string().expect("bits").to_der().expect("der"),
                der,
                "{}",
                f.name()
            );
        }
        for f in FailureInfo::ALL {
            let bits =
                BitString::from_der(&f.to_bit_string().expect("bits").to_der().expect("der"))
                    .expect("decode");
            assert_eq!(FailureInfo::from_bit_string(&bits), vec![f]);
        }
    }

    #[test]
    fn rejection_round_trips() {
        let resp = TimeStampResp {
            status: PkiStatusInfo {
                status: PkiStatus::Rejection,
                status_string: Some(vec!["policy 1.2.3 is not accepted".into()]),
                fail_info: Some(FailureInfo::UnacceptedPolicy.to_bit_string().expect("bits")),
            },
            time_stamp_token: None,
        };
        let der = resp.to_der().expect("der");
        assert_eq!(TimeStampResp::from_der(&der).expect("decode"), resp);
    }
}
