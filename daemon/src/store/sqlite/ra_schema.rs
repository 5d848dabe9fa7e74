//! Migration 7: the registration authority's tables (see `store::ra` and `docs/ra.md`).
//!
//! ```text
//! organisations          id → name, registry id, province, parent, path, email, profiles,
//!                             sector, created_at, deleted_at (soft delete only)
//! operators              id → name, email, role, organisation, scope, password hash,
//!                             sealed TOTP secret, created_at, removed_at
//! operator_certificates  SHA-256 of a certificate's DER → operator
//! operator_tokens        SHA-256 of a bearer token → operator, expires_at, revoked_at
//! documents              id → the request document byte-exact, its detached signature,
//!                             the verification result
//! requests               id → kind, organisation (with its province and tree path copied,
//!                             so scoped lists are one index range), state, subscriber fields
//!                             (phone and national id sealed), profile, key origin, CSR,
//!                             certificates, deadline, timestamps
//! request_events         the history of one request: who moved it from which state to which
//! outbox                 notifications written with the event that causes them, delivered
//!                        at least once by the notifier (idempotency key unique)
//! reminders              certificates whose renewal reminder is already queued
//! issuance_pauses        an issuer's pauses: who, why, from, until
//! confirmations          dual-control actions waiting for a second ca-admin
//! ```
//!
//! `path` is the organisation's ancestry as `/root-id/…/id/`, fixed at creation (parents never
//! change), so an `org:ID` scope is the prefix range `path >= '/…/ID/' AND path < '/…/ID0'`.

