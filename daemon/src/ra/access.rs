//! Who is asking, and what they reach: the authorisation every RA call checks on the server.
//!
//! ```text
//! role          files for        acts on (accept, approve, …)    reads
//! org-officer   its organisation  resubmit only, its organisation its organisation
//! ra-officer    its scope         its scope                       its scope
//! auditor       —                 —                               its scope
//! ca-admin      everything        everything                      everything
//! subscriber    a keyCompromise revocation of its own certificate
//! ```
//!
//! A scope is `all`, `province:CODE` (the organisations registered in that province) or
//! `org:ID` (that organisation and its subtree). Nothing is cached: the operator is read from
//! the store on every request, so removing or de-roling one takes effect at once.

use crate::store::ra::{Operator, RequestRecord, Role, Scope};

/// How the caller proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A bearer token.
    Token,
    /// A TLS client certificate registered to the operator.
    Certificate,
    /// The portal's password and TOTP code.
    Password,
    /// The command line on the CA host (the data directory's owner).
    Console,
}

/// The caller of an RA call.
#[derive(Clone, Debug)]
pub enum Principal {
    /// An operator.
    Operator {
        /// Who.
        operator: Operator,
        /// How.
        via: Via,
        /// The operator's organisation's tree path (org-officers), or the path of an `org:ID`
        /// scope: what [`Reach::Subtree`] compares against.
        path: Option<String>,
    },
    /// A subscriber authenticated by its own certificate (TLS client authentication): it may
    /// only report that certificate's key compromised.
    Subscriber {
        /// Its certificate's serial (hex).
        serial: String,
        /// Its subject DN.
        subject: String,
    },
}

/// The organisations a caller reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every organisation.
    All,
    /// One province's.
    Province(String),
    /// An organisation and its subtree (by tree path).
    Subtree(String),
    /// One organisation only.
    Organisation(String),
    /// None.
    Nothing,
}

impl Reach {
    /// Whether a request falls within this reach.
    pub fn covers(&self, r: &RequestRecord) -> bool {
        match self {
            Self::All => true,
            Self::Province(p) => r.province.as_deref() == Some(p.as_str()),
            Self::Subtree(path) => r.org_path.starts_with(path.as_str()),
            Self::Organisation(id) => &r.organisation == id,
            Self::Nothing => false,
        }
    }

    /// Whether an organisation (by id, province and path) falls within this reach.
    pub fn covers_organisation(&self, id: &str, province: Option<&str>, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Province(p) => province == Some(p.as_str()),
            Self::Subtree(prefix) => path.starts_with(prefix.as_str()),
            Self::Organisation(o) => o == id,
            Self::Nothing => false,
        }
    }
}

impl Principal {
    /// The actor name in audit records and request history.
    pub fn actor(&self) -> String {
        match self {
            Self::Operator { operator, .. } => operator.id.clone(),
            Self::Subscriber { serial, .. } => format!("subscriber:{serial}"),
        }
    }

    /// The operator's role, if an operator.
    pub fn role(&self) -> Option<Role> {
        match self {
            Self::Operator { operator, .. } => Some(operator.role),
            Self::Subscriber { .. } => None,
        }
    }

    /// Whether the caller reads organisation `org`'s records (key devices, signing
    /// histories): its reach covers the organisation as the store records it; an unknown one
    /// is reached by nobody.
    pub fn reaches_organisation(
        &self,
        store: &dyn crate::store::Store,
        org: &str,
    ) -> Result<bool, crate::store::StoreError> {
        Ok(store.organisation(org)?.is_some_and(|o| {
            self.reach()
                .covers_organisation(&o.id, o.province.as_deref(), &o.path)
        }))
    }

    /// What the caller may read.
    pub fn reach(&self) -> Reach {
        let Self::Operator { operator, path, .. } = self else {
            return Reach::Nothing;
        };
        match operator.role {
            Role::CaAdmin => Reach::All,
            Role::OrgOfficer => match &operator.organisation {
                Some(org) => Reach::Organisation(org.clone()),
                None => Reach::Nothing,
            },
            Role::RaOfficer | Role::Auditor => match &operator.scope {
                Scope::All => Reach::All,
                Scope::Province(p) => Reach::Province(p.clone()),
                Scope::Organisation(_) => match path {
                    Some(p) => Reach::Subtree(p.clone()),
                    None => Reach::Nothing,
                },
            },
        }
    }

    /// Whether the caller may accept, approve, return, reject or mark originals received.
    pub fn decides(&self) -> bool {
        matches!(self.role(), Some(Role::RaOfficer | Role::CaAdmin))
    }

    /// Whether the caller may file requests.
    pub fn files(&self) -> bool {
        matches!(
            self.role(),
            Some(Role::OrgOfficer | Role::RaOfficer | Role::CaAdmin)
        )
    }

    /// Whether the caller administers organisations and operators.
    pub fn administers(&self) -> bool {
        self.role() == Some(Role::CaAdmin)
    }

    /// Whether the caller reads the audit log: CA admins, and auditors whose scope is
    /// everything (the log is not partitioned by organisation, so a scoped auditor would read
    /// beyond its scope).
    pub fn reads_audit_log(&self) -> bool {
        self.administers() || (self.role() == Some(Role::Auditor) && self.reach() == Reach::All)
    }

    /// Whether the caller reads reports and the audit log.
    pub fn audits(&self) -> bool {
        matches!(
            self.role(),
            Some(Role::Auditor | Role::CaAdmin | Role::RaOfficer)
        )
    }
}
