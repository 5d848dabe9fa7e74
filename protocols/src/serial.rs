//! Certificate serial numbers: random, positive, DER-minimal, at most 20 octets.

use x509_cert::serial_number::SerialNumber;

/// Octets of randomness in a serial. 16 octets with the top bit cleared give 127 random bits,
/// well over the CA/Browser Forum's 64, and stay within RFC 5280's 20-octet limit.
pub const SERIAL_OCTETS: usize = 16;

/// Makes a serial number from `random` CSPRNG output (the caller draws it; this crate has no
/// randomness of its own). The top bit is cleared so the INTEGER is positive, and a zero first
/// octet is replaced so the encoding is minimal and the length fixed.
pub fn from_random(mut random: [u8; SERIAL_OCTETS]) -> SerialNumber {
    random[0] &= 0x7f;
    if random[0] == 0 {
        random[0] = 0x01;
    }
    // Cannot fail: 16 octets, positive, minimal.
    SerialNumber::new(&random).unwrap_or_else(|_| unreachable!("16-octet positive serial"))
}

/// Lower-case hex of a serial's INTEGER contents, without a leading zero octet: the form the
/// CLI, the store and `GET /certs/{serial}` use (`openssl x509 -serial` prints the same digits).
pub fn to_hex(serial: &SerialNumber) -> String {
    let b = serial.as_bytes();
    let b = if b.len() > 1 && b[0] == 0 { &b[1..] } else { b };
    hex::encode(b)
}

/// Parses hex (optionally `0x`-prefixed, any case, `:` separators allowed) into the canonical
/// form returned by [`to_hex`]. Returns `None` for anything that is not a positive serial.
pub fn canonical_hex(input: &str) -> Option<String> {
    let s = input.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 42 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    if trimmed.is_empty() {
        return None;
    }
    let even = if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed
    };
    if even.len() > 40 {
        return None;
    }
    Some(even)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn serial_is_positive_minimal_and_round_trips_as_hex() {
        let s = from_random([0xff; SERIAL_OCTETS]);
        let der = s.to_der().expect("der");
        assert_eq!(
            der[1] as usize, SERIAL_OCTETS,
            "no 0x00 pad: top bit cleared"
        );
        assert_eq!(der[2], 0x7f);
        let z = from_random([0u8; SERIAL_OCTETS]);
        assert_eq!(z.as_bytes()[0], 0x01);
        assert_eq!(
            canonical_hex(&to_hex(&s)).as_deref(),
            Some(to_hex(&s).as_str())
        );
    }

    #[test]
    fn hex_forms_are_normalised() {
        assert_eq!(canonical_hex("0x1001").as_deref(), Some("1001"));
        assert_eq!(canonical_hex("0A:BC").as_deref(), Some("0abc"));
        assert_eq!(canonical_hex("abc").as_deref(), Some("0abc"));
        assert_eq!(canonical_hex("00"), None);
        assert_eq!(canonical_hex("xyz"), None);
        assert_eq!(canonical_hex(&"f".repeat(41)), None);
    }
}
