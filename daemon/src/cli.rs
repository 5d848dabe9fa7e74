//! The command line: `pkid init | serve | ca | cert | audit`.
//!
//! Every command prints one clear error line and exits non-zero on failure; none panics on bad
//! input. Secrets never come from arguments: the PKCS#11 PIN is read from a file or an
//! environment variable named in the configuration.

mod calendar;
mod credential;
pub use credential::CredentialCommand;
mod crl;
mod ra;
mod token;
pub use calendar::CalendarCommand;
mod audit;
pub use audit::EXIT_AUDIT_BROKEN;
pub use crl::CrlCommand;

use crate::ca::CaError;
use crate::datadir::{self, InitOptions};
use crate::store::{CertStatus, CertificateRecord, ListFilter};
use clap::{Args, Parser, Subcommand};
use pkid_protocols::revocation;
use pkid_protocols::time::rfc3339;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// pkid: certificate authority with OCSP, CRL, timestamps, EST and CMP.
#[derive(Parser, Debug)]
#[command(name = "pkid", version, about)]
pub struct Cli {
    /// Data directory (configuration, store, keys, certificates).
    #[arg(long, global = true, env = "PKID_DATA", default_value = "pkid-data")]
    pub data: PathBuf,
    /// Who is acting, for the audit log (defaults to the login name).
    #[arg(long, global = true, env = "PKID_ACTOR")]
    pub actor: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the CA hierarchy (root, issuing CA, OCSP responder, TSA, HTTPS certificate).
    Init(InitArgs),
    /// Run the daemon (initialises the data directory on first start).
    Serve(ServeArgs),
    /// CA certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Subscriber certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Certificate revocation lists.
    #[command(subcommand)]
    Crl(CrlCommand),
    /// Organisations (the registration authority).
    #[command(subcommand)]
    Org(ra::OrgCommand),
    /// RA operators: officers, auditors, CA admins, and their credentials.
    #[command(subcommand)]
    Operator(ra::OperatorCommand),
    /// RA requests.
    #[command(subcommand)]
    Request(ra::RequestCommand),
    /// The RA's periodic report of an organisation subtree (JSON or CSV).
    Report(ra::ReportArgs),
    /// Pausing issuance, and the dual-control actions on issuers.
    #[command(subcommand)]
    Issuance(ra::IssuanceCommand),
    /// The working-day calendar and service deadlines.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Organisations' EST and CMP credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Subscribers' key devices: provision, hand over, unlock, take back, wipe.
    Token(token::TokenArgs),
}

/// `pkid init` options.
#[derive(Args, Debug, Default)]
pub struct InitArgs {
    /// Where CA keys live.
    #[arg(long, value_parser = ["software", "pkcs11"])]
    pub key_backend: Option<String>,
    /// Key type of the CA hierarchy.
    #[arg(long, value_parser = ["p256", "p384", "rsa2048", "rsa3072", "rsa4096"])]
    pub algorithm: Option<String>,
    /// PKCS#11 module path.
    #[arg(long)]
    pub pkcs11_module: Option<String>,
    /// PKCS#11 token label.
    #[arg(long)]
    pub token_label: Option<String>,
    /// File whose first line is the token PIN.
    #[arg(long)]
    pub pin_file: Option<String>,
    /// Environment variable holding the token PIN.
    #[arg(long)]
    pub pin_env: Option<String>,
}

/// `pkid serve` options.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// HTTP listen address (overrides server.http; "" disables).
    #[arg(long)]
    pub http: Option<String>,
    /// HTTPS listen address (overrides server.https; "" disables).
    #[arg(long)]
    pub https: Option<String>,
}

