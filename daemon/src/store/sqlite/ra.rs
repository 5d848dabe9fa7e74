//! SQLite side of the registration authority's role (see `store::ra`; tables in `ra_schema.rs`).

use super::portal::{QUEUE_DUE, QUEUE_OPEN};
use super::{insert_audit, unavailable, SqliteStore};
use crate::store::ra::*;
use crate::store::{AuditEntry, StoreError};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

/// Maps a failed write: a primary-key or unique clash names the record.
fn clash(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::DuplicateName(what.into()),
        _ => unavailable(e),
    }
}

const ORGANISATION_COLUMNS: &str =
    "id, name, registry_id, province, parent, path, email, profiles, sector, created_at, deleted_at";

fn organisation_row(r: &Row<'_>) -> rusqlite::Result<Organisation> {
    let profiles: String = r.get(7)?;
    Ok(Organisation {
        id: r.get(0)?,
        name: r.get(1)?,
        registry_id: r.get(2)?,
        province: r.get(3)?,
        parent: r.get(4)?,
        path: r.get(5)?,
        email: r.get(6)?,
        profiles: profiles
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        sector: r.get(8)?,
        created_at: r.get(9)?,
        deleted_at: r.get(10)?,
    })
}

const OPERATOR_COLUMNS: &str = "o.id, o.name, o.email, o.role, o.organisation, o.scope, \
     o.password_hash, o.totp_sealed, o.created_at, o.removed_at";

fn invalid(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.into(), rusqlite::types::Type::Text)
}

fn operator_row(r: &Row<'_>) -> rusqlite::Result<Operator> {
    let role: String = r.get(3)?;
    let scope: String = r.get(5)?;
    Ok(Operator {
        id: r.get(0)?,
        name: r.get(1)?,
        email: r.get(2)?,
        role: Role::parse(&role).ok_or_else(|| invalid("role"))?,
        organisation: r.get(4)?,
        scope: Scope::parse(&scope).ok_or_else(|| invalid("scope"))?,
        password_hash: r.get(6)?,
        totp_sealed: r.get(7)?,
        created_at: r.get(8)?,
        removed_at: r.get(9)?,
    })
}

const REQUEST_COLUMNS: &str = "id, kind, organisation, province, org_path, state, profile, \
     key_origin, issuer, subscriber_name, subscriber_email, subscriber_title, subscriber_unit, \
     subscriber_phone, subscriber_id_number, csr, certificate, issued_certificate, reason, \
     document, batch, submitted_by, submitted_at, accepted_at, due_at, fulfilled_at, closed_at, \
     breach_notified_at, erased_at, updated_at, recovery";

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRecord> {
    let kind: String = r.get(1)?;
    let state: String = r.get(5)?;
    let origin: String = r.get(7)?;
    Ok(RequestRecord {
        id: r.get(0)?,
        kind: RequestKind::parse(&kind).ok_or_else(|| invalid("kind"))?,
        organisation: r.get(2)?,
        province: r.get(3)?,
        org_path: r.get(4)?,
        state: RequestState::parse(&state).ok_or_else(|| invalid("state"))?,
        profile: r.get(6)?,
        key_origin: KeyOrigin::parse(&origin).ok_or_else(|| invalid("key_origin"))?,
        issuer: r.get(8)?,
        subscriber: SubscriberFields {
            name: r.get(9)?,
            email: r.get(10)?,
            title: r.get(11)?,
            unit: r.get(12)?,
            phone_sealed: r.get(13)?,
            id_number_sealed: r.get(14)?,
        },
        csr: r.get(15)?,
        certificate: r.get(16)?,
        issued_certificate: r.get(17)?,
        reason: r.get(18)?,
        document: r.get(19)?,
        batch: r.get(20)?,
        submitted_by: r.get(21)?,
        submitted_at: r.get(22)?,
        accepted_at: r.get(23)?,
        due_at: r.get(24)?,
        fulfilled_at: r.get(25)?,
        closed_at: r.get(26)?,
        breach_notified_at: r.get(27)?,
        erased_at: r.get(28)?,
        updated_at: r.get(29)?,
        recovery: match r.get::<_, Option<String>>(30)? {
            Some(v) => Some(AccountRecovery::parse(&v).ok_or_else(|| invalid("recovery"))?),
            None => None,
        },
    })
}

fn request_in(conn: &Connection, id: i64) -> Result<Option<RequestRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
        [id],
        request_row,
    )
    .optional()
    .map_err(unavailable)
}

fn insert_event(conn: &Connection, request: i64, e: &RequestEvent) -> rusqlite::Result<usize> {
    // The statements of a submission and a transition are cached: parsing them was a tenth of
    // a submission's time (bench/src/bin/ra.rs).
    conn.prepare_cached(
        "INSERT INTO request_events (request, at, actor, action, from_state, to_state, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        request,
        e.at,
        e.actor,
        e.action,
        e.from.map(RequestState::as_str),
        e.to.as_str(),
        e.reason
    ])
}

