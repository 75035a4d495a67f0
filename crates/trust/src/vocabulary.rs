//! The typed vocabulary the parties share: what a wire string means is decided once, here, when
//! it is parsed; afterwards a value of these types is valid (rustls' "parse, don't validate").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of OAuth scopes (RFC 6749 §3.3): space-delimited on the wire, each scope once, in the
/// order first given (registration answers keep the software statement's order; tokens use
/// [`ScopeSet::sorted`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Parses a space-delimited scope string; empty parts and repeats are dropped.
    pub fn parse(text: &str) -> Self {
        text.split(' ').filter(|scope| !scope.is_empty()).collect()
    }

    /// No scope at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|held| held == scope)
    }

    /// The first scope of `self` that `allowed` does not hold.
    pub fn first_outside<'a>(&'a self, allowed: &ScopeSet) -> Option<&'a str> {
        self.0
            .iter()
            .map(String::as_str)
            .find(|scope| !allowed.contains(scope))
    }

    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The same set in lexical order.
    pub fn sorted(&self) -> Self {
        let mut scopes = self.0.clone();
        scopes.sort();
        Self(scopes)
    }

    /// The scopes as owned strings (a token's `scp` claim).
    pub fn to_vec(&self) -> Vec<String> {
        self.0.clone()
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(scopes: I) -> Self {
        let mut set = Vec::new();
        for scope in scopes {
            let scope = scope.into();
            if !scope.is_empty() && !set.contains(&scope) {
                set.push(scope);
            }
        }
        Self(set)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self::parse(&text))
    }
}

/// Defines an identifier newtype: a `String` on the wire (`serde(transparent)`) and in storage
/// (it derefs to `str`), but a type of its own in code, so a client id can never be passed where
/// an organisation id is wanted.
macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value read from a trusted place (a verified token, the store).
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }
    )+};
}

id_type! {
    /// A client's `client_id` (the directory's `ClientId` URL).
    ClientId;
    /// A token's `jti`.
    Jti;
    /// A directory `OrganisationId`.
    OrganisationId;
    /// One registration of a client (a token's `rid`).
    RegistrationId;
    /// A `SoftwareStatementId` (an SSA's `software_id`).
    SoftwareId;
    /// An RFC 8705 `x5t#S256`: base64url SHA-256 of a DER certificate.
    Thumbprint;
}

/// Defines a closed set of wire strings as an enum with `as_str`, `FromStr` and serde as the
/// string.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$variant_meta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire),+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($wire => Ok(Self::$variant),)+
                    other => Err(format!(
                        "{} `{other}` is not supported: use {}",
                        $what,
                        Self::ALL.iter().map(|value| value.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

wire_enum! {
    /// How a client authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`),
    /// in the order of preference discovery lists them (the first is the default).
    AuthMethod, "token_endpoint_auth_method" {
        /// RFC 7523: a JWT signed by one of the client's signing keys.
        PrivateKeyJwt => "private_key_jwt",
        /// RFC 8705 §2.1: the directory certificate with the registered subject.
        TlsClientAuth => "tls_client_auth",
        /// RFC 8705 §2.2: a self-signed certificate the client publishes.
        SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
    }
}

wire_enum! {
    /// An OAuth grant type this stack issues tokens for.
    GrantType, "grant_type" {
        /// RFC 6749 §4.4.
        ClientCredentials => "client_credentials",
    }
}

/// A card secret (PAN, PIN, CVV) in the clear: zeroized when dropped, compared in constant
/// time, and its `Debug` prints nothing of it, so no log line or panic message can carry one.
/// [`Secret::expose`] is the one way to the value, for sealing and for the endpoints that
/// return it.
#[derive(Clone, Default)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(zeroize::Zeroizing::new(value))
    }

    /// The value, for the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Secret {}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_once_each_in_order() {
        let scopes = ScopeSet::parse("  cards.read cards.write  cards.read pin.read ");
        assert_eq!(scopes.to_string(), "cards.read cards.write pin.read");
        assert_eq!(
            scopes.sorted().to_string(),
            "cards.read cards.write pin.read"
        );
        assert_eq!(ScopeSet::parse("b a").sorted().to_string(), "a b");
        let allowed = ScopeSet::parse("cards.read");
        assert_eq!(scopes.first_outside(&allowed), Some("cards.write"));
        assert_eq!(allowed.first_outside(&scopes), None);
        assert!(ScopeSet::parse("   ").is_empty());
    }

    #[test]
    fn a_secret_prints_nothing_of_itself() {
        let pin: Secret = serde_json::from_str("\"4921\"").unwrap_or_default();
        assert_eq!(pin.expose(), "4921");
        assert_eq!(format!("{pin:?}"), "Secret(redacted)");
        assert_eq!(format!("{:?}", Some(&pin)), "Some(Secret(redacted))");
        assert_eq!(pin, Secret::new("4921".into()));
        assert_ne!(pin, Secret::new("4922".into()));
    }

    #[test]
    fn identifiers_are_strings_on_the_wire_and_types_in_code() {
        let client = ClientId::new("https://localhost:8441/openid_relying_party/1");
        assert_eq!(
            serde_json::to_string(&client).unwrap_or_default(),
            "\"https://localhost:8441/openid_relying_party/1\""
        );
        assert_eq!(
            client,
            "https://localhost:8441/openid_relying_party/1".to_owned()
        );
        assert!(client.starts_with("https://"));
    }

    #[test]
    fn wire_strings_parse_and_print() {
        for method in AuthMethod::ALL {
            assert_eq!(method.as_str().parse::<AuthMethod>(), Ok(*method));
        }
        let error = "client_secret_basic".parse::<AuthMethod>().unwrap_err();
        assert_eq!(
            error,
            "token_endpoint_auth_method `client_secret_basic` is not supported: use private_key_jwt, tls_client_auth, self_signed_tls_client_auth"
        );
        assert_eq!(
            serde_json::to_string(&GrantType::ClientCredentials).unwrap_or_default(),
            "\"client_credentials\""
        );
    }
}