/// The tables of migration 7.
pub(super) const MIGRATION: &str = "
    CREATE TABLE organisations (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        registry_id TEXT,
        province    TEXT,
        parent      TEXT REFERENCES organisations(id),
        path        TEXT NOT NULL UNIQUE,
        email       TEXT,
        profiles    TEXT NOT NULL DEFAULT '',
        sector      TEXT NOT NULL DEFAULT 'other',
        created_at  INTEGER NOT NULL,
        deleted_at  INTEGER
    ) STRICT;
    CREATE INDEX organisations_province ON organisations(province);
    CREATE TABLE operators (
        id            TEXT PRIMARY KEY NOT NULL,
        name          TEXT NOT NULL,
        email         TEXT,
        role          TEXT NOT NULL
                      CHECK (role IN ('org-officer','ra-officer','auditor','ca-admin')),
        organisation  TEXT REFERENCES organisations(id),
        scope         TEXT NOT NULL,
        password_hash TEXT,
        totp_sealed   BLOB,
        created_at    INTEGER NOT NULL,
        removed_at    INTEGER
    ) STRICT;
    CREATE TABLE operator_certificates (
        fingerprint BLOB PRIMARY KEY NOT NULL,
        operator    TEXT NOT NULL REFERENCES operators(id),
        serial      TEXT NOT NULL,
        issuer      TEXT NOT NULL,
        added_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX operator_certificates_serial ON operator_certificates(issuer, serial);
    CREATE TABLE operator_tokens (
        hash       BLOB PRIMARY KEY NOT NULL,
        operator   TEXT NOT NULL REFERENCES operators(id),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;
    CREATE TABLE documents (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        filename       TEXT NOT NULL,
        content        BLOB NOT NULL,
        signature      BLOB,
        sha256         BLOB NOT NULL,
        valid          INTEGER NOT NULL CHECK (valid IN (0, 1)),
        signer_serial  TEXT,
        signer_issuer  TEXT,
        signer_subject TEXT,
        signed_at      INTEGER,
        problem        TEXT,
        created_at     INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE requests (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        kind               TEXT NOT NULL
                           CHECK (kind IN ('issue','renew','modify','revoke','recover')),
        organisation       TEXT NOT NULL REFERENCES organisations(id),
        province           TEXT,
        org_path           TEXT NOT NULL,
        state              TEXT NOT NULL CHECK (state IN ('submitted','accepted','approved',
                           'fulfilled','returned','rejected','awaiting-original')),
        profile            TEXT,
        key_origin         TEXT NOT NULL CHECK (key_origin IN ('csr','token','central')),
        issuer             TEXT,
        subscriber_name    TEXT,
        subscriber_email   TEXT,
        subscriber_title   TEXT,
        subscriber_unit    TEXT,
        subscriber_phone   BLOB,
        subscriber_id_number BLOB,
        csr                BLOB,
        certificate        TEXT,
        issued_certificate TEXT,
        reason             TEXT,
        document           INTEGER REFERENCES documents(id),
        batch              TEXT,
        submitted_by       TEXT NOT NULL,
        submitted_at       INTEGER NOT NULL,
        accepted_at        INTEGER,
        due_at             INTEGER,
        fulfilled_at       INTEGER,
        closed_at          INTEGER,
        breach_notified_at INTEGER,
        erased_at          INTEGER,
        updated_at         INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX requests_org_path ON requests(org_path, id);
    CREATE INDEX requests_province ON requests(province, id);
    CREATE INDEX requests_state_due ON requests(state, due_at);
    CREATE INDEX requests_issued ON requests(issued_certificate)
        WHERE issued_certificate IS NOT NULL;
    CREATE INDEX requests_document ON requests(document) WHERE document IS NOT NULL;
    CREATE INDEX requests_subscriber_email ON requests(subscriber_email)
        WHERE subscriber_email IS NOT NULL;
    CREATE INDEX requests_closed ON requests(closed_at) WHERE closed_at IS NOT NULL;
    CREATE TABLE request_events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        request    INTEGER NOT NULL REFERENCES requests(id),
        at         INTEGER NOT NULL,
        actor      TEXT NOT NULL,
        action     TEXT NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        reason     TEXT
    ) STRICT;
    CREATE INDEX request_events_request ON request_events(request, id);
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key TEXT NOT NULL UNIQUE,
        channel         TEXT NOT NULL CHECK (channel IN ('email','webhook')),
        recipient       TEXT NOT NULL,
        subject         TEXT NOT NULL,
        body            TEXT NOT NULL,
        event           TEXT NOT NULL,
        request         INTEGER REFERENCES requests(id),
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at    INTEGER,
        last_error      TEXT
    ) STRICT;
    CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE delivered_at IS NULL;
    CREATE TABLE reminders (
        serial    TEXT PRIMARY KEY NOT NULL REFERENCES certificates(serial),
        queued_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE issuance_pauses (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        issuer     TEXT NOT NULL,
        paused_at  INTEGER NOT NULL,
        paused_by  TEXT NOT NULL,
        reason     TEXT NOT NULL,
        resumed_at INTEGER,
        resumed_by TEXT
    ) STRICT;
    CREATE UNIQUE INDEX issuance_pauses_active ON issuance_pauses(issuer)
        WHERE resumed_at IS NULL;
    CREATE TABLE confirmations (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        action       TEXT NOT NULL,
        target       TEXT NOT NULL,
        reason       TEXT,
        requested_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        confirmed_by TEXT,
        confirmed_at INTEGER
    ) STRICT;";

/// Migration 9: a subtree's report reads every request of the period through these without
/// touching the table. A request row is wide (subscriber, CSR, reasons), so walking the subtree
/// by `requests_org_path` fetched a table page per request: a year of a million requests took
/// seconds, nearly all of it page reads. The report's columns in the index make it one ordered
/// walk of a narrow b-tree (see the RA benchmark in docs/ra.md). The partial index does the same
/// for the certificate counts, which join only requests that issued one.
///
/// Also: subscribers' one-time revocation codes (SHA-256 of the code; the code itself is only
/// in the subscriber's fulfilment mail), and the outbox's `secret` flag: a message whose body
/// carries such a code has its body emptied once delivered.
pub(crate) const REPORT_INDEXES: &str = "
    CREATE INDEX requests_report ON requests(org_path, submitted_at, fulfilled_at, due_at,
        accepted_at, closed_at, kind, state, key_origin, organisation);
    CREATE INDEX requests_report_certificates ON requests(org_path, issued_certificate)
        WHERE issued_certificate IS NOT NULL;
    CREATE TABLE revocation_codes (
        serial      TEXT PRIMARY KEY,
        sha256      BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        used_at     INTEGER
    );
    ALTER TABLE outbox ADD COLUMN secret INTEGER NOT NULL DEFAULT 0;";

/// Migration 11: each request that issued a certificate keeps that certificate's status and
/// end beside it, maintained by triggers in the transactions that change them, so the report's
/// certificate counts walk one narrow index of the subtree's requests instead of probing
/// 300,000 certificates (docs/decisions.md, "The report reads certificate status beside the
/// request"). The triggers cover every writer: the CA's revocations, the RA's fulfilments, the
/// CLI, and rows loaded in either order.
pub(crate) const CERTIFICATE_STATUS: &str = "
    ALTER TABLE requests ADD COLUMN certificate_status TEXT;
    ALTER TABLE requests ADD COLUMN certificate_not_after INTEGER;
    UPDATE requests SET (certificate_status, certificate_not_after) =
        (SELECT status, not_after FROM certificates c WHERE c.serial = requests.issued_certificate)
        WHERE issued_certificate IS NOT NULL;
    DROP INDEX requests_report_certificates;
    CREATE INDEX requests_certificates
        ON requests(org_path, certificate_status, certificate_not_after)
        WHERE issued_certificate IS NOT NULL;
    CREATE TRIGGER requests_certificate_set AFTER UPDATE OF issued_certificate ON requests
        WHEN NEW.issued_certificate IS NOT NULL
    BEGIN
        UPDATE requests SET (certificate_status, certificate_not_after) =
            (SELECT status, not_after FROM certificates WHERE serial = NEW.issued_certificate)
            WHERE id = NEW.id;
    END;
    CREATE TRIGGER requests_certificate_filed AFTER INSERT ON requests
        WHEN NEW.issued_certificate IS NOT NULL
    BEGIN
        UPDATE requests SET (certificate_status, certificate_not_after) =
            (SELECT status, not_after FROM certificates WHERE serial = NEW.issued_certificate)
            WHERE id = NEW.id;
    END;
    CREATE TRIGGER certificates_status_to_requests AFTER UPDATE OF status ON certificates
        WHEN NEW.status IS NOT OLD.status
    BEGIN
        UPDATE requests SET certificate_status = NEW.status WHERE issued_certificate = NEW.serial;
    END;
    CREATE TRIGGER certificates_filed_to_requests AFTER INSERT ON certificates
    BEGIN
        UPDATE requests SET (certificate_status, certificate_not_after) = (NEW.status, NEW.not_after)
            WHERE issued_certificate = NEW.serial;
    END;";

/// Migration 18: the last TOTP time step an operator signed in with, so that a code is
/// accepted once (RFC 6238 §5.2), as remote-signing accounts' already are.
pub(crate) const OPERATOR_TOTP_STEP: &str =
    "ALTER TABLE operators ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;";

/// Migration 19: what a `recover` request of a remote-signing account does (`unlock` or
/// `reenrol`); empty for every other request.
pub(crate) const REQUEST_RECOVERY: &str =
    "ALTER TABLE requests ADD COLUMN recovery TEXT CHECK (recovery IN ('unlock', 'reenrol'));";
