//! End-to-end tests of the hash-chained audit log (`docs/audit.md`): the real CLI writes the
//! entries, `pkid audit verify` checks them, the test edits the SQLite file behind pkid's back
//! (rusqlite, as anyone with write access to `pkid.db` could), and the timestamps of the head
//! are checked with `openssl ts -verify`, as a third party would.

mod common;

use common::*;
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::Duration;

/// `pkid audit verify`'s exit code for a broken chain or stamp (docs/operations.md).
const BROKEN: i32 = 6;

/// A data directory with a certificate issued and revoked through the CLI; returns it and the
/// audit id of the revocation.
fn with_a_revocation() -> (tempfile::TempDir, i64) {
    let dir = init(&[]);
    let (_, csr) = make_csr(
        dir.path(),
        "/C=VN/O=Sở Y tế Đà Nẵng/CN=Trần Văn Bình",
        "ec:P-256",
    );
    let (serial, _) = issue(dir.path(), &csr, "person", &[]);
    revoke(dir.path(), &serial, "keyCompromise");
    let id = db(dir.path())
        .query_row(
            "SELECT id FROM audit WHERE action = 'cert.revoke'",
            [],
            |r| r.get(0),
        )
        .expect("the revocation is audited");
    (dir, id)
}

fn db(data: &Path) -> Connection {
    Connection::open(data.join("pkid.db")).expect("open pkid.db")
}

/// `pkid audit verify` succeeds; returns its first line.
fn verifies(data: &Path) -> String {
    let out = pkid_ok(data, &["audit", "verify"]);
    out.lines().next().expect("a line").to_string()
}

/// `pkid audit verify` fails with [`BROKEN`]; returns its one error line.
fn verify_fails(data: &Path) -> String {
    let (code, stdout, stderr) = pkid_fails(data, &["audit", "verify"]);
    assert_eq!(code, BROKEN, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty(), "nothing claimed intact: {stdout}");
    one_error_line(&stderr).to_string()
}

#[test]
fn the_chain_verifies_and_each_kind_of_tampering_is_named() {
    let (dir, revoke_id) = with_a_revocation();
    let data = dir.path();
    let (count, head): (u64, i64) = db(data)
        .query_row("SELECT COUNT(*), MAX(id) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("count");
    let line = verifies(data);
    let prefix = format!("audit chain intact: {count} entries, head #{head} ");
    assert!(line.starts_with(&prefix), "{line}");
    let hash = &line[prefix.len()..];
    assert_eq!(hash.len(), 64, "a SHA-256 in hex: {line}");
    assert!(count >= 3, "init, issue and revoke are all audited: {line}");

    // Edited: the revocation's reason rewritten.
    let conn = db(data);
    let detail: String = conn
        .query_row("SELECT detail FROM audit WHERE id = ?1", [revoke_id], |r| {
            r.get(0)
        })
        .expect("detail");
    conn.execute(
        "UPDATE audit SET detail = 'reason=unspecified' WHERE id = ?1",
        [revoke_id],
    )
    .expect("edit");
    assert_eq!(
        verify_fails(data),
        format!("pkid: error: audit entry #{revoke_id} was edited: its content no longer matches its hash")
    );
    conn.execute(
        "UPDATE audit SET detail = ?1 WHERE id = ?2",
        params![detail, revoke_id],
    )
    .expect("undo");
    assert_eq!(verifies(data), line, "the original content verifies again");

    // Deleted: the revocation's entry removed (and put back, byte for byte).
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE kept AS SELECT * FROM audit WHERE id = {revoke_id};
         DELETE FROM audit WHERE id = {revoke_id};"
    ))
    .expect("delete");
    let deleted = verify_fails(data);
    assert_eq!(
        deleted,
        format!("pkid: error: audit entry #{revoke_id} was deleted")
    );
    conn.execute_batch("INSERT INTO audit SELECT * FROM kept; DROP TABLE kept;")
        .expect("restore");
    assert_eq!(verifies(data), line);

    // Reordered: the first two entries swapped, hash columns and all.
    conn.execute_batch(
        "CREATE TEMP TABLE copy AS SELECT * FROM audit WHERE id IN (1, 2);
         UPDATE audit SET (at, actor, action, target, outcome, detail, prev_hash, hash) =
             (SELECT at, actor, action, target, outcome, detail, prev_hash, hash
              FROM copy WHERE copy.id = 3 - audit.id)
         WHERE id IN (1, 2);",
    )
    .expect("swap");
    assert_eq!(
        verify_fails(data),
        "pkid: error: audit entry #1 was reordered: it holds the entry written as #2"
    );
    conn.execute_batch(
        "UPDATE audit SET (at, actor, action, target, outcome, detail, prev_hash, hash) =
             (SELECT at, actor, action, target, outcome, detail, prev_hash, hash
              FROM copy WHERE copy.id = audit.id)
         WHERE id IN (1, 2);",
    )
    .expect("unswap");
    assert_eq!(verifies(data), line);

    // A new entry after all that still chains (the CLI appends to a verified head).
    let (code, _, _) = pkid_fails(data, &["cert", "hold", "--serial", "01"]);
    assert_eq!(code, 4, "a refused hold is audited too");
    assert!(verifies(data).starts_with(&format!(
        "audit chain intact: {} entries, head #{} ",
        count + 1,
        head + 1
    )));
}

