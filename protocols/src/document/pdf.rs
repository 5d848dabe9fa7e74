//! The signature embedded in a PDF (ISO 32000-1 §12.8.1, `adbe.pkcs7.detached`; PAdES,
//! ETSI EN 319 142-1, `ETSI.CAdES.detached`): the last signature dictionary's `/ByteRange`
//! and `/Contents`.
//!
//! ```text
//!  %PDF-… /Contents <3082…0000> /ByteRange [0 b c d] … %%EOF
//!  ├──── range 1: [0, b) ─────┤├─ hole ─┤├──── range 2: [c, c + d) ────┤
//! ```
//!
//! The hole must be exactly the `/Contents` hex string (`<` at `b`, `>` at `c - 1`) and the
//! second range must end at the end of the file: a signature that leaves bytes unsigned
//! (an incremental update after signing) is refused, so what is kept is what was signed.
//! Only the last `/ByteRange` of the file is read — the signature made last, covering every
//! earlier one. The scan is one backwards pass; nothing is allocated from a length the file
//! claims before checking it against the file's size.

use super::{DocumentError, MAX_CMS_BYTES};
use der::{Decode, Encode, Header, SliceReader};
use std::ops::Range;

/// The key of a signature dictionary's byte ranges.
const BYTE_RANGE: &[u8] = b"/ByteRange";
/// The key of its signature value.
const CONTENTS: &[u8] = b"/Contents";
/// Most digits an offset in a `/ByteRange` may have: 12 digits is a terabyte, beyond any file
/// the RA accepts; more is refused before any arithmetic.
const MAX_OFFSET_DIGITS: usize = 12;
/// How far into the file the `%PDF-` header may start (ISO 32000-1 §7.5.2 readers accept
/// leading bytes; 1024 is what common readers tolerate).
const HEADER_WINDOW: usize = 1024;

/// A PDF's last signature: where its signed bytes are, and the CMS it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdfSignature {
    /// The two signed ranges, `[0, b)` and `[c, c + d)`, `c + d` being the file's length.
    pub ranges: [Range<usize>; 2],
    /// The DER CMS SignedData from `/Contents`, its zero padding removed.
    pub cms: Vec<u8>,
}

impl PdfSignature {
    /// The signed bytes of `pdf` as the two ranges, without copying them.
    pub fn signed_parts<'a>(&self, pdf: &'a [u8]) -> [&'a [u8]; 2] {
        [&pdf[self.ranges[0].clone()], &pdf[self.ranges[1].clone()]]
    }

    /// The signed bytes of `pdf`, concatenated (the file without the `/Contents` hex string).
    pub fn signed_bytes(&self, pdf: &[u8]) -> Vec<u8> {
        self.signed_parts(pdf).concat()
    }
}

/// PDF white-space characters (ISO 32000-1 §7.2.2, table 1).
fn is_white(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0')
}

/// Finds the last signature of `pdf` and checks that it covers the whole file.
pub fn extract(pdf: &[u8]) -> Result<PdfSignature, DocumentError> {
    let window = &pdf[..pdf.len().min(HEADER_WINDOW)];
    if !window.windows(5).any(|w| w == b"%PDF-") {
        return Err(DocumentError::MalformedPdf("no %PDF- header"));
    }
    let at = pdf
        .windows(BYTE_RANGE.len())
        .rposition(|w| w == BYTE_RANGE)
        .ok_or(DocumentError::NoSignature)?;
    let [a, b, c, d] = parse_ranges(&pdf[at + BYTE_RANGE.len()..])?;
    let length = pdf.len() as u64;
    if a != 0 {
        return Err(DocumentError::ByteRange(
            "the first range does not start at 0",
        ));
    }
    if b >= c {
        return Err(DocumentError::ByteRange(
            "the ranges overlap or are out of order",
        ));
    }
    let end = c
        .checked_add(d)
        .ok_or(DocumentError::ByteRange("the second range overflows"))?;
    if end > length {
        return Err(DocumentError::ByteRange(
            "a range ends past the end of the file",
        ));
    }
    if end < length {
        return Err(DocumentError::NotWholeFile {
            signed: end,
            length,
        });
    }
    // All four are now within the file, so they fit a usize.
    let (b, c, end) = (b as usize, c as usize, end as usize);
    let hole = &pdf[b..c];
    let hex = hole
        .strip_prefix(b"<")
        .and_then(|h| h.strip_suffix(b">"))
        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
        .ok_or(DocumentError::ByteRange(
            "the unsigned hole is not exactly one hex string",
        ))?;
    let before = pdf[..b].trim_ascii_end();
    if !before.ends_with(CONTENTS) {
        return Err(DocumentError::ByteRange(
            "the unsigned hole is not the /Contents value",
        ));
    }
    if hex.len() % 2 != 0 {
        return Err(DocumentError::MalformedPdf(
            "/Contents has an odd number of hex digits",
        ));
    }
    if hex.len() / 2 > MAX_CMS_BYTES {
        return Err(DocumentError::TooLarge {
            length: hex.len() / 2,
            max: MAX_CMS_BYTES,
        });
    }
    let decoded = hex::decode(hex).map_err(|_| DocumentError::MalformedPdf("/Contents hex"))?;
    let cms = strip_padding(decoded)?;
    Ok(PdfSignature {
        ranges: [0..b, c..end],
        cms,
    })
}

