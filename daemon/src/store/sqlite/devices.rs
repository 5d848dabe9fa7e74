//! SQLite side of the key devices (see `store::devices`).

use super::{insert_audit, unavailable, SqliteStore};
use crate::store::devices::{DeviceEvent, DeviceRecord, DeviceState, EscrowedKey, KeyDevices};
use crate::store::{AuditEntry, StoreError};
use rusqlite::{params, OptionalExtension, Transaction};

/// Migration 12 (appended to `MIGRATIONS`): key devices and their history.
pub(super) const MIGRATION: &str = "
    CREATE TABLE devices (
        serial          TEXT PRIMARY KEY NOT NULL,
        model           TEXT NOT NULL,
        manufacturer    TEXT NOT NULL,
        label           TEXT NOT NULL,
        organisation    TEXT NOT NULL REFERENCES organisations(id),
        request         INTEGER NOT NULL REFERENCES requests(id),
        certificate     TEXT NOT NULL REFERENCES certificates(serial),
        so_pin_sealed   BLOB,
        state           TEXT NOT NULL
                        CHECK (state IN ('provisioned', 'handed-over', 'returned', 'wiped')),
        receiver        TEXT,
        handed_over_at  INTEGER,
        returned_at     INTEGER,
        provisioned_at  INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX devices_organisation ON devices(organisation);
    CREATE INDEX devices_certificate ON devices(certificate);
    CREATE INDEX devices_request ON devices(request);
    CREATE TABLE device_events (
        id      INTEGER PRIMARY KEY,
        serial  TEXT NOT NULL,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX device_events_serial ON device_events(serial, id);";

/// Migration 15 (appended to `MIGRATIONS`): server-generated private keys kept in escrow,
/// sealed under the data key, one per certificate.
pub(super) const ESCROW_MIGRATION: &str = "
    CREATE TABLE escrowed_keys (
        certificate       TEXT PRIMARY KEY NOT NULL REFERENCES certificates(serial),
        organisation      TEXT NOT NULL,
        origin            TEXT NOT NULL,
        sealed            BLOB NOT NULL,
        escrowed_at       INTEGER NOT NULL,
        releases          INTEGER NOT NULL DEFAULT 0,
        last_released_at  INTEGER
    ) STRICT;";

const COLUMNS: &str = "serial, model, manufacturer, label, organisation, request, certificate, \
     so_pin_sealed, state, receiver, handed_over_at, returned_at, provisioned_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let state: String = r.get(8)?;
    Ok(DeviceRecord {
        serial: r.get(0)?,
        model: r.get(1)?,
        manufacturer: r.get(2)?,
        label: r.get(3)?,
        organisation: r.get(4)?,
        request: r.get(5)?,
        certificate: r.get(6)?,
        so_pin_sealed: r.get(7)?,
        state: DeviceState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                format!("unknown device state {state:?}").into(),
            )
        })?,
        receiver: r.get(9)?,
        handed_over_at: r.get(10)?,
        returned_at: r.get(11)?,
        provisioned_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

fn current_state(tx: &Transaction<'_>, serial: &str) -> Result<Option<DeviceState>, StoreError> {
    let state: Option<String> = tx
        .query_row(
            "SELECT state FROM devices WHERE serial = ?1",
            [serial],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    Ok(state.as_deref().and_then(DeviceState::parse))
}

fn insert_event(tx: &Transaction<'_>, serial: &str, e: &DeviceEvent) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO device_events (serial, at, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![serial, e.at, e.actor, e.action, e.detail],
    )
    .map_err(unavailable)?;
    Ok(())
}

fn write_row(tx: &Transaction<'_>, d: &DeviceRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT OR REPLACE INTO devices ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
        params![
            d.serial,
            d.model,
            d.manufacturer,
            d.label,
            d.organisation,
            d.request,
            d.certificate,
            d.so_pin_sealed,
            d.state.as_str(),
            d.receiver,
            d.handed_over_at,
            d.returned_at,
            d.provisioned_at,
            d.updated_at
        ],
    )
    .map(drop)
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::NotFound(format!(
                "organisation {}, request {} or certificate {}",
                d.organisation, d.request, d.certificate
            ))
        }
        e => unavailable(e),
    })
}