/// The digest a third party passes to `openssl ts -verify -digest`, from `pkid audit stamps`.
fn listed_digest(data: &Path, id: i64) -> String {
    let list = pkid_ok(data, &["audit", "stamps", "--id", &id.to_string()]);
    let line = list.lines().next().expect("the stamp is listed");
    assert!(line.starts_with(&format!("#{id} ")), "{list}");
    line.rsplit(' ').next().expect("digest").to_string()
}

#[test]
fn a_stamp_of_the_head_verifies_with_openssl_and_pins_the_chain() {
    let (dir, _) = with_a_revocation();
    let data = dir.path();
    let stamped = pkid_ok(data, &["audit", "stamp"]);
    let head: i64 = db(data)
        .query_row("SELECT MAX(id) FROM audit", [], |r| r.get(0))
        .expect("head");
    assert!(
        stamped.starts_with(&format!("stamped audit entry #{head} ")),
        "{stamped}"
    );
    assert!(
        pkid_ok(data, &["audit", "stamp"]).contains("is already stamped"),
        "an unmoved head is not stamped twice"
    );
    let verified = pkid_ok(data, &["audit", "verify"]);
    assert!(
        verified.contains(&format!(
            "1 timestamps verified; the newest covers #{head} at "
        )),
        "{verified}"
    );

    // The third party: the exported token, the digest, pkid's root and the TSA's chain.
    let token = data.join("token.tsr");
    let wrote = pkid_ok(data, &["audit", "stamps", "--out", path_str(&token)]);
    let digest = listed_digest(data, head);
    assert!(wrote.ends_with(&format!("digest {digest}\n")), "{wrote}");
    let certs = data.join("certs");
    let chain = data.join("tsa-chain.pem");
    std::fs::write(
        &chain,
        [
            read(&certs.join("issuing.crt")),
            read(&certs.join("tsa.crt")),
        ]
        .concat(),
    )
    .expect("chain");
    let root = certs.join("root.crt");
    let ts_verify = |digest: &str| {
        openssl(&[
            "ts",
            "-verify",
            "-digest",
            digest,
            "-in",
            path_str(&token),
            "-CAfile",
            path_str(&root),
            "-untrusted",
            path_str(&chain),
        ])
    };
    let ok = ts_verify(&digest);
    assert_success(&ok, "openssl ts -verify");
    assert!(lossy(&ok.stdout).contains("Verification: OK"));
    // The digest is SHA-256 of the head hash's octets, which the verify line printed.
    let head_hash = verified
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("head hash");
    let recomputed = openssl_digest_of_hex(data, head_hash);
    assert_eq!(recomputed, digest);
    let mut other = digest.clone().into_bytes();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    assert!(
        !ts_verify(&String::from_utf8(other).expect("hex"))
            .status
            .success(),
        "another digest must not verify"
    );

    // A second stamp after another entry; then their tokens swapped: each token is genuine,
    // but over another head.
    let (code, _, _) = pkid_fails(data, &["cert", "hold", "--serial", "01"]);
    assert_eq!(code, 4);
    assert!(pkid_ok(data, &["audit", "stamp"])
        .starts_with(&format!("stamped audit entry #{} ", head + 1)));
    let conn = db(data);
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE t AS SELECT audit_id, token FROM audit_stamps;
         UPDATE audit_stamps SET token = (SELECT token FROM t WHERE t.audit_id = {head} + {next} - audit_stamps.audit_id);",
        next = head + 1
    ))
    .expect("swap tokens");
    assert_eq!(
        verify_fails(data),
        format!("pkid: error: the timestamp of audit entry #{head} is not over SHA-256 of its head hash")
    );
    conn.execute_batch(&format!(
        "UPDATE audit_stamps SET token = (SELECT token FROM t WHERE t.audit_id = audit_stamps.audit_id);
         DELETE FROM audit_stamps WHERE audit_id = {};",
        head + 1
    ))
    .expect("unswap, and keep one stamp");
    assert!(verifies(data).starts_with("audit chain intact: "));

    // A token from another pkid's TSA (a genuine token, a stranger's key).
    let stranger = init(&[]);
    pkid_ok(stranger.path(), &["audit", "stamp"]);
    let foreign: Vec<u8> = db(stranger.path())
        .query_row("SELECT token FROM audit_stamps", [], |r| r.get(0))
        .expect("foreign token");
    let ours = token_of(&conn, head);
    set_token(&conn, head, &foreign);
    assert_eq!(
        verify_fails(data),
        format!("pkid: error: the timestamp of audit entry #{head} was not issued by this TSA")
    );
    set_token(&conn, head, &ours);

    // A stamp whose token was damaged (its signature's last octet) is named.
    let mut damaged = token_of(&conn, head);
    *damaged.last_mut().expect("not empty") ^= 0x01;
    set_token(&conn, head, &damaged);
    let line = verify_fails(data);
    assert!(
        line.starts_with(&format!(
            "pkid: error: the timestamp of audit entry #{head} is not a valid token: "
        )),
        "{line}"
    );
}

