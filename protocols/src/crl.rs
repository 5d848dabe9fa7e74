//! Certificate revocation lists (RFC 5280 §5): build, lint, sign, verify, encode.
//!
//! ```text
//! CrlParams ──CrlBuilder::new──▶ (lint params, encode prefix + extensions once)
//! RevokedEntry… ──push──▶ (lint entry, encode it straight into one pre-sized buffer)
//! ──finish──▶ UnsignedCrl (headers placed in front of the entries, no copy; SHA-2 once)
//!   daemon: signer signs UnsignedCrl::digest (its sign_digest)
//! ──into_signed──▶ verify with the issuer key against the same digest ─▶ SignedCrl (DER)
//! ```
//!
//! A CRL with a million entries is ~50 MB, so encoding cost matters: every entry is encoded by
//! the `der` crate's encoders (ref types, no allocation) directly into one buffer whose size is
//! known or estimated up front, and the tag/length headers that depend on the total size are
//! written *after* the entries into space reserved in front of them, so nothing is moved. The
//! message is hashed once, by [`CrlBuilder::finish`]; that digest is both what the daemon's key
//! signs ([`Unsigned::digest`]) and what [`Unsigned::into_signed`] checks the signature against
//! before anything is published.
//!
//! Entries must arrive in strictly ascending serial number order (numeric: shorter magnitudes
//! first, then the bytes — the order OpenSSL's `X509_CRL_sort` gives); the lint then detects
//! duplicates in O(1) per entry, the CRL bytes are deterministic for given inputs, and for the
//! same content they are the bytes `openssl ca -gencrl` signs (see `testdata/crl/`).
//!
//! ```text
//! TBSCertList  ::=  SEQUENCE  {
//!      version                 Version OPTIONAL, -- if present, MUST be v2
//!      signature               AlgorithmIdentifier,
//!      issuer                  Name,
//!      thisUpdate              Time,
//!      nextUpdate              Time OPTIONAL,
//!      revokedCertificates     SEQUENCE OF SEQUENCE  {
//!           userCertificate         CertificateSerialNumber,
//!           revocationDate          Time,
//!           crlEntryExtensions      Extensions OPTIONAL }  OPTIONAL,
//!      crlExtensions           [0]  EXPLICIT Extensions OPTIONAL }
//! ```

use crate::algorithm::{self, SignatureAlgorithm};
use crate::time::{generalized_time, x509_time};
use crate::unsigned::Unsigned;
use crate::x509::IssuerInfo;
use const_oid::db::rfc5280 as oids;
use const_oid::AssociatedOid;
use der::asn1::{
    BitStringRef, ContextSpecificRef, Ia5String, ObjectIdentifier, OctetString, OctetStringRef,
    SequenceOf, UintRef,
};
use der::{Decode, Encode, Header, Length, Sequence, SliceWriter, Tag, TagMode, TagNumber};
use spki::SubjectPublicKeyInfoOwned;
use std::ops::Range;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BaseCrlNumber, CrlNumber, CrlReason, FreshestCrl,
    IssuingDistributionPoint,
};
use x509_cert::ext::Extension;
use x509_cert::time::Time;
use x509_cert::Version;

/// Hex digit values; 0xff for anything that is not a hex digit.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Largest serial number content, in octets (RFC 5280 §4.1.2.2).
pub const MAX_SERIAL_OCTETS: usize = 20;
/// Largest CRL the `der` crate can encode: its `Length` stops at 256 MiB. At ~50 bytes an
/// entry that is about five million entries; partition (`[crl] shards`) long before that.
pub const MAX_CRL_BYTES: usize = 0x0FFF_FFFF;
/// Room reserved in front of a TBS for one tag-length header (tag, 0x84, four length octets).
const MAX_HEADER: usize = 6;
/// Encoded size of a `reasonCode` entry extension (SEQUENCE { OID, OCTET STRING { ENUMERATED } }).
const REASON_EXTENSION_LEN: usize = 2 + 5 + 2 + 3;
/// Encoded size of an `invalidityDate` entry extension (… OCTET STRING { GeneralizedTime }).
const INVALIDITY_EXTENSION_LEN: usize = 2 + 5 + 2 + 17;

/// A certificate serial number as a CRL lists it: the positive INTEGER's magnitude, stored
/// inline (no allocation per entry).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrlSerial {
    len: u8,
    bytes: [u8; MAX_SERIAL_OCTETS],
}

impl CrlSerial {
    /// A serial from its big-endian magnitude. Leading zero octets are dropped; zero, and
    /// serials whose DER content would exceed 20 octets, are refused.
    pub fn from_magnitude(magnitude: &[u8]) -> Result<Self, CrlError> {
        let first = magnitude
            .iter()
            .position(|b| *b != 0)
            .ok_or(CrlError::Lint("serial number zero".into()))?;
        let m = &magnitude[first..];
        // DER adds a 0x00 octet when the top bit is set; the content must stay within 20.
        let content = m.len() + usize::from(m[0] & 0x80 != 0);
        if content > MAX_SERIAL_OCTETS {
            return Err(CrlError::Lint(format!(
                "serial number of {content} octets (at most {MAX_SERIAL_OCTETS})"
            )));
        }
        let mut bytes = [0u8; MAX_SERIAL_OCTETS];
        bytes[..m.len()].copy_from_slice(m);
        Ok(Self {
            len: m.len() as u8,
            bytes,
        })
    }

    /// A serial from the store's canonical hex (see [`crate::serial::to_hex`]), either case.
    pub fn from_hex(hex_serial: &str) -> Result<Self, CrlError> {
        let bad = || {
            CrlError::Lint(format!(
                "serial {hex_serial:?} is not hex of at most 20 octets"
            ))
        };
        let digits = hex_serial.as_bytes();
        let mut buf = [0u8; MAX_SERIAL_OCTETS + 1];
        let n = digits.len() / 2;
        if digits.len() % 2 != 0 || n > buf.len() {
            return Err(bad());
        }
        // A million serials per CRL: a table lookup per digit rather than a general decoder.
        for (out, pair) in buf.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
            if (hi | lo) & 0xf0 != 0 {
                return Err(bad());
            }
            *out = (hi << 4) | lo;
        }
        Self::from_magnitude(&buf[..n])
    }

    /// The big-endian magnitude, without leading zeros.
    pub fn magnitude(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lower-case hex of the magnitude (the store's canonical form).
    pub fn to_hex(&self) -> String {
        hex::encode(self.magnitude())
    }

    /// A key ordering serials numerically, as OpenSSL sorts a CRL (`X509_CRL_sort`): shorter
    /// magnitudes first, then the bytes; compared without a call to `memcmp`.
    fn order_key(&self) -> (u8, u128, u32) {
        let mut hi = [0u8; 16];
        hi.copy_from_slice(&self.bytes[..16]);
        let mut lo = [0u8; 4];
        lo.copy_from_slice(&self.bytes[16..]);
        (self.len, u128::from_be_bytes(hi), u32::from_be_bytes(lo))
    }

    fn uint(&self) -> Result<UintRef<'_>, CrlError> {
        UintRef::new(self.magnitude()).map_err(enc)
    }
}

impl std::fmt::Debug for CrlSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CrlSerial({})", self.to_hex())
    }
}

