//! `pkid token`: subscribers' key devices (provision, hand over, unlock, take back, wipe, list).
//!
//! Run on the CA host where the token is plugged in. The command line acts as a CA admin
//! under `--actor`, or, with `--operator ID`, as that registered operator with its role and
//! scope (a provincial RA officer unlocking a device of its province). PINs are read from
//! files, never from arguments; the user PIN a command sets is printed once, as stdout's last
//! line `PIN: <digits>`.

use super::{datadir_failure, out, Failure};
use crate::datadir;
use crate::ra::access::Via;
use crate::ra::desk::{DeskError, RequestDesk};
use crate::token::device::DeviceError;
use crate::token::{device_json, event_json, KeyDevices, TokenError};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// `pkid token …`
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Act as this registered operator (its role and scope) instead of the console's CA admin.
    #[arg(long, global = true)]
    pub operator: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// Where the token is.
#[derive(Args, Debug)]
pub struct TokenSlot {
    /// The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long)]
    pub module: PathBuf,
    /// The token's label (tokens are found by label; slot ids are renumbered).
    #[arg(long)]
    pub token_label: String,
}

/// `pkid token` commands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Provisions a blank token for an approved issue request whose key origin is token:
    /// fresh SO and user PINs, a key pair on the token, the certificate and chain on it.
    Provision {
        /// The request id.
        #[arg(long)]
        request: i64,
        #[command(flatten)]
        slot: TokenSlot,
        /// File whose first line is the blank token's (factory or pool) SO PIN.
        #[arg(long)]
        so_pin_file: PathBuf,
    },
    /// Records that the organisation's receiver took the device.
    Handover {
        /// The device's serial number.
        #[arg(long)]
        device: String,
        /// Who received it (full name).
        #[arg(long)]
        receiver: String,
        /// A note: the hand-over record number, the paper original received.
        #[arg(long)]
        note: Option<String>,
    },
    /// Sets a new user PIN for an approved recover request (SO login with the escrowed SO PIN).
    Unlock {
        /// The recover request id.
        #[arg(long)]
        request: i64,
        #[command(flatten)]
        slot: TokenSlot,
    },
    /// Releases the escrowed private key of an approved recover request (key origin central),
    /// encrypted to the requester's certificate (CMS EnvelopedData, DER), and fulfils it.
    RecoverKey {
        /// The recover request id.
        #[arg(long)]
        request: i64,
        /// The certificate (PEM or DER) whose key the released key is encrypted to.
        #[arg(long)]
        recipient_cert: PathBuf,
        /// Where the EnvelopedData (DER) is written; must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Records that a device whose certificate is revoked or expired came back.
    Return {
        /// The device's serial number.
        #[arg(long)]
        device: String,
        /// A note (the hand-back record).
        #[arg(long)]
        note: Option<String>,
    },
    /// Re-initialises a returned device for reuse, destroying its objects.
    Wipe {
        /// The device's serial number.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        slot: TokenSlot,
        /// File whose first line is the SO PIN the wiped token gets (the pool's blank-token
        /// SO PIN, given to the next provisioning).
        #[arg(long)]
        so_pin_file: PathBuf,
    },
    /// Lists the devices (JSON).
    List,
    /// Shows one device and its history (JSON).
    Show {
        /// The device's serial number.
        #[arg(long)]
        device: String,
    },
    /// Devices still out whose certificate is revoked or expired (JSON): the ones to take back.
    Outstanding,
}

/// Exit codes as for requests: 1 our side or the token failed, 3 refused input (a PIN), 4 not
/// found, 5 conflict (wrong token, already provisioned, wrong state), 7 forbidden.
fn failure(e: TokenError) -> Failure {
    let code = match &e {
        TokenError::Desk(d) => match d {
            DeskError::Invalid(_) | DeskError::TooLarge(_) => 3,
            DeskError::NotFound(_) => 4,
            DeskError::Conflict(_) => 5,
            DeskError::Forbidden(_) | DeskError::Unauthenticated => 7,
            DeskError::Unavailable(_) | DeskError::Internal(_) => 1,
        },
        TokenError::Device(DeviceError::SoPinRejected(_)) => 3,
        TokenError::Device(DeviceError::NotFound(_)) => 4,
        TokenError::Device(_) | TokenError::Internal(_) => 1,
        TokenError::Conflict(_) => 5,
        TokenError::NotFound(_) => 4,
        TokenError::Forbidden(_) => 7,
    };
    Failure {
        message: e.to_string(),
        code,
    }
}

/// The first line of a PIN file.
fn read_pin(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let mut text = Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| Failure {
            message: format!("cannot read the SO PIN file {}: {e}", path.display()),
            code: 3,
        })?;
    let pin = Zeroizing::new(text.lines().next().unwrap_or_default().trim().to_owned());
    if pin.is_empty() {
        return Err(Failure {
            message: format!("the SO PIN file {} is empty", path.display()),
            code: 3,
        });
    }
    Ok(pin)
}