/// `pkid ca …`
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Print the CA certificates as PEM, issuing CA first.
    Chain,
    /// List the issuers: the root, the issuing CA `pkid init` made, and those added.
    List,
    /// Create another issuing CA under the root, with its own OCSP responder and CRLs; its key
    /// is generated in the configured key backend. A running daemon takes it on within
    /// `store.follow_interval_ms`, without a restart.
    AddIssuer {
        /// Its name: lowercase letters, digits and '-' (e.g. health); the URLs
        /// /ca/NAME.crt and /crl/NAME.crl, and `cert issue --issuer NAME`.
        #[arg(long)]
        name: String,
        /// Its subject, RFC 4514 (e.g. "CN=Health Sector CA,O=Ban Cơ yếu Chính phủ,C=VN").
        #[arg(long)]
        subject: String,
        /// Its OCSP responder's subject (default: the subject with " OCSP Responder" added to
        /// the CN).
        #[arg(long)]
        responder_subject: Option<String>,
        /// Validity in days (default: ca.issuing_validity_days).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Issue a new certificate for the OCSP responder, TSA or HTTPS key (same key and subject,
    /// fresh validity) and install it in certs/; restart the daemon to use it.
    Reissue {
        /// Which certificate: ocsp, tsa or tls.
        #[arg(long, value_parser = ["ocsp", "tsa", "tls"])]
        role: String,
        /// Validity in days (default: ca.responder_validity_days).
        #[arg(long)]
        days: Option<u32>,
    },
}