/// One `revokedCertificates` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The revoked (or held, or released) certificate.
    pub serial: CrlSerial,
    /// revocationDate, Unix seconds.
    pub revoked_at: u64,
    /// The reasonCode entry extension. `None` and `Some(Unspecified)` both omit it (RFC 5280
    /// §5.3.1: "SHOULD be absent instead of using the unspecified (0) reasonCode value").
    /// `CertificateHold` lists a suspended certificate; `RemoveFromCRL` is for delta CRLs only.
    pub reason: Option<CrlReason>,
    /// The invalidityDate entry extension, Unix seconds (RFC 5280 §5.3.2).
    pub invalidity_date: Option<u64>,
}

impl RevokedEntry {
    /// Upper bound of this entry's encoded size (exact but for the time type and sign octet).
    pub fn max_encoded_len(&self) -> usize {
        let mut len = 2 + 2 + MAX_SERIAL_OCTETS.min(usize::from(self.serial.len) + 1) + 17;
        let reason = matches!(self.reason, Some(r) if r != CrlReason::Unspecified);
        if reason || self.invalidity_date.is_some() {
            len += 2;
        }
        if reason {
            len += REASON_EXTENSION_LEN;
        }
        if self.invalidity_date.is_some() {
            len += INVALIDITY_EXTENSION_LEN;
        }
        len
    }
}

/// Which kind of CRL, and the base a delta extends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlKind {
    /// A complete CRL for its scope.
    Full,
    /// A delta CRL (RFC 5280 §5.2.4): the changes since the complete CRL numbered `base_number`.
    Delta {
        /// The CRL number of the complete CRL this delta updates (deltaCRLIndicator).
        base_number: u64,
    },
}

/// What the CRL says about itself.
#[derive(Clone, Copy, Debug)]
pub struct CrlParams<'a> {
    /// The CA whose CRL this is: its subject becomes the CRL issuer, its subject key
    /// identifier the authorityKeyIdentifier.
    pub issuer: &'a IssuerInfo,
    /// The signing key's algorithm.
    pub algorithm: SignatureAlgorithm,
    /// The issuer's public key: the signature is checked against it before the CRL is released.
    pub issuer_key: &'a SubjectPublicKeyInfoOwned,
    /// cRLNumber: strictly increasing per issuer and scope, shared by full and delta CRLs
    /// (RFC 5280 §5.2.3).
    pub number: u64,
    /// thisUpdate, Unix seconds (the caller's "now").
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
    /// Full or delta.
    pub kind: CrlKind,
    /// For a partitioned scope, the URL certificates in it carry as their CRL distribution
    /// point; written as the critical issuingDistributionPoint (RFC 5280 §5.2.5).
    pub distribution_point: Option<&'a str>,
    /// For a complete CRL when deltas are published: where (freshestCRL, RFC 5280 §5.2.6).
    pub freshest_crl: Option<&'a str>,
}

/// Why a CRL could not be built or signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlError {
    /// An encoding step failed (a value out of its ASN.1 range, the 256 MiB ceiling).
    #[error("encoding: {0}")]
    Encoding(String),
    /// The CRL or an entry breaks RFC 5280 or our profile; the key was not used.
    #[error("lint: {0}")]
    Lint(String),
    /// The key backend is temporarily unable to sign (token removed, session lost): retry.
    #[error("key backend unavailable: {0}")]
    SignerUnavailable(String),
    /// The key backend refused to sign (key missing, mechanism refused).
    #[error("signing failed: {0}")]
    SignerFailed(String),
    /// The signature does not verify with the issuer's public key.
    #[error(
        "the key backend produced a CRL signature that does not verify; nothing was published"
    )]
    BadSignature,
}

fn enc(e: der::Error) -> CrlError {
    CrlError::Encoding(e.to_string())
}

fn lint(msg: impl Into<String>) -> CrlError {
    CrlError::Lint(msg.into())
}

/// `Extension` with a borrowed value, so an entry's extensions cost no allocation.
///
/// ```text
/// Extension  ::=  SEQUENCE  {
///      extnID      OBJECT IDENTIFIER,
///      critical    BOOLEAN DEFAULT FALSE,
///      extnValue   OCTET STRING }
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq, Sequence)]
struct ExtensionRef<'a> {
    extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    critical: bool,
    extn_value: OctetStringRef<'a>,
}

/// One `revokedCertificates` element with borrowed parts (RFC 5280 §5.1, quoted above).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EntryRef<'a> {
    user_certificate: UintRef<'a>,
    revocation_date: Time,
    crl_entry_extensions: Option<SequenceOf<ExtensionRef<'a>, 2>>,
}

/// First second (Unix time) a certificate/CRL time is a GeneralizedTime: 2050-01-01T00:00:00Z.
const GENERALIZED_TIME_FROM: u64 = 2_524_608_000;
/// Largest encoded entry: header 2, serial 2+20, time 2+15, extensions 2 + 12 + 26 = 81.
const MAX_ENTRY: usize = 96;
/// Entry shapes: magnitude length (20) × sign octet (2) × time type (2) × reason (none + 11
/// codes) × invalidityDate (2).
const TEMPLATE_SLOTS: usize = 20 * 2 * 2 * 12 * 2;
/// Days whose calendar digits are remembered (direct-mapped; a year of revocations fits).
const DAY_SLOTS: usize = 4096;

/// The calendar part of a day as the crate encodes it at midnight: `YYMMDD` (UTCTime, years
/// before 2050) and `YYYYMMDD` (GeneralizedTime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DayDigits {
    day: u64,
    utc: Option<[u8; 6]>,
    generalized: [u8; 8],
}

impl DayDigits {
    /// An empty cache slot (no day is `u64::MAX`).
    const EMPTY: Self = Self {
        day: u64::MAX,
        utc: None,
        generalized: [0; 8],
    };

    fn of(day: u64) -> Result<Self, CrlError> {
        let midnight = day
            .checked_mul(86_400)
            .ok_or_else(|| CrlError::Encoding("time out of range".into()))?;
        let mut out = [0u8; 17];
        let g = generalized_time(midnight)
            .map_err(enc)?
            .encode_to_slice(&mut out)
            .map_err(enc)?;
        let mut generalized = [0u8; 8];
        generalized.copy_from_slice(
            g.get(2..10)
                .ok_or_else(|| CrlError::Encoding("GeneralizedTime".into()))?,
        );
        let utc = if midnight < GENERALIZED_TIME_FROM {
            let u =
                der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(midnight))
                    .map_err(enc)?
                    .encode_to_slice(&mut out)
                    .map_err(enc)?;
            let mut d = [0u8; 6];
            d.copy_from_slice(
                u.get(2..8)
                    .ok_or_else(|| CrlError::Encoding("UTCTime".into()))?,
            );
            Some(d)
        } else {
            None
        };
        Ok(Self {
            day,
            utc,
            generalized,
        })
    }
}

/// One instant's digits: the day's (from the crate) and `HHMMSS`.
#[derive(Clone, Copy, Debug)]
struct InstantDigits {
    day: DayDigits,
    hms: [u8; 6],
}

