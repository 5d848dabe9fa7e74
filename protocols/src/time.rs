//! Conversions between Unix time and the ASN.1 time types, with the RFC 5280 encoding rule.

use der::asn1::{GeneralizedTime, UtcTime};
use der::DateTime;
use std::time::Duration;
use x509_cert::time::Time;

/// First second (Unix time) that must be encoded as GeneralizedTime: 2050-01-01T00:00:00Z.
const GENERALIZED_TIME_FROM: u64 = 2_524_608_000;

/// A certificate or CRL time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280
/// §4.1.2.5). `unix` is seconds since the epoch; sub-second precision is dropped.
pub fn x509_time(unix: u64) -> Result<Time, der::Error> {
    let d = Duration::from_secs(unix);
    if unix < GENERALIZED_TIME_FROM {
        Ok(Time::UtcTime(UtcTime::from_unix_duration(d)?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?))
    }
}

/// A GeneralizedTime at whole seconds (OCSP, CRL entry extensions, TSTInfo without fraction).
pub fn generalized_time(unix: u64) -> Result<GeneralizedTime, der::Error> {
    GeneralizedTime::from_unix_duration(Duration::from_secs(unix))
}

/// Seconds since the epoch of an X.509 time.
pub fn unix_of(t: &Time) -> u64 {
    t.to_unix_duration().as_secs()
}

/// RFC 3339 rendering of a Unix time, for logs and the CLI.
pub fn rfc3339(unix: u64) -> String {
    match DateTime::from_unix_duration(Duration::from_secs(unix)) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minutes(),
            dt.seconds()
        ),
        Err(_) => format!("@{unix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_to_generalized_time_in_2050() {
        assert!(matches!(
            x509_time(GENERALIZED_TIME_FROM - 1),
            Ok(Time::UtcTime(_))
        ));
        assert!(matches!(
            x509_time(GENERALIZED_TIME_FROM),
            Ok(Time::GeneralTime(_))
        ));
        assert_eq!(rfc3339(GENERALIZED_TIME_FROM), "2050-01-01T00:00:00Z");
    }
}