fn insert_document(conn: &Connection, d: &DocumentRecord) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO documents (filename, content, signature, sha256, valid,
         signer_serial, signer_issuer, signer_subject, signed_at, problem, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        d.filename,
        d.content,
        d.signature,
        d.sha256,
        d.valid,
        d.signer_serial,
        d.signer_issuer,
        d.signer_subject,
        d.signed_at,
        d.problem,
        d.created_at
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Replaces a request's dossier with a corrected one (see [`Transition::corrected`]).
fn correct_request(
    conn: &Connection,
    id: i64,
    r: &RequestRecord,
    document: Option<i64>,
) -> rusqlite::Result<()> {
    let s = &r.subscriber;
    conn.execute(
        "UPDATE requests SET profile = ?2, key_origin = ?3, issuer = ?4, subscriber_name = ?5,
           subscriber_email = ?6, subscriber_title = ?7, subscriber_unit = ?8,
           subscriber_phone = ?9, subscriber_id_number = ?10, csr = ?11, certificate = ?12,
           reason = ?13, document = COALESCE(?14, document), recovery = ?15
         WHERE id = ?1",
        params![
            id,
            r.profile,
            r.key_origin.as_str(),
            r.issuer,
            s.name,
            s.email,
            s.title,
            s.unit,
            s.phone_sealed,
            s.id_number_sealed,
            r.csr,
            r.certificate,
            r.reason,
            document,
            r.recovery.map(AccountRecovery::as_str)
        ],
    )?;
    Ok(())
}

fn insert_request(
    conn: &Connection,
    r: &RequestRecord,
    document: Option<i64>,
) -> rusqlite::Result<i64> {
    let s = &r.subscriber;
    conn.prepare_cached(&format!(
        "INSERT INTO requests ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
             ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)",
        &REQUEST_COLUMNS["id, ".len()..]
    ))?
    .execute(params![
        r.kind.as_str(),
        r.organisation,
        r.province,
        r.org_path,
        r.state.as_str(),
        r.profile,
        r.key_origin.as_str(),
        r.issuer,
        s.name,
        s.email,
        s.title,
        s.unit,
        s.phone_sealed,
        s.id_number_sealed,
        r.csr,
        r.certificate,
        r.issued_certificate,
        r.reason,
        document,
        r.batch,
        r.submitted_by,
        r.submitted_at,
        r.accepted_at,
        r.due_at,
        r.fulfilled_at,
        r.closed_at,
        r.breach_notified_at,
        r.erased_at,
        r.updated_at,
        r.recovery.map(AccountRecovery::as_str),
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Runs a prepared statement and collects its rows.
fn collect<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    stmt.query_map(params, row)
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)
}

/// A query with numbered parameters, built clause by clause.
struct Query {
    sql: String,
    args: Vec<Value>,
}

impl Query {
    fn new(sql: String) -> Self {
        Self {
            sql,
            args: Vec::new(),
        }
    }

    fn bind(&mut self, clause: &str, v: Value) {
        self.args.push(v);
        self.sql
            .push_str(&clause.replace('?', &format!("?{}", self.args.len())));
    }

    /// The scope part of a filter (province, subtree, organisation), on the columns of the
    /// requests table aliased `alias` (with its dot, or empty).
    fn scope(&mut self, f: &RequestFilter, alias: &str) {
        if let Some(p) = &f.province {
            self.bind(&format!(" AND {alias}province = ?"), Value::Text(p.clone()));
        }
        if let Some(path) = &f.under_path {
            // The subtree is a prefix range of the path (every path ends in '/').
            self.bind(
                &format!(" AND {alias}org_path >= ?"),
                Value::Text(path.clone()),
            );
            let mut end = path.clone();
            end.pop();
            end.push('0'); // '0' sorts right after '/'
            self.bind(&format!(" AND {alias}org_path < ?"), Value::Text(end));
        }
        if let Some(o) = &f.organisation {
            self.bind(
                &format!(" AND {alias}organisation = ?"),
                Value::Text(o.clone()),
            );
        }
    }
}

impl RaRequests for SqliteStore {
    fn add_organisation(&self, org: &Organisation, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO organisations ({ORGANISATION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    org.id,
                    org.name,
                    org.registry_id,
                    org.province,
                    org.parent,
                    org.path,
                    org.email,
                    org.profiles.join(","),
                    org.sector,
                    org.created_at,
                    org.deleted_at
                ],
            )
            .map_err(clash(&org.id))?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn organisation(&self, id: &str) -> Result<Option<Organisation>, StoreError> {
        self.lock()?
            .query_row(
                &format!("SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE id = ?1"),
                [id],
                organisation_row,
            )
            .optional()
            .map_err(unavailable)
    }

    fn organisations(&self) -> Result<Vec<Organisation>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE deleted_at IS NULL ORDER BY id"
            ))
            .map_err(unavailable)?;
        collect(&mut stmt, [], organisation_row)
    }

    fn remove_organisation(&self, id: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE organisations SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                    params![id, at],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(id.into()));
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn add_operator(&self, op: &Operator, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO operators (id, name, email, role, organisation, scope, password_hash,
                 totp_sealed, created_at, removed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    op.id,
                    op.name,
                    op.email,
                    op.role.as_str(),
                    op.organisation,
                    op.scope.to_string(),
                    op.password_hash,
                    op.totp_sealed,
                    op.created_at,
                    op.removed_at
                ],
            )
            .map_err(clash(&op.id))?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        self.lock()?
            .query_row(
                &format!("SELECT {OPERATOR_COLUMNS} FROM operators o WHERE o.id = ?1"),
                [id],
                operator_row,
            )
            .optional()
            .map_err(unavailable)
    }

    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {OPERATOR_COLUMNS} FROM operators o WHERE o.removed_at IS NULL ORDER BY o.id"
            ))
            .map_err(unavailable)?;
        collect(&mut stmt, [], operator_row)
    }

    fn spend_operator_totp_step(&self, id: &str, step: u64) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE operators SET totp_last_step = ?2
                     WHERE id = ?1 AND totp_last_step < ?2 AND removed_at IS NULL",
                    params![id, step],
                )
                .map_err(unavailable)?;
            Ok(n == 1)
        })
    }

    fn update_operator(&self, op: &Operator, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE operators SET name = ?2, email = ?3, role = ?4, organisation = ?5,
                     scope = ?6, password_hash = ?7, totp_sealed = ?8
                     WHERE id = ?1 AND removed_at IS NULL",
                    params![
                        op.id,
                        op.name,
                        op.email,
                        op.role.as_str(),
                        op.organisation,
                        op.scope.to_string(),
                        op.password_hash,
                        op.totp_sealed
                    ],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(op.id.clone()));
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn remove_operator(&self, id: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE operators SET removed_at = ?2 WHERE id = ?1 AND removed_at IS NULL",
                    params![id, at],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::NotFound(id.into()));
            }
            tx.execute(
                "UPDATE operator_tokens SET revoked_at = ?2 WHERE operator = ?1 AND revoked_at IS NULL",
                params![id, at],
            )
            .map_err(unavailable)?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn add_operator_certificate(
        &self,
        fingerprint: &[u8],
        operator: &str,
        serial: &str,
        issuer: &str,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO operator_certificates (fingerprint, operator, serial, issuer, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![fingerprint, operator, serial, issuer, audit.at],
            )
            .map_err(clash(serial))?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn operator_by_certificate(&self, fingerprint: &[u8]) -> Result<Option<Operator>, StoreError> {
        // Asked for every signed document (is its signer an operator?): a cached statement.
        self.lock()?
            .prepare_cached(&format!(
                "SELECT {OPERATOR_COLUMNS} FROM operator_certificates c
                 JOIN operators o ON o.id = c.operator
                 WHERE c.fingerprint = ?1 AND o.removed_at IS NULL"
            ))
            .and_then(|mut s| s.query_row([fingerprint], operator_row).optional())
            .map_err(unavailable)
    }

    fn add_token(
        &self,
        hash: &[u8],
        operator: &str,
        at: u64,
        expires_at: u64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO operator_tokens (hash, operator, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![hash, operator, at, expires_at],
            )
            .map_err(clash("token"))?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn operator_by_token(&self, hash: &[u8], now: u64) -> Result<Option<Operator>, StoreError> {
        self.lock()?
            .query_row(
                &format!(
                    "SELECT {OPERATOR_COLUMNS} FROM operator_tokens t
                     JOIN operators o ON o.id = t.operator
                     WHERE t.hash = ?1 AND t.revoked_at IS NULL AND t.expires_at > ?2
                       AND o.removed_at IS NULL"
                ),
                params![hash, now],
                operator_row,
            )
            .optional()
            .map_err(unavailable)
    }

    fn revoke_tokens(&self, operator: &str, at: u64, audit: &AuditEntry) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE operator_tokens SET revoked_at = ?2 WHERE operator = ?1 AND revoked_at IS NULL",
                params![operator, at],
            )
            .map_err(unavailable)?;
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(())
        })
    }

    fn submit_requests(
        &self,
        document: Option<&DocumentRecord>,
        requests: &[RequestRecord],
        audit: &AuditEntry,
        notices: &dyn Fn(&RequestRecord) -> Vec<crate::store::OutboxMessage>,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        self.write(|tx| {
            let document_id = document
                .map(|d| insert_document(tx, d))
                .transpose()
                .map_err(unavailable)?;
            let mut stored = Vec::with_capacity(requests.len());
            for r in requests {
                let id = insert_request(tx, r, document_id).map_err(unavailable)?;
                let submit = RequestEvent {
                    at: r.submitted_at,
                    actor: r.submitted_by.clone(),
                    action: "submit".into(),
                    from: None,
                    to: RequestState::Submitted,
                    reason: None,
                };
                insert_event(tx, id, &submit).map_err(unavailable)?;
                if r.state != RequestState::Submitted {
                    let action = match r.state {
                        RequestState::Accepted => "accept",
                        _ => "await-original",
                    };
                    let first = RequestEvent {
                        action: action.into(),
                        from: Some(RequestState::Submitted),
                        to: r.state,
                        ..submit
                    };
                    insert_event(tx, id, &first).map_err(unavailable)?;
                }
                let mut r = r.clone();
                r.id = id;
                r.document = document_id;
                for m in notices(&r) {
                    super::insert_outbox(tx, &m, r.submitted_at).map_err(unavailable)?;
                }
                stored.push(r);
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(stored)
        })
    }

    fn request(&self, id: i64) -> Result<Option<RequestRecord>, StoreError> {
        let conn = self.read()?;
        request_in(&conn, id)
    }

    fn requests(&self, f: &RequestFilter) -> Result<Vec<RequestRecord>, StoreError> {
        let mut q = Query::new(format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE 1 = 1"
        ));
        q.scope(f, "");
        let (mut sql, mut args) = (q.sql, q.args);
        let mut bind = |sql: &mut String, clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = f.state {
            bind(&mut sql, " AND state = ?", Value::Text(s.as_str().into()));
        }
        if let Some(k) = f.kind {
            bind(&mut sql, " AND kind = ?", Value::Text(k.as_str().into()));
        }
        if let Some(o) = f.key_origin {
            bind(
                &mut sql,
                " AND key_origin = ?",
                Value::Text(o.as_str().into()),
            );
        }
        if let Some(t) = f.due_before {
            bind(
                &mut sql,
                " AND state IN ('accepted', 'approved') AND due_at < ?",
                Value::Integer(t as i64),
            );
        }
        if let Some(serial) = &f.issued_certificate {
            bind(
                &mut sql,
                " AND issued_certificate = ?",
                Value::Text(serial.clone()),
            );
        }
        if let Some(d) = f.document {
            bind(&mut sql, " AND document = ?", Value::Integer(d));
        }
        match f.order {
            RequestOrder::Newest => {
                if let Some(id) = f.before_id {
                    bind(&mut sql, " AND id < ?", Value::Integer(id));
                }
                bind(
                    &mut sql,
                    " ORDER BY id DESC LIMIT ?",
                    Value::Integer(f.limit as i64),
                );
            }
            RequestOrder::Queue(after) => {
                // The expression and the WHERE are those of the requests_queue indexes
                // (ra_schema::QUEUE_INDEXES), so SQLite walks an index instead of sorting.
                sql.push_str(&format!(" AND {QUEUE_OPEN}"));
                if let Some(k) = after {
                    bind(
                        &mut sql,
                        &format!(" AND ({QUEUE_DUE}, id) > (?, "),
                        Value::Integer(k.due),
                    );
                    bind(&mut sql, "?)", Value::Integer(k.id));
                }
                bind(
                    &mut sql,
                    &format!(" ORDER BY {QUEUE_DUE}, id LIMIT ?"),
                    Value::Integer(f.limit as i64),
                );
            }
        }
        let conn = self.read()?;
        let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
        collect(&mut stmt, params_from_iter(args), request_row)
    }

    fn transition(&self, t: &Transition) -> Result<RequestRecord, StoreError> {
        self.write(|tx| {
            let closed = t.to.is_closed().then_some(t.at);
            let fulfilled = (t.to == RequestState::Fulfilled).then_some(t.at);
            let (set_deadline, accepted_at, due_at) = match t.deadline {
                Some((a, d)) => (true, a, d),
                None => (false, None, None),
            };
            let n = tx
                .execute(
                    "UPDATE requests SET state = ?3, updated_at = ?4,
                       closed_at = COALESCE(?5, closed_at),
                       fulfilled_at = COALESCE(?6, fulfilled_at),
                       accepted_at = CASE WHEN ?7 THEN ?8 ELSE accepted_at END,
                       due_at = CASE WHEN ?7 THEN ?9 ELSE due_at END,
                       issued_certificate = COALESCE(?10, issued_certificate)
                     WHERE id = ?1 AND state = ?2",
                    params![
                        t.request,
                        t.from.as_str(),
                        t.to.as_str(),
                        t.at,
                        closed,
                        fulfilled,
                        set_deadline,
                        accepted_at,
                        due_at,
                        t.issued_certificate
                    ],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(match request_in(tx, t.request)? {
                    None => StoreError::NotFound(format!("request {}", t.request)),
                    Some(_) => StoreError::Changed(format!("request {}", t.request)),
                });
            }
            let event = RequestEvent {
                at: t.at,
                actor: t.actor.clone(),
                action: t.action.clone(),
                from: Some(t.from),
                to: t.to,
                reason: t.reason.clone(),
            };
            insert_event(tx, t.request, &event).map_err(unavailable)?;
            if let Some((record, document)) = &t.corrected {
                let doc = document
                    .as_ref()
                    .map(|d| insert_document(tx, d))
                    .transpose()
                    .map_err(unavailable)?;
                correct_request(tx, t.request, record, doc).map_err(unavailable)?;
            }
            for m in &t.notices {
                super::insert_outbox(tx, m, t.at).map_err(unavailable)?;
            }
            if let Some((serial, sha256)) = &t.revocation_code {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO revocation_codes (serial, sha256, created_at)
                     VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut st| st.execute(params![serial, sha256, t.at]))
                .map_err(unavailable)?;
            }
            insert_audit(tx, &t.audit).map_err(unavailable)?;
            request_in(tx, t.request)?.ok_or_else(|| StoreError::NotFound(t.request.to_string()))
        })
    }

    fn request_events(&self, id: i64) -> Result<Vec<RequestEvent>, StoreError> {
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT at, actor, action, from_state, to_state, reason FROM request_events
                 WHERE request = ?1 ORDER BY id",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([id], |r| {
                let from: Option<String> = r.get(3)?;
                let to: String = r.get(4)?;
                Ok(RequestEvent {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    from: from.as_deref().and_then(RequestState::parse),
                    to: RequestState::parse(&to).ok_or_else(|| invalid("to_state"))?,
                    reason: r.get(5)?,
                })
            })
            .map_err(unavailable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        Ok(rows)
    }

    fn document(&self, id: i64) -> Result<Option<DocumentRecord>, StoreError> {
        self.lock()?
            .query_row(
                "SELECT id, filename, content, signature, sha256, valid, signer_serial,
                 signer_issuer, signer_subject, signed_at, problem, created_at
                 FROM documents WHERE id = ?1",
                [id],
                |r| {
                    Ok(DocumentRecord {
                        id: r.get(0)?,
                        filename: r.get(1)?,
                        content: r.get(2)?,
                        signature: r.get(3)?,
                        sha256: r.get(4)?,
                        valid: r.get(5)?,
                        signer_serial: r.get(6)?,
                        signer_issuer: r.get(7)?,
                        signer_subject: r.get(8)?,
                        signed_at: r.get(9)?,
                        problem: r.get(10)?,
                        created_at: r.get(11)?,
                    })
                },
            )
            .optional()
            .map_err(unavailable)
    }

    fn report_rows(
        &self,
        scope: &RequestFilter,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(&ReportRow),
    ) -> Result<(), StoreError> {
        let mut q = Query::new(
            "SELECT kind, state, organisation, key_origin, submitted_at, accepted_at, due_at,
             fulfilled_at, closed_at FROM requests WHERE 1 = 1"
                .into(),
        );
        q.scope(scope, "");
        q.bind(" AND (submitted_at BETWEEN ?", Value::Integer(from as i64));
        q.bind(" AND ?", Value::Integer(to as i64 - 1));
        q.bind(" OR fulfilled_at BETWEEN ?", Value::Integer(from as i64));
        q.bind(" AND ?", Value::Integer(to as i64 - 1));
        q.bind(" OR due_at BETWEEN ?", Value::Integer(from as i64));
        q.bind(" AND ?)", Value::Integer(to as i64 - 1));
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&q.sql).map_err(unavailable)?;
        let mut rows = stmt.query(params_from_iter(q.args)).map_err(unavailable)?;
        while let Some(r) = rows.next().map_err(unavailable)? {
            // Borrowed text, parsed without allocating: a year of a large subtree is a million
            // rows.
            let text = |i: usize| super::row_text(r, i);
            let row = ReportRow {
                kind: RequestKind::parse(text(0)?).ok_or_else(|| unavailable(invalid("kind")))?,
                state: RequestState::parse(text(1)?)
                    .ok_or_else(|| unavailable(invalid("state")))?,
                organisation: text(2)?,
                key_origin: KeyOrigin::parse(text(3)?)
                    .ok_or_else(|| unavailable(invalid("key_origin")))?,
                submitted_at: r.get(4).map_err(unavailable)?,
                accepted_at: r.get(5).map_err(unavailable)?,
                due_at: r.get(6).map_err(unavailable)?,
                fulfilled_at: r.get(7).map_err(unavailable)?,
                closed_at: r.get(8).map_err(unavailable)?,
            };
            visit(&row);
        }
        Ok(())
    }

    fn request_counts_by_state(
        &self,
        scope: &RequestFilter,
    ) -> Result<Vec<(RequestState, u64)>, StoreError> {
        let mut q = Query::new("SELECT state, COUNT(*) FROM requests WHERE 1 = 1".into());
        q.scope(scope, "");
        q.sql.push_str(" GROUP BY state");
        let conn = self.read()?;
        let mut stmt = conn.prepare(&q.sql).map_err(unavailable)?;
        let mut rows = stmt.query(params_from_iter(q.args)).map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(unavailable)? {
            let state = RequestState::parse(super::row_text(r, 0)?)
                .ok_or_else(|| unavailable(invalid("state")))?;
            let n: i64 = r.get(1).map_err(unavailable)?;
            out.push((state, n.max(0) as u64));
        }
        Ok(out)
    }

    fn certificate_counts(
        &self,
        scope: &RequestFilter,
        at: u64,
        horizon: u64,
    ) -> Result<CertificateCounts, StoreError> {
        // The status and end kept beside each request (migration 11): one covering index of
        // the subtree, no certificate probed.
        let mut q = Query::new(
            "SELECT
               COALESCE(SUM(certificate_status = 'valid' AND certificate_not_after > ?1), 0),
               COALESCE(SUM(certificate_status = 'valid' AND certificate_not_after > ?1
                            AND certificate_not_after <= ?2), 0),
               COALESCE(SUM(certificate_status IN ('revoked', 'hold')), 0)
             FROM requests WHERE issued_certificate IS NOT NULL"
                .into(),
        );
        q.args.push(Value::Integer(at as i64));
        q.args.push(Value::Integer(horizon as i64));
        q.scope(scope, "");
        let conn = self.lock()?;
        conn.query_row(&q.sql, params_from_iter(q.args), |r| {
            Ok(CertificateCounts {
                valid: r.get(0)?,
                expiring: r.get(1)?,
                revoked: r.get(2)?,
            })
        })
        .map_err(unavailable)
    }

    fn certificates_expiring_by_month(
        &self,
        scope: &RequestFilter,
        at: u64,
        until: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        // The same index as `certificate_counts` (status and end beside each request), grouped
        // by the local month of the end: Vietnam keeps +07:00 all year.
        let mut q = Query::new(
            "SELECT strftime('%Y-%m', certificate_not_after + 25200, 'unixepoch') AS month,
                    COUNT(*)
             FROM requests WHERE issued_certificate IS NOT NULL
               AND certificate_status = 'valid' AND certificate_not_after > ?1
               AND certificate_not_after < ?2"
                .into(),
        );
        q.args.push(Value::Integer(at.min(i64::MAX as u64) as i64));
        q.args
            .push(Value::Integer(until.min(i64::MAX as u64) as i64));
        q.scope(scope, "");
        q.sql.push_str(" GROUP BY month ORDER BY month");
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&q.sql).map_err(unavailable)?;
        collect(&mut stmt, params_from_iter(q.args), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })
    }

    fn pause_issuance(&self, p: &IssuancePause, audit: &AuditEntry) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO issuance_pauses (issuer, paused_at, paused_by, reason)
                 VALUES (?1, ?2, ?3, ?4)",
                params![p.issuer, p.paused_at, p.paused_by, p.reason],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    StoreError::Changed(format!("issuance by {}", p.issuer))
                }
                _ => unavailable(e),
            })?;
            let id = tx.last_insert_rowid();
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(id)
        })
    }

    fn active_pause(&self, issuer: &str) -> Result<Option<IssuancePause>, StoreError> {
        self.lock()?
            .query_row(
                &format!("SELECT {PAUSE_COLUMNS} FROM issuance_pauses WHERE issuer = ?1 AND resumed_at IS NULL"),
                [issuer],
                pause_row,
            )
            .optional()
            .map_err(unavailable)
    }

    fn pauses(&self, from: u64, to: u64) -> Result<Vec<IssuancePause>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {PAUSE_COLUMNS} FROM issuance_pauses
                 WHERE paused_at < ?2 AND (resumed_at IS NULL OR resumed_at > ?1) ORDER BY id"
            ))
            .map_err(unavailable)?;
        collect(&mut stmt, params![from, to], pause_row)
    }

    fn propose(&self, c: &Confirmation, audit: &AuditEntry) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO confirmations (action, target, reason, requested_by, requested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.action, c.target, c.reason, c.requested_by, c.requested_at],
            )
            .map_err(unavailable)?;
            let id = tx.last_insert_rowid();
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(id)
        })
    }

    fn confirmation(&self, id: i64) -> Result<Option<Confirmation>, StoreError> {
        let conn = self.lock()?;
        confirmation_in(&conn, id)
    }

    fn pending_confirmations(&self) -> Result<Vec<Confirmation>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CONFIRMATION_COLUMNS} FROM confirmations WHERE confirmed_at IS NULL ORDER BY id"
            ))
            .map_err(unavailable)?;
        collect(&mut stmt, [], confirmation_row)
    }

    fn confirm(
        &self,
        id: i64,
        by: &str,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<Confirmation, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE confirmations SET confirmed_by = ?2, confirmed_at = ?3
                     WHERE id = ?1 AND confirmed_at IS NULL AND requested_by <> ?2",
                    params![id, by, at],
                )
                .map_err(unavailable)?;
            let c = confirmation_in(tx, id)?
                .ok_or_else(|| StoreError::NotFound(format!("confirmation {id}")))?;
            if n == 0 {
                return Err(StoreError::Changed(format!("confirmation {id}")));
            }
            if c.action == "issuance.resume" {
                tx.execute(
                    "UPDATE issuance_pauses SET resumed_at = ?2, resumed_by = ?3
                     WHERE issuer = ?1 AND resumed_at IS NULL",
                    params![c.target, at, by],
                )
                .map_err(unavailable)?;
            }
            insert_audit(tx, audit).map_err(unavailable)?;
            Ok(c)
        })
    }

    fn erase_personal_data(
        &self,
        closed_before: u64,
        at: u64,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(|tx| {
            let ids: Vec<i64> = tx
                .prepare(
                    "SELECT id FROM requests
                     WHERE closed_at IS NOT NULL AND closed_at < ?1 AND erased_at IS NULL",
                )
                .and_then(|mut st| {
                    st.query_map([closed_before], |r| r.get(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            for id in &ids {
                super::erase_outbox_of(tx, *id, at).map_err(unavailable)?;
            }
            let n = tx
                .execute(
                    "UPDATE requests SET subscriber_name = NULL, subscriber_email = NULL,
                       subscriber_title = NULL, subscriber_unit = NULL, subscriber_phone = NULL,
                       subscriber_id_number = NULL, csr = NULL, erased_at = ?2
                     WHERE closed_at IS NOT NULL AND closed_at < ?1 AND erased_at IS NULL",
                    params![closed_before, at],
                )
                .map_err(unavailable)?;
            // A document goes when every request it covers is erased.
            tx.execute(
                "UPDATE documents SET content = X'', signature = NULL
                 WHERE length(content) > 0 AND id IN (SELECT document FROM requests
                   WHERE document IS NOT NULL GROUP BY document
                   HAVING SUM(erased_at IS NULL) = 0)",
                [],
            )
            .map_err(unavailable)?;
            if n > 0 {
                let mut audit = audit.clone();
                audit.detail = format!("requests={n}");
                insert_audit(tx, &audit).map_err(unavailable)?;
            }
            Ok(n as u64)
        })
    }

    fn spend_revocation_code(
        &self,
        serial: &str,
        sha256: &[u8],
        at: u64,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE revocation_codes SET used_at = ?3
                     WHERE serial = ?1 AND sha256 = ?2 AND used_at IS NULL",
                    params![serial, sha256, at],
                )
                .map_err(unavailable)?;
            if n == 1 {
                insert_audit(tx, audit).map_err(unavailable)?;
            }
            Ok(n == 1)
        })
    }

    fn restore_revocation_code(&self, serial: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE revocation_codes SET used_at = NULL WHERE serial = ?1",
                [serial],
            )
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn requests_of_subscriber(&self, email: &str) -> Result<Vec<RequestRecord>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM requests WHERE subscriber_email = ?1 ORDER BY id"
            ))
            .map_err(unavailable)?;
        collect(&mut stmt, [email], request_row)
    }
}