fn hms(unix: u64) -> [u8; 6] {
    let s = unix % 86_400;
    let (h, m, sec) = ((s / 3600) as u8, ((s / 60) % 60) as u8, (s % 60) as u8);
    [
        b'0' + h / 10,
        b'0' + h % 10,
        b'0' + m / 10,
        b'0' + m % 10,
        b'0' + sec / 10,
        b'0' + sec % 10,
    ]
}

/// A `revokedCertificates` element of one shape, encoded by the `der` crate, and where its
/// variable content octets sit. An entry is this template with the serial's magnitude and the
/// times' digits copied in: same lengths, so every tag and length is the crate's. Each template
/// is checked when made: patched with a second sample it must equal the crate's encoding of
/// that sample.
#[derive(Clone, Copy, Debug)]
struct Template {
    bytes: [u8; MAX_ENTRY],
    len: u8,
    serial_at: u8,
    serial_len: u8,
    time_at: u8,
    utc: bool,
    /// Offset of the invalidityDate GeneralizedTime digits, if the shape has one.
    invalidity_at: Option<u8>,
}

/// Crate encoding of one entry (the reference the templates are made and checked from).
fn encode_entry(
    reasons: &[Option<[u8; 3]>; 11],
    serial: &CrlSerial,
    revoked_at: u64,
    reason: Option<CrlReason>,
    invalidity_date: Option<u64>,
) -> Result<([u8; MAX_ENTRY], usize), CrlError> {
    let mut inv_der = [0u8; 17];
    let mut exts = SequenceOf::<ExtensionRef<'_>, 2>::new();
    if let Some(r) = reason {
        let value = reasons
            .get(usize::from(r as u8))
            .and_then(|v| v.as_ref())
            .ok_or_else(|| lint("unknown reason code"))?;
        exts.add(ExtensionRef {
            extn_id: oids::ID_CE_CRL_REASONS,
            critical: false,
            extn_value: OctetStringRef::new(value).map_err(enc)?,
        })
        .map_err(enc)?;
    }
    if let Some(inv) = invalidity_date {
        let der = generalized_time(inv)
            .map_err(enc)?
            .encode_to_slice(&mut inv_der)
            .map_err(enc)?;
        exts.add(ExtensionRef {
            extn_id: oids::ID_CE_INVALIDITY_DATE,
            critical: false,
            extn_value: OctetStringRef::new(der).map_err(enc)?,
        })
        .map_err(enc)?;
    }
    let e = EntryRef {
        user_certificate: serial.uint()?,
        revocation_date: x509_time(revoked_at).map_err(enc)?,
        crl_entry_extensions: if reason.is_some() || invalidity_date.is_some() {
            Some(exts)
        } else {
            None
        },
    };
    let mut out = [0u8; MAX_ENTRY];
    let len = e.encode_to_slice(&mut out).map_err(enc)?.len();
    Ok((out, len))
}

fn instant_digits(unix: u64) -> Result<InstantDigits, CrlError> {
    Ok(InstantDigits {
        day: DayDigits::of(unix / 86_400)?,
        hms: hms(unix),
    })
}

impl Template {
    fn new(
        reasons: &[Option<[u8; 3]>; 11],
        mag_len: usize,
        sign: bool,
        utc: bool,
        reason: Option<CrlReason>,
        invalidity: bool,
    ) -> Result<Self, CrlError> {
        let sample = |first: u8, fill: u8| -> Result<CrlSerial, CrlError> {
            let mut m = [fill; MAX_SERIAL_OCTETS];
            m[0] = if sign { 0x80 | first } else { first & 0x7f };
            CrlSerial::from_magnitude(&m[..mag_len])
        };
        let (t_a, t_b) = if utc {
            (1_600_000_000, 1_709_251_199)
        } else {
            (2_600_000_000, 2_709_251_199)
        };
        let (i_a, i_b) = (1_500_000_000, 1_456_790_399);
        let serial_a = sample(0x01, 0x5a)?;
        let (bytes, len) =
            encode_entry(reasons, &serial_a, t_a, reason, invalidity.then_some(i_a))?;
        let encoded = &bytes[..len];
        // Find the content octets by reading the crate's own headers back.
        let mut r = der::SliceReader::new(encoded).map_err(enc)?;
        Header::decode(&mut r).map_err(enc)?;
        let int = Header::decode(&mut r).map_err(enc)?;
        let int_at = usize::try_from(der::Reader::position(&r)).map_err(enc)?;
        let int_len = usize::try_from(int.length).map_err(enc)?;
        der::Reader::read_slice(&mut r, int.length).map_err(enc)?;
        Header::decode(&mut r).map_err(enc)?;
        let time_at = usize::try_from(der::Reader::position(&r)).map_err(enc)?;
        let small = |v: usize| {
            u8::try_from(v).map_err(|_| CrlError::Encoding("entry template offset".into()))
        };
        let t = Template {
            bytes,
            len: small(len)?,
            serial_at: small(int_at + int_len - mag_len)?,
            serial_len: small(mag_len)?,
            time_at: small(time_at)?,
            utc,
            invalidity_at: if invalidity {
                Some(small(len - 15)?)
            } else {
                None
            },
        };
        let serial_b = sample(0x7e, 0xa5)?;
        let (want, want_len) =
            encode_entry(reasons, &serial_b, t_b, reason, invalidity.then_some(i_b))?;
        let mut got = t.bytes;
        let inv_b = if invalidity {
            Some(instant_digits(i_b)?)
        } else {
            None
        };
        t.patch(
            &mut got[..len],
            serial_b.magnitude(),
            &instant_digits(t_b)?,
            inv_b.as_ref(),
        );
        if want_len != len || got[..len] != want[..len] {
            return Err(CrlError::Encoding(
                "entry template failed its self-check against the der encoder".into(),
            ));
        }
        Ok(t)
    }

    /// Copies one entry's variable content into a copy of the template.
    #[inline]
    fn patch(
        &self,
        out: &mut [u8],
        magnitude: &[u8],
        revoked: &InstantDigits,
        invalidity: Option<&InstantDigits>,
    ) {
        let s = usize::from(self.serial_at);
        // The shape (and so the template) was chosen by the magnitude's length.
        match usize::from(self.serial_len) {
            // pkid's own serials: a fixed-size copy the compiler inlines.
            16 => out[s..s + 16].copy_from_slice(&magnitude[..16]),
            n => out[s..s + n].copy_from_slice(&magnitude[..n]),
        }
        let t = usize::from(self.time_at);
        match (self.utc, revoked.day.utc) {
            (true, Some(day)) => {
                out[t..t + 6].copy_from_slice(&day);
                out[t + 6..t + 12].copy_from_slice(&revoked.hms);
            }
            _ => {
                out[t..t + 8].copy_from_slice(&revoked.day.generalized);
                out[t + 8..t + 14].copy_from_slice(&revoked.hms);
            }
        }
        if let (Some(at), Some(inv)) = (self.invalidity_at, invalidity) {
            let i = usize::from(at);
            out[i..i + 8].copy_from_slice(&inv.day.generalized);
            out[i + 8..i + 14].copy_from_slice(&inv.hms);
        }
    }
}

