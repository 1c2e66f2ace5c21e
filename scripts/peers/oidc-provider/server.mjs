// A real OpenID provider (npm oidc-provider, a certified implementation) for litellm-sync's SCIM authentication
// tests. It issues RS256 JWT access tokens (RFC 9068, `typ: at+jwt`) by client credentials, through resource
// indicators, and real ID tokens through CIBA (poll mode, approved at once), so a test can present one where an
// access token is expected. Listens on 127.0.0.1 only.
//
//   node server.mjs [--port N] [--keys FILE]          serve; prints "ready port=N issuer=URL" when listening
//   node server.mjs keygen [--kid KID]                 print a new RSA key: {"jwk": private JWK, "pkcs8": b64 DER,
//                                                      "spki_pem": public PEM}
//
// Environment (all optional):
//   PORT          as --port; 0 (the default) picks a free port, which the ready line reports. A restart for a
//                 key rotation passes the same port, because the issuer URL contains it.
//   OIDC_KEYS     as --keys: a JWKS file of *private* keys, the first signs. Without it a key is generated, and
//                 changes on every start.
//   OIDC_CLIENTS  JSON array of client metadata; default one client-credentials client "scim-client" with
//                 secret "scim-secret", and a CIBA client "rp" / "rp-secret" (the ID-token source).
//   OIDC_RESOURCES JSON object: resource indicator -> {"scope": "a b", "ttl": seconds}. The first is the default
//                 resource. Default {"https://scim.test/": {"scope": "scim:read scim:write", "ttl": 300},
//                 "https://other.test/": {"scope": "other", "ttl": 300}}.
//
// Test hooks: GET /test/stats answers {"jwks_requests": N}, the number of GET /jwks served since start, so a test
// can count how often the verifier fetched the keys.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function newRsaKey(kid) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' },
    pkcs8: privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
    spki_pem: publicKey.export({ type: 'spki', format: 'pem' }),
  };
}

if (process.argv[2] === 'keygen') {
  process.stdout.write(`${JSON.stringify(newRsaKey(arg('--kid') ?? randomUUID()))}\n`);
  process.exit(0);
}

const port = Number(arg('--port') ?? process.env.PORT ?? 0);
const keysFile = arg('--keys') ?? process.env.OIDC_KEYS;
const jwks = keysFile ? JSON.parse(readFileSync(keysFile, 'utf8')) : { keys: [newRsaKey('generated').jwk] };

const clients = process.env.OIDC_CLIENTS ? JSON.parse(process.env.OIDC_CLIENTS) : [
  {
    client_id: 'scim-client',
    client_secret: 'scim-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'rp',
    client_secret: 'rp-secret',
    grant_types: ['urn:openid:params:grant-type:ciba'],
    response_types: [],
    redirect_uris: [],
    backchannel_token_delivery_mode: 'poll',
    token_endpoint_auth_method: 'client_secret_basic',
  },
];

const resources = process.env.OIDC_RESOURCES ? JSON.parse(process.env.OIDC_RESOURCES) : {
  'https://scim.test/': { scope: 'scim:read scim:write', ttl: 300 },
  'https://other.test/': { scope: 'other', ttl: 300 },
};
const defaultResourceId = Object.keys(resources)[0];

let jwksRequests = 0;
let provider;

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const issuer = `http://127.0.0.1:${actual}`;
  provider = new Provider(issuer, {
    clients,
    jwks,
    // Fixed cookie keys keep oidc-provider from warning; nothing here uses sessions.
    cookies: { keys: ['litellm-sync-test-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Only the client-credentials clients get an access token for a resource; the CIBA client's access
        // token stays opaque (it is only there for its ID token).
        defaultResource: (_ctx, client) => (client.grantTypes.includes('client_credentials') ? defaultResourceId : undefined),
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const r = resources[resourceIndicator];
          if (!r) throw new Error(`unknown resource ${resourceIndicator}`);
          return {
            audience: resourceIndicator,
            scope: r.scope,
            accessTokenTTL: r.ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
      ciba: {
        enabled: true,
        deliveryModes: ['poll'],
        processLoginHint: async (_ctx, loginHint) => loginHint,
        validateRequestContext: async () => {},
        verifyUserCode: async () => {},
        // "The user approves on their device" at once: the grant exists before the client first polls.
        triggerAuthenticationDevice: async (_ctx, request, account, client) => {
          const grant = new provider.Grant({ clientId: client.clientId, accountId: account.accountId });
          grant.addOIDCScope(request.scope);
          await grant.save();
          await provider.backchannelResult(request, grant);
        },
      },
    },
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/test/stats') {
      ctx.body = { jwks_requests: jwksRequests };
      return;
    }
    if (ctx.method === 'GET' && ctx.path === '/jwks') jwksRequests += 1;
    await next();
  });
  server.on('request', provider.callback());
  process.stdout.write(`ready port=${actual} issuer=${issuer}\n`);
});

server.on('error', (err) => {
  process.stderr.write(`cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