/// `pkid cert …`
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Issue a certificate from a PKCS#10 request; prints it as PEM once stored.
    Issue {
        /// The request (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// Profile name from the configuration.
        #[arg(long)]
        profile: String,
        /// The issuing CA to sign with (`pkid ca list`; default: the one `pkid init` made).
        #[arg(long)]
        issuer: Option<String>,
        /// Validity in days (default: the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke permanently.
    Revoke {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// When the key was (suspected) compromised, RFC 3339 (e.g. 2026-11-20T08:00:00Z).
        #[arg(long)]
        invalidity_date: Option<String>,
    },
    /// Suspend (certificateHold) until released.
    Hold {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
    },
    /// Lift a hold.
    Release {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
    },
    /// New certificate for the same subject and key, new validity.
    Renew {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
        /// Validity in days (default: the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
    /// New certificate for the same subject and a new key; the old one is revoked (superseded).
    Rekey {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
        /// Request carrying the new key (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// Validity in days (default: the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
    /// New certificate with changed subject information; the old one is revoked (superseded).
    Modify {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
        /// New subject, RFC 4514 (`CN=…,O=…,C=VN`).
        #[arg(long)]
        subject: Option<String>,
        /// Request with the new subject and/or key.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Validity in days (default: the profile's).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Show one certificate's record.
    Show {
        /// Serial (hex).
        #[arg(long)]
        serial: String,
        /// Print the certificate as PEM instead of the record.
        #[arg(long)]
        pem: bool,
    },
    /// Resolve issuances left pending by a process that died between reserving the serial and
    /// storing the certificate (`pkid serve` does the same at start): each pending row older
    /// than an hour (plus twice store.busy_timeout_ms) is completed if its stored certificate
    /// verifies, otherwise marked abandoned; each is audited. Its serial is never reused.
    Reconcile,
    /// List certificates, newest first.
    List {
        /// Only this status: pending, valid, revoked, hold, abandoned.
        #[arg(long)]
        status: Option<String>,
        /// Only subjects containing this text.
        #[arg(long)]
        subject: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `pkid audit …`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Show the newest audit records.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Check the hash chain (every entry commits to the one before it) and every stored
    /// timestamp of its head; names the first entry edited, deleted or reordered (exit 6).
    Verify,
    /// Timestamp the chain's head now with pkid's own TSA (what the daemon does every
    /// ra.audit_stamp_minutes), unless it is already stamped.
    Stamp,
    /// List the stored timestamps of the chain's head, or export one token with --out.
    Stamps {
        /// Only the timestamp of this audit entry (with --out: that one; default the newest).
        #[arg(long)]
        id: Option<u64>,
        /// Write the token (a DER TimeStampResp, for `openssl ts -verify -in`) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A failed command: message and exit code.
#[derive(Debug)]
pub struct Failure {
    /// One line for stderr.
    pub message: String,
    /// Process exit code.
    pub code: u8,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

/// Exit codes for data-directory errors: 5 wrong state (already / not initialised), 3 a
/// configuration the operator must fix, 1 for key backend, store and other failures.
pub fn datadir_failure(e: datadir::DataDirError) -> Failure {
    let code = match &e {
        datadir::DataDirError::State(_) => 5,
        datadir::DataDirError::Config(_) => 3,
        datadir::DataDirError::Ca(c) => return ca_failure_ref(c, e.to_string()),
        datadir::DataDirError::Keys(_)
        | datadir::DataDirError::Store(_)
        | datadir::DataDirError::Io(_) => 1,
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

fn ca_failure_ref(e: &CaError, message: String) -> Failure {
    let code = match e {
        CaError::Refused(_) => 3,
        CaError::NotFound(_) => 4,
        CaError::Conflict(_) => 5,
        CaError::Unavailable(_) | CaError::Internal(_) => 1,
    };
    Failure { message, code }
}

fn ca_failure(e: CaError) -> Failure {
    // Exit codes: 1 our side or unavailable, 3 refused input, 4 not found, 5 state conflict.
    let message = e.to_string();
    ca_failure_ref(&e, message)
}

fn actor(cli: &Cli) -> String {
    cli.actor
        .clone()
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into())
}

/// Entry point: parses arguments, runs, prints one error line on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        crate::logging::init_cli();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("pkid: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure {
        message: format!("{}: {e}", path.display()),
        code: 3,
    })
}

fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // The reader went away (`pkid cert list | head`): nothing left to say, and not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_record(r: &CertificateRecord) -> Result<(), Failure> {
    let mut s = format!(
        "serial:      {}\nissuer:      {}\nsubject:     {}\nprofile:     {}\nnot before:  {}\nnot after:   {}\nstatus:      {}\n",
        r.serial,
        r.issuer,
        r.subject,
        r.profile,
        rfc3339(r.not_before),
        rfc3339(r.not_after),
        r.status.as_str()
    );
    if let (Some(at), Some(reason)) = (r.revoked_at, r.reason) {
        s.push_str(&format!(
            "revoked at:  {}\nreason:      {}\n",
            rfc3339(at),
            revocation::name(reason)
        ));
    }
    if let Some(t) = r.invalidity_date {
        s.push_str(&format!("invalidity:  {}\n", rfc3339(t)));
    }
    if let Some(p) = &r.replaces {
        s.push_str(&format!("replaces:    {p}\n"));
    }
    out(&s)
}

fn parse_time(s: &str) -> Result<u64, Failure> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Failure {
            message: format!(
                "--invalidity-date {s:?}: {e} (use RFC 3339, e.g. 2026-11-20T08:00:00Z)"
            ),
            code: 3,
        })?;
    u64::try_from(t.unix_timestamp()).map_err(|_| Failure {
        message: "--invalidity-date before 1970".into(),
        code: 3,
    })
}

/// A listener address given on the command line: `None` keeps the configured one, `""`
/// disables the listener.
fn listen_override(
    value: Option<String>,
    what: &str,
) -> Result<Option<Option<SocketAddr>>, Failure> {
    match value {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(Some(None)),
        Some(s) => s.parse().map(|a| Some(Some(a))).map_err(|e| Failure {
            message: format!("--{what} {s:?}: {e}"),
            code: 2,
        }),
    }
}

/// The exit code of a daemon that could not start or run.
fn app_failure(e: crate::app::AppError) -> Failure {
    use crate::app::AppError;
    match e {
        AppError::DataDir(d) => datadir_failure(d),
        AppError::Listen(crate::http::ListenError::NoListener) => Failure {
            message: e.to_string(),
            code: 2,
        },
        AppError::Listen(_) | AppError::Service(_) | AppError::Runtime(_) => Failure {
            message: e.to_string(),
            code: 1,
        },
    }
}

fn serve(data: &std::path::Path, args: ServeArgs, who: &str) -> Result<(), Failure> {
    let http = listen_override(args.http, "http")?;
    let https = listen_override(args.https, "https")?;
    crate::app::serve(
        data,
        move |config| {
            if let Some(a) = http {
                config.server.http = a;
            }
            if let Some(a) = https {
                config.server.https = a;
            }
        },
        who,
    )
    .map_err(app_failure)
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let who = actor(&cli);
    let data = cli.data.clone();
    match cli.command {
        Command::Init(a) => {
            let opts = InitOptions {
                key_backend: a.key_backend,
                algorithm: a.algorithm,
                pkcs11_module: a.pkcs11_module,
                token_label: a.token_label,
                pin_file: a.pin_file,
                pin_env: a.pin_env,
            };
            datadir::init(&data, &opts, &who).map_err(datadir_failure)?;
            out(&format!("initialised {}\n", data.display()))?;
            out(&datadir::chain_pem(&data).map_err(datadir_failure)?)
        }
        Command::Serve(a) => serve(&data, a, &who),
        Command::Ca(CaCommand::Chain) => out(&datadir::chain_pem(&data).map_err(datadir_failure)?),
        Command::Ca(CaCommand::List) => {
            for row in datadir::issuers::list(&data).map_err(datadir_failure)? {
                out(&format!(
                    "{:<12} {:<8} {:<8} {}  {}\n",
                    row.name,
                    row.parent.as_deref().unwrap_or("-"),
                    row.status,
                    rfc3339(row.not_after),
                    row.subject
                ))?;
            }
            Ok(())
        }
        Command::Ca(CaCommand::AddIssuer {
            name,
            subject,
            responder_subject,
            days,
        }) => {
            let added = datadir::issuers::add_issuer(
                &data,
                &name,
                &subject,
                responder_subject.as_deref(),
                days,
                &who,
            )
            .map_err(datadir_failure)?;
            out(&pkid_protocols::x509::certificate_pem(
                &added.certificate.der,
            ))
        }
        Command::Ca(CaCommand::Reissue { role, days }) => {
            let role = match role.as_str() {
                "ocsp" => crate::keys::KeyRole::Ocsp,
                "tsa" => crate::keys::KeyRole::Tsa,
                _ => crate::keys::KeyRole::Tls,
            };
            let issued = datadir::reissue(&data, role, days, &who).map_err(datadir_failure)?;
            out(&pkid_protocols::x509::certificate_pem(&issued.der))
        }
        Command::Audit(AuditCommand::List { limit }) => {
            let opened = datadir::open(&data, false).map_err(datadir_failure)?;
            for e in opened.store.audit_log(limit)? {
                out(&format!(
                    "{}  {:<10} {:<14} {:<42} {:<8} {}\n",
                    rfc3339(e.at),
                    e.actor,
                    e.action,
                    e.target,
                    e.outcome.as_str(),
                    e.detail
                ))?;
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify) => audit::verify(&data),
        Command::Audit(AuditCommand::Stamp) => audit::stamp(&data),
        Command::Audit(AuditCommand::Stamps { id, out }) => audit::stamps(&data, id, out),
        Command::Cert(cmd) => cert(&data, cmd, &who),
        Command::Crl(cmd) => crl::run(&data, cmd, &who),
        Command::Org(cmd) => ra::org(&data, cmd, &who),
        Command::Operator(cmd) => ra::operator(&data, cmd, &who),
        Command::Request(cmd) => ra::request(&data, cmd, &who),
        Command::Report(a) => ra::report(&data, a, &who),
        Command::Issuance(cmd) => ra::issuance(&data, cmd, &who),
        Command::Calendar(cmd) => calendar::run(&data, cmd),
        Command::Credential(cmd) => credential::run(&data, cmd, &who),
        Command::Token(a) => token::run(&data, a, &who),
    }
}

fn cert(data: &std::path::Path, cmd: CertCommand, who: &str) -> Result<(), Failure> {
    let needs_keys = matches!(
        cmd,
        CertCommand::Issue { .. }
            | CertCommand::Renew { .. }
            | CertCommand::Rekey { .. }
            | CertCommand::Modify { .. }
            | CertCommand::Reconcile
    );
    let opened = datadir::open(data, needs_keys).map_err(datadir_failure)?;
    let authority = crate::ra::RegistrationAuthority::new(match opened.authority {
        Some(a) => a,
        None => std::sync::Arc::new(crate::ca::Authority::new(
            opened.config.clone(),
            opened.store.clone(),
            std::sync::Arc::new(crate::clock::SystemClock),
            vec![],
        )),
    });
    let pem = |i: crate::ca::Issued| out(&pkid_protocols::x509::certificate_pem(&i.der));
    match cmd {
        CertCommand::Issue {
            csr,
            profile,
            issuer,
            days,
        } => pem(authority
            .issue(&read_file(&csr)?, &profile, issuer.as_deref(), days, who)
            .map_err(ca_failure)?),
        CertCommand::Renew { serial, days } => {
            pem(authority.renew(&serial, days, who).map_err(ca_failure)?)
        }
        CertCommand::Rekey { serial, csr, days } => pem(authority
            .rekey(&serial, &read_file(&csr)?, days, who)
            .map_err(ca_failure)?),
        CertCommand::Modify {
            serial,
            subject,
            csr,
            days,
        } => {
            let csr = csr.as_ref().map(read_file).transpose()?;
            pem(authority
                .modify(&serial, subject.as_deref(), csr.as_deref(), days, who)
                .map_err(ca_failure)?)
        }
        CertCommand::Revoke {
            serial,
            reason,
            invalidity_date,
        } => {
            let reason = revocation::parse(&reason).ok_or_else(|| Failure {
                message: format!(
                    "unknown revocation reason {reason:?}; use one of: {}",
                    revocation::REASONS
                        .iter()
                        .map(|(_, n)| *n)
                        .filter(|n| *n != "certificateHold")
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                code: 3,
            })?;
            let invalidity = invalidity_date.as_deref().map(parse_time).transpose()?;
            print_record(
                &authority
                    .revoke(&serial, reason, invalidity, who)
                    .map_err(ca_failure)?,
            )
        }
        CertCommand::Hold { serial } => {
            print_record(&authority.hold(&serial, who).map_err(ca_failure)?)
        }
        CertCommand::Release { serial } => {
            print_record(&authority.release(&serial, who).map_err(ca_failure)?)
        }
        CertCommand::Show {
            serial,
            pem: as_pem,
        } => {
            let rec = authority.show(&serial).map_err(ca_failure)?;
            match (as_pem, &rec.der) {
                (true, Some(der)) => out(&pkid_protocols::x509::certificate_pem(der)),
                (true, None) => Err(Failure {
                    message: format!("certificate {} was never stored (pending)", rec.serial),
                    code: 5,
                }),
                (false, _) => print_record(&rec),
            }
        }
        CertCommand::Reconcile => {
            let done = authority.reconcile(who).map_err(ca_failure)?;
            let mut text = String::new();
            for (what, serials) in [
                ("completed", &done.completed),
                ("abandoned", &done.abandoned),
                ("skipped (issuer not loaded)", &done.skipped),
            ] {
                for s in serials {
                    text.push_str(&format!("{what} {s}\n"));
                }
            }
            text.push_str(&format!(
                "{} completed, {} abandoned, {} skipped\n",
                done.completed.len(),
                done.abandoned.len(),
                done.skipped.len()
            ));
            out(&text)
        }
        CertCommand::List {
            status,
            subject,
            limit,
        } => {
            let status = status
                .map(|s| {
                    CertStatus::parse(&s).ok_or_else(|| Failure {
                        message: format!(
                            "unknown status {s:?}; use pending, valid, revoked, hold or abandoned"
                        ),
                        code: 3,
                    })
                })
                .transpose()?;
            let rows = authority
                .list(&ListFilter {
                    status,
                    subject_contains: subject,
                    issuer: None,
                    limit,
                })
                .map_err(ca_failure)?;
            for r in rows {
                out(&format!(
                    "{}  {:<8} {:<8} {:<13} {}  {}\n",
                    r.serial,
                    r.issuer,
                    r.status.as_str(),
                    r.profile,
                    rfc3339(r.not_after),
                    r.subject
                ))?;
            }
            Ok(())
        }
    }
}
