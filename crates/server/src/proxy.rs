//! Trusted-proxy mode (off by default): behind nginx or envoy the client certificate arrives in
//! a header instead of the TLS handshake. The header is honoured only on connections from the
//! configured networks; from anyone else it is stripped and ignored. A forwarded certificate is
//! never trusted because a proxy said so: certbound verifies its chain against the directory CA
//! itself, exactly as the TLS layer would, and only then does it become the request's
//! [`PeerCertificate`] (so `cnf.x5t#S256` binding works the same through the proxy).
//!
//! Headers: nginx's `X-SSL-Client-Cert` (`$ssl_client_escaped_cert`: the URL-encoded PEM leaf)
//! and envoy's `X-Forwarded-Client-Cert` (`Cert="<URL-encoded PEM>"`, optional `Chain=`; the last
//! element, added by the proxy next to certbound, counts).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use certbound_http::PeerCertificate;
use ipnet::IpNet;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

/// nginx's header.
pub(crate) const NGINX_HEADER: &str = "x-ssl-client-cert";
/// envoy's header.
pub(crate) const ENVOY_HEADER: &str = "x-forwarded-client-cert";

/// The proxies whose certificate headers are believed, and how forwarded chains are verified.
pub(crate) struct TrustedProxies {
    networks: Vec<IpNet>,
    verifier: Arc<dyn ClientCertVerifier>,
    issuing: CertificateDer<'static>,
}

impl std::fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedProxies")
            .field("networks", &self.networks)
            .finish_non_exhaustive()
    }
}

/// The PEM certificates in a URL-encoded header value.
fn decode(value: &str) -> Vec<CertificateDer<'static>> {
    let pem = percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned();
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// The `Cert` and `Chain` of the last element of an XFCC header.
fn envoy_certificates(value: &str) -> Vec<CertificateDer<'static>> {
    // Elements are comma separated; values are quoted and URL-encoded, so they hold no commas.
    let element = value.rsplit(',').next().unwrap_or_default();
    let mut certificates = Vec::new();
    for pair in element.split(';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "cert" => {
                certificates.splice(0..0, decode(value));
            }
            "chain" => certificates.extend(decode(value)),
            _ => {}
        }
    }
    certificates
}

/// The certificates (DER) a proxy header carries: nginx's URL-encoded PEM, or envoy's XFCC.
/// Public for the fuzz targets; no verification happens here.
pub fn forwarded_certificates(nginx: Option<&str>, envoy: Option<&str>) -> Vec<Vec<u8>> {
    let chain = match (nginx, envoy) {
        (Some(value), _) => decode(value),
        (None, Some(value)) => envoy_certificates(value),
        (None, None) => Vec::new(),
    };
    chain.iter().map(|der| der.as_ref().to_vec()).collect()
}

/// The trusted proxies' networks, CIDRs or single addresses.
pub(crate) fn parse_networks(networks: &[String]) -> Result<Vec<IpNet>, String> {
    networks
        .iter()
        .map(|network| {
            network
                .parse::<IpNet>()
                .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("trusted proxy network `{network}` is not a CIDR or an address")
                })
        })
        .collect()
}

/// Whose client certificate a request carries.
#[derive(Debug)]
pub(crate) enum Carried {
    /// Not from a trusted proxy: the certificate of its own TLS connection, if any.
    Own,
    /// From a trusted proxy: the forwarded certificate if it verified, else none at all.
    Forwarded(Option<PeerCertificate>),
}

impl TrustedProxies {
    /// Parses the networks (CIDRs or single addresses).
    pub(crate) fn new(
        networks: &[String],
        verifier: Arc<dyn ClientCertVerifier>,
        issuing: CertificateDer<'static>,
    ) -> Result<Self, String> {
        let networks = parse_networks(networks)?;
        Ok(Self {
            networks,
            verifier,
            issuing,
        })
    }

    /// Strips the certificate headers and says whose certificate the request carries. From a
    /// trusted proxy, only the forwarded one, if its chain verifies against the directory CA:
    /// fail closed, never the proxy's own certificate.
    pub(crate) fn take(&self, remote: IpAddr, headers: &mut HeaderMap) -> Carried {
        if !self
            .networks
            .iter()
            .any(|network| network.contains(&remote))
        {
            if headers.remove(NGINX_HEADER).is_some() | headers.remove(ENVOY_HEADER).is_some() {
                tracing::warn!(%remote, "client certificate header from an untrusted address ignored");
            }
            return Carried::Own;
        }
        Carried::Forwarded(self.forwarded(remote, headers))
    }

    /// The address a request is counted against (rate limits): a trusted proxy's request counts
    /// against the client address it forwarded (the last `X-Forwarded-For` entry, the one the
    /// proxy itself appended, else `X-Real-IP`), never against the proxy, which every client
    /// shares. Anyone else's headers say nothing.
    pub(crate) fn client_address(&self, remote: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self
            .networks
            .iter()
            .any(|network| network.contains(&remote.ip()))
        {
            return remote;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .next_back()
            .or_else(|| {
                headers
                    .get("x-real-ip")
                    .and_then(|value| value.to_str().ok())
            })
            .and_then(|value| value.trim().parse::<IpAddr>().ok());
        forwarded.map_or(remote, |ip| SocketAddr::new(ip, 0))
    }

    fn forwarded(&self, remote: IpAddr, headers: &mut HeaderMap) -> Option<PeerCertificate> {
        let nginx = headers.remove(NGINX_HEADER);
        let envoy = headers.remove(ENVOY_HEADER);
        let chain = match (nginx, envoy) {
            (Some(value), _) => decode(value.to_str().ok()?),
            (None, Some(value)) => envoy_certificates(value.to_str().ok()?),
            (None, None) => return None,
        };
        let (leaf, rest) = chain.split_first()?;
        // nginx forwards the leaf alone: the issuing CA is ours, so supply it.
        let mut intermediates: Vec<CertificateDer<'_>> = rest.to_vec();
        intermediates.push(self.issuing.clone());
        match self
            .verifier
            .verify_client_cert(leaf, &intermediates, UnixTime::now())
        {
            Ok(_) => Some(PeerCertificate {
                thumbprint: certbound_pki::thumbprint_sha256(leaf.as_ref()).into(),
                der: leaf.as_ref().into(),
                issued_by_directory: true,
            }),
            Err(error) => {
                tracing::warn!(%remote, %error, "forwarded client certificate refused");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_header_takes_cert_and_chain_of_the_last_element() {
        let key = rcgen_like_pem();
        let encoded: String =
            percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        let header = format!(
            "By=spiffe://a;Hash=x;Cert=\"junk\",By=spiffe://b;Hash=y;Cert=\"{encoded}\";Subject=\"CN=x\""
        );
        assert_eq!(envoy_certificates(&header).len(), 1);
        assert!(envoy_certificates("By=x;Hash=y").is_empty());
        assert!(decode("%%%not-pem").is_empty());
    }

    /// A syntactically valid PEM certificate block (content need not verify for parsing).
    fn rcgen_like_pem() -> String {
        "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n".to_owned()
    }
}