/// A CRL being built: entries are linted and encoded as they are pushed.
pub struct CrlBuilder {
    /// `[reserved headers | prefix][entries …]`; the prefix is placed at `finish`.
    buf: Vec<u8>,
    /// version, signature, issuer, thisUpdate, nextUpdate (crate-encoded once).
    prefix: Vec<u8>,
    /// `[0] EXPLICIT Extensions` (crate-encoded once).
    extensions: Vec<u8>,
    /// Where the first entry starts.
    entries_start: usize,
    entries: usize,
    /// Order key of the last serial pushed (see [`CrlSerial`]'s `order_key`).
    last: Option<(u8, u128, u32)>,
    this_update: u64,
    delta: bool,
    algorithm: SignatureAlgorithm,
    issuer_key: SubjectPublicKeyInfoOwned,
    /// DER of each reasonCode value (ENUMERATED), by code, encoded once by the crate.
    reasons: [Option<[u8; 3]>; 11],
    /// Crate-encoded entry templates, one per shape, made on first use.
    templates: Vec<Option<Template>>,
    /// Calendar digits of recently seen days, direct-mapped by day number.
    days: Vec<DayDigits>,
}

fn extension<T: AssociatedOid + Encode>(value: &T, critical: bool) -> Result<Extension, CrlError> {
    extension_with_oid(T::OID, value, critical)
}

fn extension_with_oid<T: Encode>(
    oid: ObjectIdentifier,
    value: &T,
    critical: bool,
) -> Result<Extension, CrlError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(enc)?).map_err(enc)?,
    })
}

fn uri_point(url: &str) -> Result<DistributionPointName, CrlError> {
    let uri = Ia5String::new(url).map_err(|_| lint(format!("URL {url:?} is not IA5 (ASCII)")))?;
    Ok(DistributionPointName::FullName(vec![
        GeneralName::UniformResourceIdentifier(uri),
    ]))
}

fn number_uint(n: u64) -> Result<der::asn1::Uint, CrlError> {
    der::asn1::Uint::new(&n.to_be_bytes()).map_err(enc)
}

/// Writes a tag-length header into a small stack buffer.
fn header(tag: Tag, len: usize) -> Result<([u8; MAX_HEADER], usize), CrlError> {
    if len > MAX_CRL_BYTES {
        return Err(CrlError::Encoding(format!(
            "{len} bytes is over the {MAX_CRL_BYTES}-byte DER ceiling; partition the CRL"
        )));
    }
    let mut out = [0u8; MAX_HEADER];
    let mut w = SliceWriter::new(&mut out);
    Header::new(tag, Length::try_from(len).map_err(enc)?)
        .map_err(enc)?
        .encode(&mut w)
        .map_err(enc)?;
    let n = w.finish().map_err(enc)?.len();
    Ok((out, n))
}

impl CrlBuilder {
    /// Starts a CRL: checks the parameters and encodes everything but the entries.
    /// `capacity` is the expected encoded size of all entries (see
    /// [`RevokedEntry::max_encoded_len`]); an underestimate only costs a reallocation.
    pub fn new(params: &CrlParams<'_>, capacity: usize) -> Result<Self, CrlError> {
        Self::with_buffer(params, capacity, Vec::new())
    }

