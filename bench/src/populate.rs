//! Synthetic certificate populations: rows written straight into a pkid store (one transaction,
//! no signatures — the responder reads only serials and statuses), and the same population as
//! an OpenSSL `index.txt` for the `openssl ocsp` baseline.

use rusqlite::{params, Connection};
use std::io::Write;
use std::path::Path;

/// One synthetic certificate.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    /// Serial key (16 octets, top bit clear, like pkid's).
    pub serial: u128,
    /// Revoked (keyCompromise) at this Unix time, or good.
    pub revoked_at: Option<u64>,
}

/// Deterministic pseudo-random serials (splitmix64), top bit clear and first octet non-zero.
pub fn population(n: usize, revoked_every: usize, now: u64) -> Vec<Synthetic> {
    let mut state = 0x5eed_u64;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|i| {
            let serial = ((u128::from(next()) << 64) | u128::from(next())) & !(1u128 << 127)
                | (1u128 << 120);
            Synthetic {
                serial,
                revoked_at: (revoked_every > 0 && i % revoked_every == 0).then_some(now - 3600),
            }
        })
        .collect()
}

/// Hex of a serial key as the store keeps it (minimal, even length).
pub fn serial_hex(serial: u128) -> String {
    let s = format!("{serial:x}");
    if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s
    }
}

/// Inserts the population as issued certificates of `issuer` into the pkid store at `db`.
pub fn insert(db: &Path, issuer: &str, certs: &[Synthetic], now: u64) -> rusqlite::Result<()> {
    let mut conn = Connection::open(db)?;
    conn.execute_batch("PRAGMA synchronous=OFF;")?;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO certificates (serial, issuer, subject, profile, not_before, not_after, status, revoked_at, reason,
                                       tbs, der, created_at, updated_at)
             VALUES (?1, ?2, 'CN=bench', 'person', ?3, ?4, ?5, ?6, ?7, x'00', x'00', ?3, ?3)",
        )?;
        for c in certs {
            let (status, reason) = if c.revoked_at.is_some() {
                ("revoked", Some(1u8))
            } else {
                ("valid", None)
            };
            stmt.execute(params![
                serial_hex(c.serial),
                issuer,
                now - 60,
                now + 365 * 86_400,
                status,
                c.revoked_at,
                reason
            ])?;
        }
    }
    tx.commit()
}

/// Writes an OpenSSL CA database (`index.txt`) with the same population.
pub fn openssl_index(path: &Path, certs: &[Synthetic]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for c in certs {
        let serial = serial_hex(c.serial).to_uppercase();
        match c.revoked_at {
            Some(_) => writeln!(f, "R\t361121000000Z\t261120000000Z,keyCompromise\t{serial}\tunknown\t/CN=bench-{serial}")?,
            None => writeln!(f, "V\t361121000000Z\t\t{serial}\tunknown\t/CN=bench-{serial}")?,
        }
    }
    f.flush()
}
