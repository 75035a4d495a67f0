//! The standing of a directory certificate for one use: known, unrevoked, within its validity,
//! of the key role the use needs (DESIGN.md section 2: only `transport` certificates are mTLS
//! client certificates, only `signing` keys sign assertions, `encryption` keys sign nothing), and
//! owned by the organisation and software that use it. One definition of "active", for every
//! party.

use certbound_store::CertificateRecord;

/// What a certificate is about to be used for, and by whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use<'a> {
    /// The key role the use needs: `transport`, `signing` or `encryption`.
    pub role: &'a str,
    /// The organisation that must own it; `None` where any organisation's will do (the check at
    /// the edge, before the caller is known).
    pub organisation_id: Option<&'a str>,
    /// The software statement that must own it; `None` where an organisation-level
    /// certificate will do.
    pub software_id: Option<&'a str>,
}

/// Whether a certificate may serve a [`Use`], or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateStanding {
    /// Past its `NotAfter`.
    Expired,
    /// Good for the use.
    Good,
    /// Before its `NotBefore`.
    NotYetValid,
    /// The directory revoked it.
    Revoked,
    /// The directory never issued it.
    Unknown,
    /// Another organisation's.
    WrongOrganisation,
    /// A certificate of another key role (a signing certificate as an mTLS client, say).
    WrongRole,
    /// Another software statement's (or an organisation-level one where a software's is needed).
    WrongSoftware,
}

impl CertificateStanding {
    /// What the refusal tells the caller, as a predicate: "the client certificate {this}".
    pub fn description(self) -> &'static str {
        match self {
            Self::Expired => "has expired: have a new one issued",
            Self::Good => "is good",
            Self::NotYetValid => "is not valid yet",
            Self::Revoked => "has been revoked by the directory: have a new one issued",
            Self::Unknown => "was not issued by the directory",
            Self::WrongOrganisation => "belongs to another organisation",
            Self::WrongRole => {
                "has a key role that does not allow this use (transport certificates for mutual TLS, signing keys for assertions)"
            }
            Self::WrongSoftware => "belongs to another software statement",
        }
    }
}

/// The standing of the certificates of one key or one thumbprint for `wanted`, at `now`. Any
/// revoked certificate of the key retires the key; otherwise the key is good if one of its
/// certificates is good for the use, and the first reason against it is given if none is.
pub fn certificate_standing(
    records: &[CertificateRecord],
    wanted: Use<'_>,
    now: i64,
) -> CertificateStanding {
    if records.iter().any(|record| record.revoked_at.is_some()) {
        return CertificateStanding::Revoked;
    }
    let mut first = CertificateStanding::Unknown;
    for (index, record) in records.iter().enumerate() {
        let standing = one(record, wanted, now);
        if standing == CertificateStanding::Good {
            return standing;
        }
        if index == 0 {
            first = standing;
        }
    }
    first
}

fn one(record: &CertificateRecord, wanted: Use<'_>, now: i64) -> CertificateStanding {
    if record.revoked_at.is_some() {
        CertificateStanding::Revoked
    } else if now < record.not_before {
        CertificateStanding::NotYetValid
    } else if now >= record.not_after {
        CertificateStanding::Expired
    } else if record.certificate_type != wanted.role {
        CertificateStanding::WrongRole
    } else if wanted
        .organisation_id
        .is_some_and(|organisation| record.organisation_id != organisation)
    {
        CertificateStanding::WrongOrganisation
    } else if wanted
        .software_id
        .is_some_and(|software| record.software_statement_id.as_deref() != Some(software))
    {
        CertificateStanding::WrongSoftware
    } else {
        CertificateStanding::Good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(change: impl FnOnce(&mut CertificateRecord)) -> CertificateRecord {
        let mut record = CertificateRecord {
            id: "c1".into(),
            organisation_id: "org".into(),
            software_statement_id: Some("sw".into()),
            certificate_type: "signing".into(),
            key_id: "kid".into(),
            thumbprint: "t".into(),
            serial_hex: "01".into(),
            chain_pem: String::new(),
            not_before: 100,
            not_after: 200,
            created_at: 100,
            revoked_at: None,
        };
        change(&mut record);
        record
    }

    const SIGNING: Use<'static> = Use {
        role: "signing",
        organisation_id: Some("org"),
        software_id: Some("sw"),
    };

    #[test]
    fn each_reason_against_a_certificate() {
        use CertificateStanding::*;
        let cases: [(
            &str,
            Vec<CertificateRecord>,
            Use<'_>,
            i64,
            CertificateStanding,
        ); 10] = [
            ("good", vec![record(|_| {})], SIGNING, 150, Good),
            ("unknown", vec![], SIGNING, 150, Unknown),
            (
                "revoked",
                vec![record(|r| r.revoked_at = Some(120))],
                SIGNING,
                150,
                Revoked,
            ),
            (
                "not yet valid",
                vec![record(|_| {})],
                SIGNING,
                99,
                NotYetValid,
            ),
            ("expired", vec![record(|_| {})], SIGNING, 200, Expired),
            (
                "an encryption key signing",
                vec![record(|r| r.certificate_type = "encryption".into())],
                SIGNING,
                150,
                WrongRole,
            ),
            (
                "another organisation",
                vec![record(|r| r.organisation_id = "other".into())],
                SIGNING,
                150,
                WrongOrganisation,
            ),
            (
                "a sibling software",
                vec![record(|r| r.software_statement_id = Some("sibling".into()))],
                SIGNING,
                150,
                WrongSoftware,
            ),
            (
                "an organisation certificate where a software's is needed",
                vec![record(|r| r.software_statement_id = None)],
                SIGNING,
                150,
                WrongSoftware,
            ),
            (
                "one revoked certificate retires the key",
                vec![record(|_| {}), record(|r| r.revoked_at = Some(120))],
                SIGNING,
                150,
                Revoked,
            ),
        ];
        for (name, records, wanted, now, expected) in cases {
            assert_eq!(
                certificate_standing(&records, wanted, now),
                expected,
                "{name}"
            );
        }
    }
}