fn json(value: &serde_json::Value) -> Result<(), Failure> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| Failure {
        message: e.to_string(),
        code: 1,
    })?;
    s.push('\n');
    out(&s)
}

/// `pkid token …`.
pub(super) fn run(data: &Path, args: TokenArgs, who: &str) -> Result<(), Failure> {
    let opened = datadir::open(data, true).map_err(datadir_failure)?;
    let internal = |m: String| Failure {
        message: m,
        code: 1,
    };
    let keys = opened
        .keys
        .clone()
        .ok_or_else(|| internal("the key backend is not loaded".into()))?;
    let authority = opened
        .authority
        .clone()
        .ok_or_else(|| internal("the CA keys are not loaded".into()))?;
    let sealer = keys.sealer().map_err(|e| internal(e.to_string()))?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let desk = RequestDesk::open(
        &opened.config,
        opened.store.clone(),
        Some(authority.clone()),
        Some(keys.as_ref()),
        None,
        clock.clone(),
    )
    .map_err(|e| internal(e.to_string()))?;
    let me = match &args.operator {
        Some(id) => desk
            .session_principal(id, Via::Console)
            .map_err(|_| Failure {
                message: format!("no operator {id:?} (pkid operator list)"),
                code: 7,
            })?,
        None => RequestDesk::console(who),
    };
    let devices = KeyDevices::new(
        desk,
        opened.store.clone(),
        sealer,
        authority,
        opened.config.clone(),
        clock,
    );
    let pin_line = |pin: &str| out(&format!("PIN: {pin}\n"));
    match args.command {
        TokenCommand::Provision {
            request,
            slot,
            so_pin_file,
        } => {
            let so_pin = read_pin(&so_pin_file)?;
            let done = devices
                .provision(&me, request, &slot.module, &slot.token_label, &so_pin)
                .map_err(failure)?;
            json(&device_json(&done.device))?;
            pin_line(&done.pin)
        }
        TokenCommand::Handover {
            device,
            receiver,
            note,
        } => json(&device_json(
            &devices
                .hand_over(&me, &device, &receiver, note.as_deref())
                .map_err(failure)?,
        )),
        TokenCommand::Unlock { request, slot } => {
            let (d, pin) = devices
                .unlock(&me, request, &slot.module, &slot.token_label)
                .map_err(failure)?;
            json(&device_json(&d))?;
            pin_line(&pin)
        }
        TokenCommand::RecoverKey {
            request,
            recipient_cert,
            out: path,
        } => {
            let recipient = std::fs::read(&recipient_cert).map_err(|e| Failure {
                message: format!(
                    "cannot read the recipient certificate {}: {e}",
                    recipient_cert.display()
                ),
                code: 3,
            })?;
            // Created first, so that a request is never fulfilled with nowhere to put the key.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Failure {
                    message: format!("cannot create {}: {e}", path.display()),
                    code: 3,
                })?;
            let released = devices.recover_key(&me, request, &recipient);
            let released = match released {
                Ok(r) => r,
                Err(e) => {
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                    return Err(failure(e));
                }
            };
            std::io::Write::write_all(&mut file, &released.enveloped)
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure {
                    message: format!(
                        "request {request} is fulfilled, but writing {} failed: {e}",
                        path.display()
                    ),
                    code: 1,
                })?;
            json(&serde_json::json!({
                "request": request,
                "certificate": released.certificate,
                "out": path.display().to_string(),
            }))
        }
        TokenCommand::Return { device, note } => json(&device_json(
            &devices
                .take_back(&me, &device, note.as_deref())
                .map_err(failure)?,
        )),
        TokenCommand::Wipe {
            device,
            slot,
            so_pin_file,
        } => {
            let so_pin = read_pin(&so_pin_file)?;
            json(&device_json(
                &devices
                    .wipe(&me, &device, &slot.module, &slot.token_label, &so_pin)
                    .map_err(failure)?,
            ))
        }
        TokenCommand::List => {
            let list = devices.list(&me).map_err(failure)?;
            json(&serde_json::Value::Array(
                list.iter().map(device_json).collect(),
            ))
        }
        TokenCommand::Show { device } => {
            let (d, history) = devices.show(&me, &device).map_err(failure)?;
            json(&serde_json::json!({
                "device": device_json(&d),
                "history": history.iter().map(event_json).collect::<Vec<_>>(),
            }))
        }
        TokenCommand::Outstanding => {
            let list = devices.outstanding(&me).map_err(failure)?;
            json(&serde_json::Value::Array(
                list.iter()
                    .map(|(d, why)| {
                        let mut v = device_json(d);
                        v["certificate_status"] = why.as_str().into();
                        v
                    })
                    .collect(),
            ))
        }
    }
}
