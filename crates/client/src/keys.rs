//! Keys and CSRs made on the client's machine (private keys never travel), and the PKCS#12
//! bundle of the seed's note for Windows services.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use zeroize::Zeroizing;

use crate::ClientError;

/// A new RSA 2048 key (PKCS#8 PEM) and its CSR (PEM), as the directory's csr-command would make.
pub struct KeyAndCsr {
    /// The private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// The CSR, PEM.
    pub csr_pem: String,
}

/// Makes an RSA 2048 key and a CSR with subject `/C/O/OU=<organisation>/CN=<common name>`.
pub fn new_key_and_csr(
    country: Option<&str>,
    organisation_name: &str,
    organisation_id: &str,
    common_name: &str,
) -> Result<KeyAndCsr, ClientError> {
    let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .map_err(|error| ClientError::Invalid(format!("key generation failed: {error}")))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(country) = country {
        name.push(DnType::CountryName, country);
    }
    name.push(DnType::OrganizationName, organisation_name);
    name.push(DnType::OrganizationalUnitName, organisation_id);
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|error| ClientError::Invalid(format!("CSR creation failed: {error}")))?;
    Ok(KeyAndCsr {
        key_pem: Zeroizing::new(key.serialize_pem()),
        csr_pem: csr,
    })
}

/// A PKCS#12 file (AES-256/PBES2, HMAC-SHA256: what OpenSSL 3 reads) with the key and its chain.
pub fn pkcs12(key_pem: &str, chain_pem: &str, password: &str) -> Result<Vec<u8>, ClientError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| ClientError::Invalid("the key file holds no PKCS#8 PRIVATE KEY".into()))?;
    let certificates = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            ClientError::Invalid(format!("the certificate file does not parse: {error}"))
        })?
        .iter()
        .map(|der| p12_keystore::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            ClientError::Invalid(format!("the certificate file does not parse: {error}"))
        })?;
    if certificates.is_empty() {
        return Err(ClientError::Invalid(
            "the certificate file holds no CERTIFICATE".into(),
        ));
    }
    let private = p12_keystore::PrivateKey::from_der(key.secret_pkcs8_der())
        .map_err(|error| ClientError::Invalid(format!("the key does not parse: {error}")))?;
    let local_key_id = p12_keystore::LocalKeyId(uuid::Uuid::new_v4().as_bytes().to_vec());
    let chain = p12_keystore::PrivateKeyChain::new(local_key_id, private, certificates);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "certbound transport",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    store
        .writer(password)
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
        .write()
        .map_err(|error| ClientError::Invalid(format!("PKCS#12 writing failed: {error}")))
}
