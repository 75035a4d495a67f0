// node-oidc-provider with the same flow as certbound's token endpoint, for side-by-side runs:
// client_credentials, private_key_jwt (PS256), mutual TLS with the certbound directory CA,
// certificate-bound ES256 JWT access tokens (RFC 8705), certificateSubjectMatches implemented.
//
//   node server.mjs CONFIG.json      (written by certbound-bench --peer oidc-provider)
//
// CONFIG: { port, issuer, key, cert, ca, scopes: [...], clients: [{ client_id, jwks, subject_dn }] }
// A client may instead give `signing_certificate` and `transport_certificate` (PEM): its JWKS and
// subject DN are then read from them (.ci/any-as.sh writes such a config by hand).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const resource = 'https://cards.certbound.test';
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-es256', alg: 'ES256', use: 'sig' };

// RFC 4514 distinguished names compared without spacing and attribute-name case differences.
const normalise = (dn) => dn
  .split(/[,\n]/)
  .map((part) => part.trim())
  .filter(Boolean)
  .map((part) => {
    const [name, ...value] = part.split('=');
    return `${name.trim().toUpperCase()}=${value.join('=').trim()}`;
  })
  .sort()
  .join(',');

for (const client of config.clients) {
  if (client.signing_certificate) {
    const jwk = new crypto.X509Certificate(client.signing_certificate).publicKey.export({ format: 'jwk' });
    client.jwks = { keys: [{ ...jwk, use: 'sig', alg: 'PS256' }] };
  }
  if (client.transport_certificate) {
    client.subject_dn = new crypto.X509Certificate(client.transport_certificate).subject;
  }
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'PS256',
    id_token_signed_response_alg: 'ES256',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    jwks: client.jwks,
    tls_client_certificate_bound_access_tokens: true,
    tls_client_auth_subject_dn: client.subject_dn,
    scope: config.scopes.join(' '),
  })),
  jwks: { keys: [signing] },
  clientAuthMethods: ['private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'],
  enabledJWA: { clientAuthSigningAlgValues: ['PS256', 'ES256'] },
  scopes: config.scopes,
  ttl: { ClientCredentials: 600, AccessToken: 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: config.scopes.join(' '),
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => ctx.socket.getPeerX509Certificate?.() ?? undefined,
      certificateAuthorized: (ctx) => ctx.socket.authorized === true,
      certificateSubjectMatches(ctx, property, expected) {
        const certificate = ctx.socket.getPeerX509Certificate?.();
        if (!certificate) return false;
        switch (property) {
          case 'tls_client_auth_subject_dn':
            return normalise(certificate.subject) === normalise(expected);
          case 'tls_client_auth_san_dns':
            return (certificate.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
          case 'tls_client_auth_san_uri':
            return (certificate.subjectAltName ?? '').split(', ').includes(`URI:${expected}`);
          case 'tls_client_auth_san_ip':
            return (certificate.subjectAltName ?? '').split(', ').includes(`IP Address:${expected}`);
          case 'tls_client_auth_san_email':
            return (certificate.subjectAltName ?? '').split(', ').includes(`email:${expected}`);
          default:
            throw new Error(`unsupported certificate subject property ${property}`);
        }
      },
    },
  },
});

const server = https.createServer({
  key: config.key,
  cert: config.cert,
  ca: config.ca,
  requestCert: true,
  rejectUnauthorized: true,
  minVersion: 'TLSv1.2',
}, provider.callback());
server.keepAliveTimeout = 60_000;
server.listen(config.port, '127.0.0.1', () => console.log(`ready ${config.issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
