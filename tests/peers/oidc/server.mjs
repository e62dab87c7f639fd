#!/usr/bin/env node
// OAuth 2.0 client-credentials test server for the syncd integration tests.
//
// Built on oidc-provider (pinned in package.json). It mimics the Keycloak
// paths that VGS uses so that syncd can be pointed at it unchanged:
//
//   POST /auth/realms/vgs/protocol/openid-connect/token             client_credentials grant
//   POST /auth/realms/vgs/protocol/openid-connect/token/introspect  RFC 7662 introspection
//   POST /auth/realms/vgs/protocol/openid-connect/revoke            RFC 7009 revocation
//   GET  /auth/realms/vgs/.well-known/openid-configuration          discovery
//   GET  /_stats           {"tokens_issued": {"<client_id>": n}, "total": n}
//   POST /_stats/reset     zero the counters
//
// Configuration (CLI flag wins over environment variable):
//
//   --port N      / PORT               listen port on 127.0.0.1; 0 = any free port (default 0)
//   --ttl S       / OIDC_TTL           lifetime of client-credentials access tokens in seconds (default 3)
//   --clients P   / OIDC_CLIENTS_FILE  JSON file: [{"client_id", "client_secret", "scope",
//                                      "token_endpoint_auth_method", "jwks", "tls_client_auth_subject_dn"}]
//   --tls-cert P, --tls-key P, --tls-ca P   serve HTTPS with this certificate and ask every
//                                      client for a certificate issued by the CA in --tls-ca
//
// Client authentication: a client is registered with its
// token_endpoint_auth_method (default client_secret_post). oidc-provider treats the two
// shared-secret methods as interchangeable (a secret sent in the form or in an
// HTTP Basic header is accepted for a client registered with either), so the
// same client works with client_secret_post and client_secret_basic.
// private_key_jwt clients carry their public keys in "jwks"; client_secret_jwt
// clients sign with their client_secret (HS256). On TLS, the mTLS feature is on
// for RFC 8705 tls_client_auth: the certificate comes from the TLS socket, is
// authorized when it chains to --tls-ca, and must carry the registered subject DN.
// Assertions are single-use (the provider's replay detection refuses a reused jti).
//
// Tokens are opaque and stored in memory (lost on restart). The response has a
// "scope" member only when the request asked for scopes (RFC 6749 5.1 allows
// leaving it out); there is no refresh_token for client_credentials.
//
// Once listening it prints exactly one line "READY http(s)://127.0.0.1:<port>" on
// stdout; everything else goes to stderr. SIGTERM/SIGINT close it cleanly.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import process from 'node:process';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const REALM_PATH = '/auth/realms/vgs';

function log(...args) {
  process.stderr.write(`[oidc-peer] ${args.join(' ')}\n`);
}