/// The stored token of the stamp of entry `id`.
fn token_of(conn: &Connection, id: i64) -> Vec<u8> {
    conn.query_row(
        "SELECT token FROM audit_stamps WHERE audit_id = ?1",
        [id],
        |r| r.get(0),
    )
    .expect("token")
}

/// Replaces the stored token of the stamp of entry `id`.
fn set_token(conn: &Connection, id: i64, token: &[u8]) {
    conn.execute(
        "UPDATE audit_stamps SET token = ?1 WHERE audit_id = ?2",
        params![token, id],
    )
    .expect("set token");
}

/// SHA-256 (hex) of the octets `hex` spells, computed by `openssl dgst`.
fn openssl_digest_of_hex(dir: &Path, hex: &str) -> String {
    let octets: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let file = dir.join("head.bin");
    std::fs::write(&file, octets).expect("head");
    let out = openssl_ok(&["dgst", "-sha256", "-r", path_str(&file)]);
    out.split(' ').next().expect("digest").to_string()
}

#[test]
fn the_running_daemon_stamps_the_head_and_a_rewritten_chain_is_caught_by_it() {
    let (dir, revoke_id) = with_a_revocation();
    let data = dir.path();
    let mut daemon = Daemon::start(data);
    assert!(
        daemon.wait_for_log("audit chain head timestamped", 1, Duration::from_secs(20)),
        "the daemon stamps the head when it starts:\n{}",
        daemon.logs()
    );
    daemon.sigterm();
    assert!(daemon.wait().success(), "{}", daemon.logs());
    let head: i64 = db(data)
        .query_row("SELECT MAX(id) FROM audit", [], |r| r.get(0))
        .expect("head");
    assert!(!listed_digest(data, head).is_empty());
    assert!(verifies(data).contains(&format!("head #{head} ")));

    // Whoever rewrites the revocation and recomputes every hash after it (the encoding is
    // public) passes the chain walk, but not the stamp.
    let conn = db(data);
    conn.execute(
        "UPDATE audit SET detail = 'reason=unspecified' WHERE id = ?1",
        [revoke_id],
    )
    .expect("edit");
    rechain(&conn);
    assert_eq!(
        verify_fails(data),
        format!("pkid: error: the audit chain was rewritten at or before entry #{head}: its timestamp covers hash {}, the chain now has another", stamped_hash(&conn, head))
    );
}

/// Recomputes every row's hash columns from the genesis value, as a forger would.
fn rechain(conn: &Connection) {
    use pkid::store::audit::{chain_hash, AuditHash, ChainedFields};
    let rows: Vec<(i64, i64, String, String, String, String, String)> = conn
        .prepare("SELECT id, at, actor, action, target, outcome, detail FROM audit ORDER BY id")
        .expect("select")
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut previous = AuditHash::GENESIS;
    for (id, at, actor, action, target, outcome, detail) in rows {
        let fields = ChainedFields {
            id,
            at,
            actor: &actor,
            action: &action,
            target: &target,
            outcome: &outcome,
            detail: &detail,
        };
        let hash = chain_hash(&previous, &fields);
        conn.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE id = ?3",
            params![&previous.0[..], &hash.0[..], id],
        )
        .expect("rechain");
        previous = hash;
    }
}

fn stamped_hash(conn: &Connection, id: i64) -> String {
    let h: Vec<u8> = conn
        .query_row(
            "SELECT head_hash FROM audit_stamps WHERE audit_id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("stamp");
    h.iter().map(|b| format!("{b:02x}")).collect()
}