    /// [`CrlBuilder::new`] writing into `buffer` (its contents are discarded), e.g. the buffer
    /// of a CRL that is no longer served: its memory is already mapped, so the new CRL does not
    /// pay a page fault per 4 KiB written.
    pub fn with_buffer(
        params: &CrlParams<'_>,
        capacity: usize,
        mut buffer: Vec<u8>,
    ) -> Result<Self, CrlError> {
        if params.next_update <= params.this_update {
            return Err(lint("nextUpdate must be after thisUpdate"));
        }
        if params.issuer.name.0.is_empty() {
            return Err(lint("the CRL issuer name is empty"));
        }
        if params.issuer.key_identifier.is_empty() {
            return Err(lint(
                "the issuer has no key identifier for authorityKeyIdentifier",
            ));
        }
        let delta = match params.kind {
            CrlKind::Full => false,
            CrlKind::Delta { base_number } => {
                if base_number >= params.number {
                    return Err(lint(format!(
                        "delta CRL number {} must exceed its base {base_number}",
                        params.number
                    )));
                }
                if params.freshest_crl.is_some() {
                    return Err(lint(
                        "freshestCRL must not appear in a delta CRL (RFC 5280 §5.2.6)",
                    ));
                }
                true
            }
        };
        let mut prefix = Vec::with_capacity(256);
        Version::V2.encode(&mut prefix).map_err(enc)?;
        params
            .algorithm
            .identifier()
            .encode(&mut prefix)
            .map_err(enc)?;
        params.issuer.name.encode(&mut prefix).map_err(enc)?;
        x509_time(params.this_update)
            .map_err(enc)?
            .encode(&mut prefix)
            .map_err(enc)?;
        x509_time(params.next_update)
            .map_err(enc)?
            .encode(&mut prefix)
            .map_err(enc)?;

        let mut exts = vec![
            extension(
                &AuthorityKeyIdentifier {
                    key_identifier: Some(
                        OctetString::new(params.issuer.key_identifier.clone()).map_err(enc)?,
                    ),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
                false,
            )?,
            extension(&CrlNumber(number_uint(params.number)?), false)?,
        ];
        if let CrlKind::Delta { base_number } = params.kind {
            exts.push(extension(&BaseCrlNumber(number_uint(base_number)?), true)?);
        }
        if let Some(url) = params.distribution_point {
            let idp = IssuingDistributionPoint {
                distribution_point: Some(uri_point(url)?),
                only_contains_user_certs: false,
                only_contains_ca_certs: false,
                only_some_reasons: None,
                indirect_crl: false,
                only_contains_attribute_certs: false,
            };
            // x509-cert 0.2 gives IssuingDistributionPoint the wrong AssociatedOid
            // (id-pe-subjectInfoAccess); name id-ce-issuingDistributionPoint explicitly.
            exts.push(extension_with_oid(
                oids::ID_CE_ISSUING_DISTRIBUTION_POINT,
                &idp,
                true,
            )?);
        }
        if let Some(url) = params.freshest_crl {
            let dp = DistributionPoint {
                distribution_point: Some(uri_point(url)?),
                reasons: None,
                crl_issuer: None,
            };
            exts.push(extension(&FreshestCrl(vec![dp]), false)?);
        }
        let extensions = ContextSpecificRef {
            tag_number: TagNumber::N0,
            tag_mode: TagMode::Explicit,
            value: &exts,
        }
        .to_der()
        .map_err(enc)?;

        let mut reasons = [None; 11];
        for (code, slot) in reasons.iter_mut().enumerate() {
            if let Some(r) = reason_of(code as u8) {
                let mut out = [0u8; 3];
                let der = r.encode_to_slice(&mut out).map_err(enc)?;
                if der.len() != 3 {
                    return Err(CrlError::Encoding(
                        "reasonCode did not encode in three octets".into(),
                    ));
                }
                *slot = Some(out);
            }
        }
        let entries_start = 3 * MAX_HEADER + prefix.len();
        let total = entries_start
            .saturating_add(capacity)
            .saturating_add(extensions.len())
            .saturating_add(256);
        buffer.clear();
        buffer.reserve(total.min(MAX_CRL_BYTES + 1024));
        let mut buf = buffer;
        buf.resize(entries_start, 0);
        Ok(Self {
            buf,
            prefix,
            extensions,
            entries_start,
            entries: 0,
            last: None,
            this_update: params.this_update,
            delta,
            algorithm: params.algorithm,
            issuer_key: params.issuer_key.clone(),
            reasons,
            templates: vec![None; TEMPLATE_SLOTS],
            days: vec![DayDigits::EMPTY; DAY_SLOTS],
        })
    }

    /// Lints and encodes one entry. Entries must come in strictly ascending serial number order
    /// (see [`sort_entries`]).
    pub fn push(&mut self, entry: &RevokedEntry) -> Result<(), CrlError> {
        let key = entry.serial.order_key();
        if self.last.is_some_and(|last| key <= last) {
            return Err(lint(format!(
                "entries out of order or duplicated: {} after {} (ascending serial order is required)",
                entry.serial.to_hex(),
                self.last.map(hex_of_key).unwrap_or_default()
            )));
        }
        if entry.revoked_at > self.this_update {
            return Err(lint(format!(
                "serial {}: revocationDate is after thisUpdate",
                entry.serial.to_hex()
            )));
        }
        if let Some(inv) = entry.invalidity_date {
            if inv > entry.revoked_at {
                return Err(lint(format!(
                    "serial {}: invalidityDate is after revocationDate",
                    entry.serial.to_hex()
                )));
            }
        }
        let reason = match entry.reason {
            None | Some(CrlReason::Unspecified) => None,
            Some(CrlReason::RemoveFromCRL) if !self.delta => {
                return Err(lint(format!(
                    "serial {}: removeFromCRL appears only in delta CRLs",
                    entry.serial.to_hex()
                )));
            }
            Some(r) => Some(r),
        };
        let sign = usize::from(entry.serial.magnitude()[0] & 0x80 != 0);
        let mag_len = usize::from(entry.serial.len);
        let utc = entry.revoked_at < GENERALIZED_TIME_FROM;
        let reason_slot = reason.map_or(0, |r| 1 + usize::from(r as u8));
        let inv = entry.invalidity_date.is_some();
        let slot = ((((mag_len - 1) * 2 + sign) * 2 + usize::from(utc)) * 12 + reason_slot) * 2
            + usize::from(inv);
        let revoked = self.digits(entry.revoked_at)?;
        let invalidity = match entry.invalidity_date {
            Some(t) => Some(self.digits(t)?),
            None => None,
        };
        let cell = self
            .templates
            .get_mut(slot)
            .ok_or_else(|| CrlError::Encoding("entry shape out of range".into()))?;
        let template = match cell {
            Some(t) => t,
            None => cell.insert(Template::new(
                &self.reasons,
                mag_len,
                sign == 1,
                utc,
                reason,
                inv,
            )?),
        };
        let at = self.buf.len();
        let len = usize::from(template.len);
        // Copy the whole fixed-size template (an inlined copy, unlike a variable-length one)
        // and cut it to the entry's length.
        self.buf.extend_from_slice(&template.bytes);
        self.buf.truncate(at + len);
        template.patch(
            &mut self.buf[at..at + len],
            entry.serial.magnitude(),
            &revoked,
            invalidity.as_ref(),
        );
        if self.buf.len() > MAX_CRL_BYTES {
            return Err(CrlError::Encoding(format!(
                "the CRL is over the {MAX_CRL_BYTES}-byte DER ceiling; partition it"
            )));
        }
        self.last = Some(key);
        self.entries += 1;
        Ok(())
    }

    /// The digits of an instant, the day's part from the cache (filled by the crate).
    fn digits(&mut self, unix: u64) -> Result<InstantDigits, CrlError> {
        let day = unix / 86_400;
        let slot = (day % DAY_SLOTS as u64) as usize;
        let cached = match self.days.get(slot) {
            Some(d) if d.day == day => *d,
            _ => {
                let d = DayDigits::of(day)?;
                if let Some(s) = self.days.get_mut(slot) {
                    *s = d;
                }
                d
            }
        };
        Ok(InstantDigits {
            day: cached,
            hms: hms(unix),
        })
    }

    /// Makes room for `bytes` more of encoded entries (when their number becomes known after
    /// [`CrlBuilder::new`], e.g. from a database count).
    pub fn reserve(&mut self, bytes: usize) {
        let room = bytes
            .min(MAX_CRL_BYTES)
            .saturating_add(self.extensions.len() + 256);
        self.buf.reserve(room);
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Places the headers and prefix in front of the entries, appends the extensions and hashes
    /// the TBSCertList (once: the digest is signed and verified, never recomputed).
    pub fn finish(mut self) -> Result<UnsignedCrl, CrlError> {
        let entries_len = self.buf.len() - self.entries_start;
        self.buf.extend_from_slice(&self.extensions);
        // revokedCertificates MUST be absent when empty (RFC 5280 §5.1.2.6).
        let (rh, rh_len) = if self.entries > 0 {
            header(Tag::Sequence, entries_len)?
        } else {
            ([0; MAX_HEADER], 0)
        };
        let tbs_value_len = self.prefix.len() + rh_len + entries_len + self.extensions.len();
        let (th, th_len) = header(Tag::Sequence, tbs_value_len)?;
        let mut at = self.entries_start - rh_len;
        self.buf[at..self.entries_start].copy_from_slice(&rh[..rh_len]);
        at -= self.prefix.len();
        self.buf[at..at + self.prefix.len()].copy_from_slice(&self.prefix);
        at -= th_len;
        self.buf[at..at + th_len].copy_from_slice(&th[..th_len]);
        let tbs = at..self.buf.len();
        let digest = aws_lc_rs::digest::digest(self.algorithm.digest(), &self.buf[tbs.clone()]);
        Ok(UnsignedCrl {
            buf: self.buf,
            tbs,
            algorithm: self.algorithm,
            issuer_key: self.issuer_key,
            digest,
            entries: self.entries,
        })
    }
}

/// Hex of the serial an order key was made from (for error messages).
fn hex_of_key((len, hi, lo): (u8, u128, u32)) -> String {
    let mut bytes = [0u8; MAX_SERIAL_OCTETS];
    bytes[..16].copy_from_slice(&hi.to_be_bytes());
    bytes[16..].copy_from_slice(&lo.to_be_bytes());
    hex::encode(&bytes[..usize::from(len).min(MAX_SERIAL_OCTETS)])
}

fn reason_of(code: u8) -> Option<CrlReason> {
    Some(match code {
        0 => CrlReason::Unspecified,
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

/// A linted, encoded TBSCertList and its digest, waiting for the issuer's signature.
pub struct UnsignedCrl {
    buf: Vec<u8>,
    tbs: Range<usize>,
    algorithm: SignatureAlgorithm,
    issuer_key: SubjectPublicKeyInfoOwned,
    digest: aws_lc_rs::digest::Digest,
    entries: usize,
}

impl UnsignedCrl {
    /// The DER TBSCertList (the bytes that get signed).
    pub fn der(&self) -> &[u8] {
        &self.buf[self.tbs.clone()]
    }

    /// Number of revokedCertificates entries.
    pub fn entries(&self) -> usize {
        self.entries
    }
}

impl Unsigned for UnsignedCrl {
    type Signed = SignedCrl;
    type Error = CrlError;

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn message(&self) -> &[u8] {
        self.der()
    }

    /// Always computed: a CRL is up to ~50 MB, and hashing it twice would double the signing
    /// cost.
    fn digest(&self) -> Option<&aws_lc_rs::digest::Digest> {
        Some(&self.digest)
    }

    /// Verifies `signature` against the digest with the issuer's key, then appends
    /// signatureAlgorithm and signatureValue to the same buffer and places the outer header in
    /// the space reserved in front of the TBS.
    fn into_signed(mut self, signature: &[u8]) -> Result<SignedCrl, CrlError> {
        algorithm::verify_digest(&self.issuer_key, self.algorithm, &self.digest, signature)
            .map_err(|_| CrlError::BadSignature)?;
        self.algorithm
            .identifier()
            .encode(&mut self.buf)
            .map_err(enc)?;
        BitStringRef::from_bytes(signature)
            .map_err(enc)?
            .encode(&mut self.buf)
            .map_err(enc)?;
        let (h, h_len) = header(Tag::Sequence, self.buf.len() - self.tbs.start)?;
        let start = self
            .tbs
            .start
            .checked_sub(h_len)
            .ok_or_else(|| CrlError::Encoding("no room for the outer header".into()))?;
        self.buf[start..self.tbs.start].copy_from_slice(&h[..h_len]);
        Ok(SignedCrl {
            buf: self.buf,
            start,
            entries: self.entries,
        })
    }
}

/// A signed CRL. The DER is a suffix of the build buffer (headers were placed in front of the
/// entries without moving them); [`SignedCrl::into_parts`] hands both over without copying.
pub struct SignedCrl {
    buf: Vec<u8>,
    start: usize,
    entries: usize,
}

impl SignedCrl {
    /// The DER CertificateList.
    pub fn der(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Number of revokedCertificates entries.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The buffer and the offset the DER starts at (`&buf[start..]`), for zero-copy handover
    /// (e.g. `bytes::Bytes::from(buf).slice(start..)`).
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.buf, self.start)
    }
}

/// Builds and lints a CRL over `entries` (ascending serial order) in one call, ready to sign.
pub fn build(params: &CrlParams<'_>, entries: &[RevokedEntry]) -> Result<UnsignedCrl, CrlError> {
    let capacity = entries.iter().map(RevokedEntry::max_encoded_len).sum();
    let mut b = CrlBuilder::new(params, capacity)?;
    for e in entries {
        b.push(e)?;
    }
    b.finish()
}

/// Sorts entries into the order [`CrlBuilder::push`] requires.
pub fn sort_entries(entries: &mut [RevokedEntry]) {
    entries.sort_unstable_by_key(|e| e.serial.order_key());
}

/// PEM (`X509 CRL`, the label OpenSSL reads) of a DER CRL.
pub fn crl_pem(der: &[u8]) -> String {
    der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// Decodes a DER CRL (tests, the CLI, relying-party checks). Allocates per entry: not for
/// the hot path.
pub fn parse(der: &[u8]) -> Result<CertificateList, der::Error> {
    CertificateList::from_der(der)
}

/// The entries of a decoded CRL, as [`RevokedEntry`] values (reason code and invalidity date
/// read back; other entry extensions are ignored).
pub fn revoked_entries(crl: &CertificateList) -> Result<Vec<RevokedEntry>, CrlError> {
    let mut out = Vec::new();
    for r in crl
        .tbs_cert_list
        .revoked_certificates
        .as_deref()
        .unwrap_or_default()
    {
        let mut entry = RevokedEntry {
            serial: CrlSerial::from_magnitude(r.serial_number.as_bytes())?,
            revoked_at: crate::time::unix_of(&r.revocation_date),
            reason: None,
            invalidity_date: None,
        };
        for e in r.crl_entry_extensions.as_deref().unwrap_or_default() {
            if e.extn_id == oids::ID_CE_CRL_REASONS {
                entry.reason = Some(CrlReason::from_der(e.extn_value.as_bytes()).map_err(enc)?);
            } else if e.extn_id == oids::ID_CE_INVALIDITY_DATE {
                let t =
                    der::asn1::GeneralizedTime::from_der(e.extn_value.as_bytes()).map_err(enc)?;
                entry.invalidity_date = Some(t.to_unix_duration().as_secs());
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// The deltaCRLIndicator (base CRL number) of a decoded CRL, if it is a delta.
pub fn base_number_of(crl: &CertificateList) -> Option<u64> {
    let exts = crl.tbs_cert_list.crl_extensions.as_deref()?;
    let ext = exts
        .iter()
        .find(|e| e.extn_id == oids::ID_CE_DELTA_CRL_INDICATOR)?;
    uint_u64(
        BaseCrlNumber::from_der(ext.extn_value.as_bytes())
            .ok()?
            .0
            .as_bytes(),
    )
}

fn uint_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    let mut be = [0u8; 8];
    be[8 - bytes.len()..].copy_from_slice(bytes);
    Some(u64::from_be_bytes(be))
}

/// The cRLNumber of a decoded CRL.
pub fn number_of(crl: &CertificateList) -> Option<u64> {
    let exts = crl.tbs_cert_list.crl_extensions.as_deref()?;
    let ext = exts.iter().find(|e| e.extn_id == CrlNumber::OID)?;
    uint_u64(
        CrlNumber::from_der(ext.extn_value.as_bytes())
            .ok()?
            .0
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_key::{corrupt, TestKey};
    use x509_cert::ext::pkix::crl::dp::DistributionPoint as Dp;

    fn key() -> TestKey {
        TestKey::p256()
    }

    /// Builds, signs with `k` (its digest, as the daemon does) and assembles.
    fn build_and_sign(
        p: &CrlParams<'_>,
        entries: &[RevokedEntry],
        k: &TestKey,
    ) -> Result<SignedCrl, CrlError> {
        k.sign_into(build(p, entries)?)
    }

    fn issuer(k: &TestKey) -> IssuerInfo {
        IssuerInfo {
            name: crate::name::parse("CN=Test Issuing CA,O=pkid,C=VN").expect("name"),
            key_identifier: algorithm::key_identifier(&k.spki),
            ocsp_url: None,
            ca_issuers_url: None,
            crl_url: None,
            freshest_crl_url: None,
        }
    }

    const NOW: u64 = 1_800_000_000;

    fn params<'a>(i: &'a IssuerInfo, k: &'a TestKey) -> CrlParams<'a> {
        CrlParams {
            issuer: i,
            algorithm: SignatureAlgorithm::EcdsaSha256,
            issuer_key: &k.spki,
            number: 7,
            this_update: NOW,
            next_update: NOW + 86_400,
            kind: CrlKind::Full,
            distribution_point: None,
            freshest_crl: None,
        }
    }

    fn entry(serial: &[u8], reason: Option<CrlReason>) -> RevokedEntry {
        RevokedEntry {
            serial: CrlSerial::from_magnitude(serial).expect("serial"),
            revoked_at: NOW - 100,
            reason,
            invalidity_date: None,
        }
    }

    fn ext(exts: &Option<Vec<Extension>>, oid: ObjectIdentifier) -> Option<&Extension> {
        exts.as_ref()?.iter().find(|e| e.extn_id == oid)
    }

    #[test]
    fn full_crl_round_trips_through_x509_cert_and_verifies() {
        let k = key();
        let i = issuer(&k);
        let mut entries = vec![
            entry(&[0x80, 1], Some(CrlReason::KeyCompromise)),
            entry(&[0x05], None),
            entry(&[0x10, 0x20], Some(CrlReason::CertificateHold)),
            RevokedEntry {
                invalidity_date: Some(NOW - 5000),
                ..entry(&[0x7f; 16], Some(CrlReason::Unspecified))
            },
        ];
        sort_entries(&mut entries);
        let crl = build_and_sign(&params(&i, &k), &entries, &k).expect("crl");
        let der = crl.der().to_vec();
        let list = parse(&der).expect("decode");
        assert_eq!(
            list.to_der().expect("re-encode"),
            der,
            "byte-exact round trip"
        );
        let tbs = &list.tbs_cert_list;
        assert_eq!(tbs.version, Version::V2);
        assert_eq!(tbs.issuer, i.name);
        assert_eq!(number_of(&list), Some(7));
        let revoked = tbs.revoked_certificates.as_ref().expect("entries");
        assert_eq!(revoked.len(), 4);
        // Serial 0x80 0x01 needs a sign octet.
        let high = revoked
            .iter()
            .find(|r| r.serial_number.as_bytes() == [0, 0x80, 1])
            .expect("high serial");
        let reason = ext(&high.crl_entry_extensions, oids::ID_CE_CRL_REASONS).expect("reason");
        assert_eq!(
            CrlReason::from_der(reason.extn_value.as_bytes()).expect("reason"),
            CrlReason::KeyCompromise
        );
        let plain = revoked
            .iter()
            .find(|r| r.serial_number.as_bytes() == [5])
            .expect("plain");
        assert!(
            plain.crl_entry_extensions.is_none(),
            "no reason → no extensions"
        );
        let unspecified = revoked
            .iter()
            .find(|r| r.serial_number.as_bytes().len() == 16)
            .expect("unspecified");
        let exts = unspecified
            .crl_entry_extensions
            .as_ref()
            .expect("invalidity only");
        assert_eq!(exts.len(), 1);
        assert_eq!(exts[0].extn_id, oids::ID_CE_INVALIDITY_DATE);
        let inv =
            der::asn1::GeneralizedTime::from_der(exts[0].extn_value.as_bytes()).expect("time");
        assert_eq!(inv.to_unix_duration().as_secs(), NOW - 5000);
        let crl_exts = tbs.crl_extensions.as_ref().expect("extensions");
        let aki = AuthorityKeyIdentifier::from_der(crl_exts[0].extn_value.as_bytes()).expect("aki");
        assert_eq!(
            aki.key_identifier.expect("kid").as_bytes(),
            i.key_identifier.as_slice()
        );
        assert!(ext(&tbs.crl_extensions, oids::ID_CE_ISSUING_DISTRIBUTION_POINT).is_none());
        let tbs_der = tbs.to_der().expect("tbs");
        algorithm::verify(
            &k.spki,
            &list.signature_algorithm,
            &tbs_der,
            list.signature.raw_bytes(),
        )
        .expect("signature verifies");
    }

    #[test]
    fn empty_crl_omits_revoked_certificates() {
        let k = key();
        let i = issuer(&k);
        let crl = build_and_sign(&params(&i, &k), &[], &k).expect("crl");
        let list = parse(crl.der()).expect("decode");
        assert!(list.tbs_cert_list.revoked_certificates.is_none());
        assert_eq!(list.to_der().expect("der"), crl.der());
    }

    #[test]
    fn delta_and_partition_extensions() {
        let k = key();
        let i = issuer(&k);
        let url = "http://pki.example/crl/issuing/3.crl";
        let p = CrlParams {
            kind: CrlKind::Delta { base_number: 5 },
            distribution_point: Some(url),
            ..params(&i, &k)
        };
        let entries = [
            entry(&[1], Some(CrlReason::RemoveFromCRL)),
            entry(&[2], Some(CrlReason::Superseded)),
        ];
        let crl = build_and_sign(&p, &entries, &k).expect("delta");
        let list = parse(crl.der()).expect("decode");
        let exts = &list.tbs_cert_list.crl_extensions;
        let base = ext(exts, oids::ID_CE_DELTA_CRL_INDICATOR).expect("delta indicator");
        assert!(base.critical);
        assert_eq!(
            BaseCrlNumber::from_der(base.extn_value.as_bytes())
                .expect("base")
                .0
                .as_bytes(),
            [5]
        );
        let idp_ext = ext(exts, oids::ID_CE_ISSUING_DISTRIBUTION_POINT).expect("idp");
        assert!(idp_ext.critical);
        let idp = IssuingDistributionPoint::from_der(idp_ext.extn_value.as_bytes()).expect("idp");
        assert_eq!(idp.distribution_point, Some(uri_point(url).expect("uri")));
        assert!(ext(exts, oids::ID_CE_FRESHEST_CRL).is_none());

        let full = CrlParams {
            freshest_crl: Some("http://pki.example/crl/issuing-delta.crl"),
            ..params(&i, &k)
        };
        let list = parse(build_and_sign(&full, &[], &k).expect("full").der()).expect("decode");
        let f =
            ext(&list.tbs_cert_list.crl_extensions, oids::ID_CE_FRESHEST_CRL).expect("freshest");
        let dps = FreshestCrl::from_der(f.extn_value.as_bytes()).expect("freshest");
        assert_eq!(
            dps.0,
            vec![Dp {
                distribution_point: Some(
                    uri_point("http://pki.example/crl/issuing-delta.crl").expect("u")
                ),
                reasons: None,
                crl_issuer: None
            }]
        );
    }

    #[test]
    fn lint_refuses_bad_crls_before_signing() {
        let k = key();
        let i = issuer(&k);
        let cases: Vec<(CrlParams<'_>, Vec<RevokedEntry>, &str)> = vec![
            (
                CrlParams {
                    next_update: NOW,
                    ..params(&i, &k)
                },
                vec![],
                "nextUpdate",
            ),
            (
                CrlParams {
                    kind: CrlKind::Delta { base_number: 7 },
                    ..params(&i, &k)
                },
                vec![],
                "must exceed its base",
            ),
            (
                CrlParams {
                    kind: CrlKind::Delta { base_number: 1 },
                    freshest_crl: Some("http://x/"),
                    ..params(&i, &k)
                },
                vec![],
                "freshestCRL",
            ),
            (
                params(&i, &k),
                vec![entry(&[2], None), entry(&[1], None)],
                "out of order",
            ),
            (
                params(&i, &k),
                vec![entry(&[2], None), entry(&[2], None)],
                "duplicated",
            ),
            (
                params(&i, &k),
                vec![RevokedEntry {
                    revoked_at: NOW + 1,
                    ..entry(&[1], None)
                }],
                "after thisUpdate",
            ),
            (
                params(&i, &k),
                vec![RevokedEntry {
                    invalidity_date: Some(NOW),
                    ..entry(&[1], None)
                }],
                "invalidityDate",
            ),
            (
                params(&i, &k),
                vec![entry(&[1], Some(CrlReason::RemoveFromCRL))],
                "removeFromCRL",
            ),
            (
                CrlParams {
                    distribution_point: Some("http://ü/"),
                    ..params(&i, &k)
                },
                vec![],
                "IA5",
            ),
        ];
        for (p, entries, needle) in cases {
            // Refused while building: no bytes to sign ever reach the key.
            match build(&p, &entries) {
                Err(CrlError::Lint(m)) => {
                    assert!(m.contains(needle), "{m} should mention {needle}")
                }
                Err(e) => panic!("{needle}: expected a lint error, got {e}"),
                Ok(_) => panic!("{needle}: expected a lint error"),
            }
        }
    }

    #[test]
    fn faulty_signature_is_caught_before_publication() {
        let k = key();
        let i = issuer(&k);
        let unsigned = || build(&params(&i, &k), &[entry(&[1], None)]).expect("tbs");
        let flipped = corrupt(k.signature_for(&unsigned()));
        assert_eq!(
            unsigned().into_signed(&flipped).err(),
            Some(CrlError::BadSignature)
        );
        // A backend that hashes the message itself (no digest signing) makes a valid CRL.
        let over_message = k.sign(unsigned().message());
        let crl = unsigned().into_signed(&over_message).expect("crl");
        let list = parse(crl.der()).expect("decode");
        let tbs = list.tbs_cert_list.to_der().expect("tbs");
        algorithm::verify(
            &k.spki,
            &list.signature_algorithm,
            &tbs,
            list.signature.raw_bytes(),
        )
        .expect("verifies");
    }

    #[test]
    fn signatures_over_other_bytes_or_by_another_key_are_refused() {
        let k = key();
        let other = key();
        let i = issuer(&k);
        let unsigned = || build(&params(&i, &k), &[entry(&[1], None)]).expect("tbs");
        let mut elsewhere = unsigned().message().to_vec();
        let last = elsewhere.len() - 1;
        elsewhere[last] ^= 1;
        assert_eq!(
            unsigned().into_signed(&k.sign(&elsewhere)).err(),
            Some(CrlError::BadSignature)
        );
        assert_eq!(
            unsigned()
                .into_signed(&other.signature_for(&unsigned()))
                .err(),
            Some(CrlError::BadSignature)
        );
    }

    #[test]
    fn the_digest_is_of_the_exact_tbs_and_the_crl_ends_in_its_bytes() {
        let k = key();
        let i = issuer(&k);
        let unsigned =
            build(&params(&i, &k), &[entry(&[1], None), entry(&[2], None)]).expect("tbs");
        let tbs = unsigned.message().to_vec();
        assert_eq!(
            unsigned.digest().map(|d| d.as_ref().to_vec()),
            Some(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &tbs)
                    .as_ref()
                    .to_vec()
            )
        );
        let crl = k.sign_into(unsigned).expect("crl");
        let list = parse(crl.der()).expect("decode");
        assert_eq!(list.tbs_cert_list.to_der().expect("tbs"), tbs);
    }

    #[test]
    fn templated_entries_equal_the_crate_encoding_for_every_shape() {
        let k = key();
        let i = issuer(&k);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let this_update = 4_102_444_800; // 2100-01-01: revocation dates from 1970 to 2099
        let p = CrlParams {
            this_update,
            next_update: this_update + 1,
            kind: CrlKind::Delta { base_number: 1 },
            number: 2,
            ..params(&i, &k)
        };
        let mut b = CrlBuilder::new(&p, 0).expect("builder");
        let reasons: Vec<Option<CrlReason>> = std::iter::once(None)
            .chain((0..=10).filter_map(reason_of).map(Some))
            .collect();
        let mut checked = 0;
        for mag_len in 1..=MAX_SERIAL_OCTETS {
            for sign in [false, true] {
                if sign && mag_len == MAX_SERIAL_OCTETS {
                    continue;
                }
                for reason in &reasons {
                    for leap_day in [false, true] {
                        let mut m = [0u8; MAX_SERIAL_OCTETS];
                        for byte in m.iter_mut() {
                            *byte = next() as u8;
                        }
                        m[0] = if sign {
                            m[0] | 0x80
                        } else {
                            (m[0] & 0x7f).max(1)
                        };
                        // Rebuild per entry so ordering never interferes.
                        b.last = None;
                        let revoked_at = if leap_day {
                            951_782_400 + next() % 86_400
                        } else {
                            next() % this_update
                        };
                        let invalidity_date = (next() % 2 == 0)
                            .then(|| revoked_at - revoked_at.min(next() % 10_000_000));
                        let e = RevokedEntry {
                            serial: CrlSerial::from_magnitude(&m[..mag_len]).expect("s"),
                            revoked_at,
                            reason: *reason,
                            invalidity_date,
                        };
                        let at = b.buf.len();
                        b.push(&e).expect("push");
                        let want_reason = reason.filter(|r| *r != CrlReason::Unspecified);
                        let (want, len) = encode_entry(
                            &b.reasons,
                            &e.serial,
                            revoked_at,
                            want_reason,
                            invalidity_date,
                        )
                        .expect("crate");
                        assert_eq!(&b.buf[at..], &want[..len], "{e:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 39 * 11 * 2);
    }

    #[test]
    fn serials_are_checked() {
        assert!(CrlSerial::from_magnitude(&[0, 0]).is_err());
        assert!(CrlSerial::from_magnitude(&[0x7f; 20]).is_ok());
        assert!(
            CrlSerial::from_magnitude(&[0x80; 20]).is_err(),
            "sign octet makes it 21"
        );
        assert_eq!(
            CrlSerial::from_magnitude(&[0, 0, 1, 2])
                .expect("s")
                .magnitude(),
            [1, 2]
        );
        assert_eq!(
            CrlSerial::from_hex("0abc").expect("hex").magnitude(),
            [0x0a, 0xbc]
        );
        assert!(CrlSerial::from_hex("abc").is_err());
        assert!(CrlSerial::from_hex("zz").is_err());
        assert!(CrlSerial::from_hex(&"11".repeat(22)).is_err());
    }

    #[test]
    fn max_encoded_len_is_an_upper_bound() {
        let k = key();
        let i = issuer(&k);
        let mut entries: Vec<RevokedEntry> = (1..=300u32)
            .map(|n| RevokedEntry {
                serial: CrlSerial::from_magnitude(&(u64::from(n) * 0x0101_0101_0101).to_be_bytes())
                    .expect("s"),
                revoked_at: NOW - u64::from(n) * 1000,
                reason: reason_of((n % 11) as u8).filter(|r| *r != CrlReason::RemoveFromCRL),
                invalidity_date: (n % 3 == 0).then_some(NOW - u64::from(n) * 2000),
            })
            .collect();
        sort_entries(&mut entries);
        let bound: usize = entries.iter().map(RevokedEntry::max_encoded_len).sum();
        let mut b = CrlBuilder::new(&params(&i, &k), bound).expect("builder");
        let before = b.buf.len();
        for e in &entries {
            let at = b.buf.len();
            b.push(e).expect("push");
            assert!(b.buf.len() - at <= e.max_encoded_len(), "{e:?}");
        }
        assert!(b.buf.len() - before <= bound);
        let crl = k.sign_into(b.finish().expect("tbs")).expect("sign");
        let list = parse(crl.der()).expect("decode");
        assert_eq!(
            list.tbs_cert_list
                .revoked_certificates
                .as_ref()
                .map(Vec::len),
            Some(300)
        );
    }
}