function readConfig() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      ttl: { type: 'string' },
      clients: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
    },
    strict: true,
  });
  const port = Number.parseInt(values.port ?? process.env.PORT ?? '0', 10);
  const ttl = Number.parseInt(values.ttl ?? process.env.OIDC_TTL ?? '3', 10);
  const clientsFile = values.clients ?? process.env.OIDC_CLIENTS_FILE;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid port: ${values.port ?? process.env.PORT}`);
  }
  if (!Number.isInteger(ttl) || ttl <= 0) {
    throw new Error(`invalid ttl: ${values.ttl ?? process.env.OIDC_TTL}`);
  }
  if (!clientsFile) {
    throw new Error('a clients file is required (--clients PATH or OIDC_CLIENTS_FILE)');
  }
  const clients = JSON.parse(readFileSync(clientsFile, 'utf8'));
  if (!Array.isArray(clients) || clients.length === 0) {
    throw new Error(`${clientsFile}: expected a non-empty JSON array of clients`);
  }
  const secretMethods = new Set(['client_secret_post', 'client_secret_basic', 'client_secret_jwt']);
  for (const c of clients) {
    const method = c.token_endpoint_auth_method ?? 'client_secret_post';
    if (typeof c.client_id !== 'string') {
      throw new Error(`${clientsFile}: every client needs a string client_id`);
    }
    if (secretMethods.has(method) && typeof c.client_secret !== 'string') {
      throw new Error(`${clientsFile}: client ${c.client_id} (${method}) needs a string client_secret`);
    }
  }
  const tlsFiles = [values['tls-cert'], values['tls-key'], values['tls-ca']];
  if (tlsFiles.some(Boolean) && !tlsFiles.every(Boolean)) {
    throw new Error('TLS needs all of --tls-cert, --tls-key and --tls-ca');
  }
  const tls = tlsFiles.every(Boolean)
    ? { cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']), ca: readFileSync(values['tls-ca']) }
    : null;
  return { port, ttl, clients, tls };
}

// RFC 8705 2.1: the certificate is read from the TLS connection itself.
function peerCertificate(ctx) {
  const socket = ctx.req.socket;
  if (typeof socket.getPeerX509Certificate !== 'function') return undefined;
  return socket.getPeerX509Certificate();
}

const mTLS = {
  enabled: true,
  certificateBoundAccessTokens: false,
  selfSignedTlsClientAuth: false,
  tlsClientAuth: true,
  getCertificate(ctx) {
    return peerCertificate(ctx)?.toString();
  },
  certificateAuthorized(ctx) {
    return ctx.req.socket.authorized === true;
  },
  certificateSubjectMatches(ctx, property, expected) {
    const cert = peerCertificate(ctx);
    if (!cert || property !== 'tls_client_auth_subject_dn') return false;
    // Node lists the subject one attribute per line; registrations use the comma form.
    return cert.subject.split('\n').join(',') === expected;
  },
};

function buildProvider(issuer, ttl, clients, tls) {
  const scopes = new Set();
  for (const c of clients) {
    for (const s of (c.scope ?? '').split(' ').filter(Boolean)) scopes.add(s);
  }

  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      ...(c.client_secret !== undefined ? { client_secret: c.client_secret } : {}),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_post',
      ...(c.jwks ? { jwks: c.jwks } : {}),
      ...(c.tls_client_auth_subject_dn ? { tls_client_auth_subject_dn: c.tls_client_auth_subject_dn } : {}),
      ...(c.scope ? { scope: c.scope } : {}),
    })),
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_jwt',
      'client_secret_post',
      'private_key_jwt',
      ...(tls ? ['tls_client_auth'] : []),
    ],
    enabledJWA: {
      clientAuthSigningAlgValues: [
        'HS256', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'Ed25519', 'EdDSA',
      ],
    },
    scopes: [...scopes],
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      devInteractions: { enabled: false },
      ...(tls ? { mTLS } : {}),
    },
    ttl: {
      ClientCredentials: ttl,
    },
    routes: {
      token: '/protocol/openid-connect/token',
      introspection: '/protocol/openid-connect/token/introspect',
      revocation: '/protocol/openid-connect/revoke',
      jwks: '/protocol/openid-connect/certs',
      userinfo: '/protocol/openid-connect/userinfo',
      authorization: '/protocol/openid-connect/auth',
      end_session: '/protocol/openid-connect/logout',
    },
    // Fixed, test-only cookie keys (no cookies are used by client_credentials).
    cookies: { keys: ['syncd-test-oidc-peer-cookie-key'] },
  });
  return provider;
}

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
  });
  res.end(data);
}

function main() {
  const { port, ttl, clients, tls } = readConfig();
  const issued = new Map();
  let callback = null;

  const handler = (req, res) => {
    const url = req.url ?? '/';
    const path = url.split('?')[0];

    if (path === '/_stats' && req.method === 'GET') {
      const tokensIssued = Object.fromEntries(issued);
      const total = [...issued.values()].reduce((a, b) => a + b, 0);
      sendJson(res, 200, { tokens_issued: tokensIssued, total });
      return;
    }
    if (path === '/_stats/reset' && req.method === 'POST') {
      issued.clear();
      sendJson(res, 200, { tokens_issued: {}, total: 0 });
      return;
    }
    if (callback && (path === REALM_PATH || path.startsWith(`${REALM_PATH}/`))) {
      // Mount the provider under the realm path the way express/connect do:
      // originalUrl keeps the full path, url is relative to the mount point.
      req.originalUrl = url;
      req.url = url.slice(REALM_PATH.length) || '/';
      callback(req, res);
      return;
    }
    sendJson(res, 404, { error: 'not_found', error_description: `no route for ${req.method} ${path}` });
  };
  // On TLS every client is asked for a certificate but not refused without one:
  // the provider decides per client whether it needs it (tls_client_auth).
  const server = tls
    ? https.createServer({ ...tls, requestCert: true, rejectUnauthorized: false }, handler)
    : http.createServer(handler);

  server.on('error', (err) => {
    log(`server error: ${err.stack ?? err}`);
    process.exit(1);
  });

  server.listen(port, '127.0.0.1', () => {
    const actualPort = server.address().port;
    const base = `${tls ? 'https' : 'http'}://127.0.0.1:${actualPort}`;
    const provider = buildProvider(`${base}${REALM_PATH}`, ttl, clients, tls);

    provider.on('client_credentials.saved', (token) => {
      issued.set(token.clientId, (issued.get(token.clientId) ?? 0) + 1);
    });
    provider.on('grant.success', (ctx) => {
      log(`token issued client_id=${ctx.oidc.client?.clientId} grant_type=${ctx.oidc.params?.grant_type}`);
    });
    provider.on('grant.error', (ctx, err) => {
      log(`token error client_id=${ctx.oidc.client?.clientId ?? '-'} ${err.message}: ${err.error_description ?? ''} ${err.error_detail ?? ''}`);
    });
    provider.on('introspection.error', (ctx, err) => log(`introspection error ${err.message}`));
    provider.on('revocation.error', (ctx, err) => log(`revocation error ${err.message}`));
    provider.on('server_error', (ctx, err) => log(`server_error ${err.stack ?? err}`));

    callback = provider.callback();
    log(`listening issuer=${base}${REALM_PATH} ttl=${ttl}s clients=${clients.map((c) => c.client_id).join(',')}`);
    process.stdout.write(`READY ${base}\n`);
  });

  let stopping = false;
  const shutdown = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal} received, shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

try {
  main();
} catch (err) {
  log(`fatal: ${err.stack ?? err}`);
  process.exit(2);
}