const PAUSE_COLUMNS: &str = "id, issuer, paused_at, paused_by, reason, resumed_at, resumed_by";

fn pause_row(r: &Row<'_>) -> rusqlite::Result<IssuancePause> {
    Ok(IssuancePause {
        id: r.get(0)?,
        issuer: r.get(1)?,
        paused_at: r.get(2)?,
        paused_by: r.get(3)?,
        reason: r.get(4)?,
        resumed_at: r.get(5)?,
        resumed_by: r.get(6)?,
    })
}

const CONFIRMATION_COLUMNS: &str =
    "id, action, target, reason, requested_by, requested_at, confirmed_by, confirmed_at";

fn confirmation_row(r: &Row<'_>) -> rusqlite::Result<Confirmation> {
    Ok(Confirmation {
        id: r.get(0)?,
        action: r.get(1)?,
        target: r.get(2)?,
        reason: r.get(3)?,
        requested_by: r.get(4)?,
        requested_at: r.get(5)?,
        confirmed_by: r.get(6)?,
        confirmed_at: r.get(7)?,
    })
}

fn confirmation_in(conn: &Connection, id: i64) -> Result<Option<Confirmation>, StoreError> {
    conn.query_row(
        &format!("SELECT {CONFIRMATION_COLUMNS} FROM confirmations WHERE id = ?1"),
        [id],
        confirmation_row,
    )
    .optional()
    .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Certificates, Outcome};

    fn audit(action: &str) -> AuditEntry {
        AuditEntry {
            at: 1,
            actor: "t".into(),
            action: action.into(),
            target: String::new(),
            outcome: Outcome::Success,
            detail: String::new(),
        }
    }

    #[test]
    fn certificate_counts_follow_revocations_and_rows_loaded_in_either_order() {
        let (_dir, s) = crate::store::sqlite::tests::store();
        let request = crate::store::sqlite::outbox::tests::request;
        for id in 1..=3 {
            request(&s, id, "fulfilled", 0);
        }
        let cert = |serial: &str, not_after: u64| {
            s.lock()
                .expect("lock")
                .execute(
                    "INSERT INTO certificates (serial, issuer, subject, profile, not_before,
                                               not_after, status, tbs, created_at, updated_at)
                     VALUES (?1, 'issuing', 'CN=x', 'person', 0, ?2, 'valid', x'00', 0, 0)",
                    params![serial, not_after],
                )
                .expect("certificate");
        };
        let issued = |id: i64, serial: &str| {
            s.lock()
                .expect("lock")
                .execute(
                    "UPDATE requests SET issued_certificate = ?2 WHERE id = ?1",
                    params![id, serial],
                )
                .expect("issued");
        };
        // The certificate first, then the request names it (the RA's fulfilment order)…
        cert("0a", 5_000);
        issued(1, "0a");
        // …or the request names a certificate stored after it (a restored or loaded database).
        issued(2, "0b");
        cert("0b", 1_500);
        cert("0c", 5_000);
        issued(3, "0c");
        let scope = RequestFilter {
            under_path: Some("/so-tt-dn/".into()),
            ..RequestFilter::default()
        };
        let counts = s.certificate_counts(&scope, 1_000, 2_000).expect("counts");
        assert_eq!((counts.valid, counts.expiring, counts.revoked), (3, 1, 0));
        // Revoked by the CA: the request's copy follows in the same transaction.
        s.change_status(
            "0c",
            crate::store::StatusChange::Revoke {
                reason: pkid_protocols::revocation::CrlReason::KeyCompromise,
                at: 1_100,
                invalidity_date: None,
            },
            &audit("cert.revoke"),
        )
        .expect("revoke");
        let counts = s.certificate_counts(&scope, 1_000, 2_000).expect("counts");
        assert_eq!((counts.valid, counts.expiring, counts.revoked), (2, 1, 1));
        // Expired by the clock alone.
        let counts = s.certificate_counts(&scope, 1_600, 2_600).expect("counts");
        assert_eq!((counts.valid, counts.expiring, counts.revoked), (1, 0, 1));
    }

    #[test]
    fn a_token_authenticates_only_until_it_expires_is_revoked_or_its_operator_is_removed() {
        let (_dir, s) = crate::store::sqlite::tests::store();
        let op = Operator {
            id: "ra".into(),
            name: "Trần Thị B".into(),
            email: None,
            role: Role::RaOfficer,
            organisation: None,
            scope: Scope::All,
            password_hash: None,
            totp_sealed: None,
            created_at: 1,
            removed_at: None,
        };
        s.add_operator(&op, &audit("operator.add"))
            .expect("operator");
        s.add_token(b"h1", "ra", 10, 100, &audit("operator.token"))
            .expect("token");
        assert_eq!(
            s.operator_by_token(b"h1", 99).expect("read").map(|o| o.id),
            Some("ra".into())
        );
        assert!(
            s.operator_by_token(b"h1", 100).expect("read").is_none(),
            "expired"
        );
        assert!(
            s.operator_by_token(b"other", 50).expect("read").is_none(),
            "unknown"
        );
        s.revoke_tokens("ra", 50, &audit("operator.revoke-tokens"))
            .expect("revoke");
        assert!(
            s.operator_by_token(b"h1", 60).expect("read").is_none(),
            "revoked"
        );
        s.add_token(b"h2", "ra", 60, 1000, &audit("operator.token"))
            .expect("token");
        s.remove_operator("ra", 70, &audit("operator.remove"))
            .expect("remove");
        assert!(
            s.operator_by_token(b"h2", 80).expect("read").is_none(),
            "operator removed"
        );
    }
}