/// Reads `[a b c d]` (white space allowed around each token) at the start of `rest`.
fn parse_ranges(rest: &[u8]) -> Result<[u64; 4], DocumentError> {
    let malformed = DocumentError::ByteRange("not an array of four non-negative integers");
    let mut i = rest.iter().take_while(|b| is_white(**b)).count();
    if rest.get(i) != Some(&b'[') {
        return Err(malformed);
    }
    i += 1;
    let mut out = [0u64; 4];
    for slot in &mut out {
        i += rest[i..].iter().take_while(|b| is_white(**b)).count();
        let digits = rest[i..]
            .iter()
            .take(MAX_OFFSET_DIGITS + 1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > MAX_OFFSET_DIGITS {
            return Err(malformed);
        }
        *slot = rest[i..i + digits]
            .iter()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        i += digits;
        if rest.get(i).is_some_and(|b| !is_white(*b) && *b != b']') {
            return Err(malformed);
        }
    }
    i += rest[i..].iter().take_while(|b| is_white(**b)).count();
    if rest.get(i) != Some(&b']') {
        return Err(malformed);
    }
    Ok(out)
}

/// Cuts `/Contents` to the DER SignedData at its start: signers reserve more room than the
/// signature takes and fill the rest with zeros, which must be all that follows it.
fn strip_padding(mut decoded: Vec<u8>) -> Result<Vec<u8>, DocumentError> {
    let total = {
        let mut reader = SliceReader::new(&decoded)
            .map_err(|e| DocumentError::MalformedCms(format!("/Contents: {e}")))?;
        let header = Header::decode(&mut reader)
            .map_err(|e| DocumentError::MalformedCms(format!("/Contents: {e}")))?;
        let header_len = header
            .encoded_len()
            .and_then(|l| l + header.length)
            .map_err(|e| DocumentError::MalformedCms(format!("/Contents: {e}")))?;
        usize::try_from(header_len)
            .map_err(|e| DocumentError::MalformedCms(format!("/Contents: {e}")))?
    };
    if total > decoded.len() {
        return Err(DocumentError::MalformedCms(
            "/Contents: the signature is longer than the space reserved for it".into(),
        ));
    }
    if decoded[total..].iter().any(|b| *b != 0) {
        return Err(DocumentError::MalformedCms(
            "/Contents: bytes after the signature are not zero padding".into(),
        ));
    }
    decoded.truncate(total);
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic signed-PDF skeleton around `contents` (hex) with ranges computed to fit.
    fn skeleton(contents: &str, tail: &str) -> Vec<u8> {
        let head = "%PDF-1.7\n1 0 obj\n<< /Type /Sig /Contents ";
        let b = head.len();
        let c = b + contents.len();
        // The ByteRange text has a fixed width so the offsets can be computed up front.
        let rest_len = |r: &str| format!(" /ByteRange {r} >>\nendobj\n{tail}").len();
        let mut d = 0;
        for _ in 0..3 {
            d = rest_len(&format!("[0 {b} {c} {d:>6}]"));
        }
        let range = format!("[0 {b} {c} {d:>6}]");
        format!("{head}{contents} /ByteRange {range} >>\nendobj\n{tail}").into_bytes()
    }

    #[test]
    fn ranges_around_the_contents_string_are_read() {
        let pdf = skeleton("<3003020100000000>", "%%EOF\n");
        let sig = extract(&pdf).expect("extract");
        assert_eq!(sig.cms, vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let signed = sig.signed_bytes(&pdf);
        assert_eq!(signed.len(), pdf.len() - "<3003020100000000>".len());
        assert!(!signed.windows(4).any(|w| w == b"3003"));
    }

    #[test]
    fn appended_bytes_are_refused() {
        let mut pdf = skeleton("<300100>", "%%EOF\n");
        pdf.extend_from_slice(b"trailer << >>\n%%EOF\n");
        assert!(matches!(
            extract(&pdf),
            Err(DocumentError::NotWholeFile { .. })
        ));
    }

    #[test]
    fn padding_must_be_zeros_and_the_hole_one_hex_string() {
        let pdf = skeleton("<3003020100000001>", "%%EOF\n");
        assert_eq!(extract(&pdf).expect_err("refused").code(), "malformed-cms");
        let pdf = skeleton("<30030201> <00>", "%%EOF\n");
        assert_eq!(extract(&pdf).expect_err("refused").code(), "byte-range");
    }

    #[test]
    fn hostile_ranges_are_refused_without_allocating() {
        let base = b"%PDF-1.7\n/Contents <00> /ByteRange ";
        for ranges in [
            "[0 10 99999999999 99999999999]",
            "[0 10 5 3]",
            "[1 10 20 3]",
            "[0 10 20]",
            "[0 10 20 3 4]",
            "[0 1e3 20 3]",
            "[0 10 20 9999999999999999999999]",
            "0 10 20 3",
        ] {
            let mut pdf = base.to_vec();
            pdf.extend_from_slice(ranges.as_bytes());
            let err = extract(&pdf).expect_err(ranges);
            assert_eq!(err.code(), "byte-range", "{ranges}");
        }
    }

    #[test]
    fn no_header_and_no_signature_are_told_apart() {
        assert_eq!(
            extract(b"hello /ByteRange [0 1 2 3]"),
            Err(DocumentError::MalformedPdf("no %PDF- header"))
        );
        assert_eq!(
            extract(b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n"),
            Err(DocumentError::NoSignature)
        );
    }
}