impl KeyDevices for SqliteStore {
    fn put_escrowed_key(&self, key: &EscrowedKey, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO escrowed_keys (certificate, organisation, origin, sealed, escrowed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.certificate,
                    key.organisation,
                    key.origin,
                    key.sealed,
                    key.escrowed_at
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    StoreError::Changed(format!(
                        "certificate {} already has an escrowed key",
                        key.certificate
                    ))
                }
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound(format!("certificate {}", key.certificate))
                }
                e => unavailable(e),
            })?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn escrowed_key(&self, serial: &str) -> Result<Option<EscrowedKey>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT certificate, organisation, origin, sealed, escrowed_at, releases,
                    last_released_at
             FROM escrowed_keys WHERE certificate = ?1",
            [serial],
            |r| {
                Ok(EscrowedKey {
                    certificate: r.get(0)?,
                    organisation: r.get(1)?,
                    origin: r.get(2)?,
                    sealed: r.get(3)?,
                    escrowed_at: r.get(4)?,
                    releases: r.get(5)?,
                    last_released_at: r.get(6)?,
                })
            },
        )
        .optional()
        .map_err(unavailable)
    }

    fn record_key_release(
        &self,
        serial: &str,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE escrowed_keys SET releases = releases + 1, last_released_at = ?2
                     WHERE certificate = ?1",
                    params![serial, at],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "no escrowed key for certificate {serial}"
                )));
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn put_device(
        &self,
        device: &DeviceRecord,
        expected: Option<DeviceState>,
        event: &DeviceEvent,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let current = current_state(tx, &device.serial)?;
            let fits = match expected {
                None => matches!(current, None | Some(DeviceState::Wiped)),
                Some(want) => current == Some(want),
            };
            if !fits {
                return Err(StoreError::Changed(format!(
                    "device {} ({})",
                    device.serial,
                    current.map_or("not recorded", DeviceState::as_str)
                )));
            }
            write_row(tx, device)?;
            insert_event(tx, &device.serial, event)?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn restore_device(
        &self,
        serial: &str,
        previous: Option<&DeviceRecord>,
        event: &DeviceEvent,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            match previous {
                Some(p) => write_row(tx, p)?,
                None => {
                    tx.execute("DELETE FROM devices WHERE serial = ?1", [serial])
                        .map_err(unavailable)?;
                }
            }
            insert_event(tx, serial, event)?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn device(&self, serial: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.one("serial", &serial)
    }

    fn device_by_certificate(&self, serial: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.one("certificate", &serial)
    }

    fn device_by_request(&self, id: i64) -> Result<Option<DeviceRecord>, StoreError> {
        self.one("request", &id)
    }

    fn devices(&self, organisations: Option<&[String]>) -> Result<Vec<DeviceRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM devices ORDER BY serial"))
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([], row)
            .map_err(unavailable)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable)?;
        Ok(match organisations {
            None => rows,
            Some(orgs) => rows
                .into_iter()
                .filter(|d| orgs.contains(&d.organisation))
                .collect(),
        })
    }

    fn device_history(&self, serial: &str) -> Result<Vec<DeviceEvent>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(
                "SELECT at, actor, action, detail FROM device_events WHERE serial = ?1 ORDER BY id",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([serial], |r| {
                Ok(DeviceEvent {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(unavailable)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(unavailable);
        rows
    }
}

impl SqliteStore {
    /// The device whose `column` is `value` (the newest, for a request or certificate).
    fn one(
        &self,
        column: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let conn = self.lock()?;
        conn.query_row(
            &format!(
                "SELECT {COLUMNS} FROM devices WHERE {column} = ?1 ORDER BY updated_at DESC LIMIT 1"
            ),
            [value],
            row,
        )
        .optional()
        .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outcome;

    fn audit(action: &str) -> AuditEntry {
        AuditEntry {
            at: 1,
            actor: "t".into(),
            action: action.into(),
            target: "dev-1".into(),
            outcome: Outcome::Success,
            detail: String::new(),
        }
    }

    fn event(action: &str) -> DeviceEvent {
        DeviceEvent {
            at: 1,
            actor: "Trần Thị B".into(),
            action: action.into(),
            detail: "biên bản số 7".into(),
        }
    }

    fn device(state: DeviceState) -> DeviceRecord {
        DeviceRecord {
            serial: "dev-1".into(),
            model: "SoftHSM v2".into(),
            manufacturer: "SoftHSM project".into(),
            label: "usb-0001".into(),
            organisation: "org".into(),
            request: 1,
            certificate: "AB".into(),
            so_pin_sealed: Some(vec![1, 2, 3]),
            state,
            receiver: None,
            handed_over_at: None,
            returned_at: None,
            provisioned_at: 1,
            updated_at: 1,
        }
    }

    /// Each write names the state it moves from: a device moved meanwhile is `Changed`, a
    /// provisioned device is never provisioned over, and a wiped one is.
    #[test]
    fn a_device_moves_only_from_the_state_the_writer_saw_and_keeps_its_history() {
        let (_dir, s) = crate::store::sqlite::tests::store();
        // The rows a device points at (organisation, request, certificate) are the RA's and
        // the CA's; this test is about the device table alone.
        s.lock()
            .expect("lock")
            .execute_batch("PRAGMA foreign_keys=OFF")
            .expect("pragma");
        let provisioned = device(DeviceState::Provisioned);
        s.put_device(
            &provisioned,
            None,
            &event("provisioned"),
            &audit("device.provision"),
        )
        .expect("provision");
        assert!(matches!(
            s.put_device(
                &provisioned,
                None,
                &event("provisioned"),
                &audit("device.provision")
            ),
            Err(StoreError::Changed(_))
        ));
        let mut handed = provisioned.clone();
        handed.state = DeviceState::HandedOver;
        handed.receiver = Some("Trần Văn Bình".into());
        assert!(matches!(
            s.put_device(
                &handed,
                Some(DeviceState::Returned),
                &event("handed-over"),
                &audit("device.handover")
            ),
            Err(StoreError::Changed(_))
        ));
        s.put_device(
            &handed,
            Some(DeviceState::Provisioned),
            &event("handed-over"),
            &audit("device.handover"),
        )
        .expect("hand over");
        assert_eq!(s.device("dev-1").expect("read"), Some(handed.clone()));
        assert_eq!(
            s.device_by_certificate("AB").expect("read"),
            Some(handed.clone())
        );
        assert_eq!(s.device_by_request(1).expect("read"), Some(handed.clone()));
        let mut wiped = handed.clone();
        wiped.state = DeviceState::Wiped;
        wiped.so_pin_sealed = None;
        s.put_device(
            &wiped,
            Some(DeviceState::HandedOver),
            &event("wiped"),
            &audit("device.wipe"),
        )
        .expect("wipe");
        // A wiped device is provisioned again; undoing that restores the wiped row.
        s.put_device(
            &provisioned,
            None,
            &event("provisioned"),
            &audit("device.provision"),
        )
        .expect("provision again");
        s.restore_device(
            "dev-1",
            Some(&wiped),
            &event("provisioning-undone"),
            &audit("device.provision"),
        )
        .expect("undo");
        assert_eq!(s.device("dev-1").expect("read"), Some(wiped));
        let actions: Vec<String> = s
            .device_history("dev-1")
            .expect("history")
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "provisioned",
                "handed-over",
                "wiped",
                "provisioned",
                "provisioning-undone"
            ]
        );
        assert_eq!(
            s.devices(Some(&["other".to_owned()])).expect("list"),
            vec![]
        );
        assert_eq!(s.devices(None).expect("list").len(), 1);
        s.restore_device(
            "dev-1",
            None,
            &event("provisioning-undone"),
            &audit("device.provision"),
        )
        .expect("remove");
        assert_eq!(s.device("dev-1").expect("read"), None);
    }
}
