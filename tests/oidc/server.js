/*
 * Test-only OpenID Connect provider that mimics an Okta custom authorization server.
 *
 * Built on node-oidc-provider v8 (a certified OP implementation). It is a REAL provider process:
 * discovery, authorization-code flow, client authentication, signed ID tokens, userinfo, JWKS,
 * RP-initiated logout. NEVER use it outside tests (in-memory storage, keys regenerated at start).
 *
 * Usage:  node server.js /path/to/config.json      (normally started by tests/oidc/provider.py)
 *
 * Config JSON (argv[2]):
 *   port            TCP port on 127.0.0.1; 0 (default) = pick a free one (see ready_file).
 *   issuer_path     default "/oauth2/default"; issuer = http://127.0.0.1:<port><issuer_path>.
 *                   Endpoints use Okta's names under the issuer:
 *                     <issuer>/.well-known/openid-configuration
 *                     <issuer>/v1/authorize  /v1/token  /v1/userinfo  /v1/keys  /v1/logout
 *                     <issuer>/v1/introspect /v1/revoke
 *   clients         list of OIDC client metadata (client_id, client_secret, redirect_uris, ...).
 *                   client_secret_basic AND client_secret_post are both accepted for every
 *                   confidential client, whatever token_endpoint_auth_method says.
 *                   Extra, non-standard key `redirect_uri_prefix` (string or list): any
 *                   redirect_uri / post_logout_redirect_uri that starts with one of the prefixes
 *                   is accepted in addition to the exact redirect_uris (e.g. "http://127.0.0.1:"
 *                   accepts a live-server callback on any port). If redirect_uris is empty, a
 *                   placeholder is registered so the client validates.
 *   users           list of {id|sub, username, password, email, email_verified, given_name,
 *                   family_name, groups, [name], [preferred_username]}; `groups: null` leaves
 *                   the groups claim out of the ID token and userinfo; used only when
 *                   `users_file` is absent (the config file itself is then the users file).
 *   users_file      path of a JSON file holding {"users": [...]} (or a bare list).
 *   require_pkce    default false (Okta does not require PKCE for confidential web clients).
 *   ready_file      optional path; once listening, {"issuer", "port", "pid"} is written there.
 *
 * Users / groups mechanism (ONE source of truth: the users file):
 *   The users file is RE-READ on every account lookup (login form, findAccount for ID token and
 *   userinfo), so a test may rewrite it between logins. The test endpoint
 *     POST /__test__/users/<username>/groups   body: JSON list of strings
 *   rewrites the same file (atomically) and answers {"username", "groups"}.
 *   Other test endpoints (outside the issuer path, never advertised in discovery):
 *     GET  /__test__/health           -> {"ok": true, "issuer": ...}
 *     GET  /__test__/users            -> {"users": [...]} (as currently on file)
 *     POST /__test__/sessions/clear   -> forget every provider session (forces the login form
 *                                        on the next authorize request, like a fresh browser)
 *
 * Claims: `groups` belongs to the `profile` scope (allauth requests "openid profile email") and
 * also has its own `groups` scope. conformIdTokenClaims is off, so scope claims (groups included)
 * are put in the ID token AND returned by userinfo.
 *
 * Interactions: a real HTML login page at <issuer>/interaction/<uid> with inputs
 * name="username" / name="password" and a "Sign in" submit button. A wrong password re-renders
 * the form with "Invalid username or password." Consent is granted automatically (a Grant is
 * created programmatically) for every configured client. Provider sessions persist like Okta's
 * (SSO): a second authorize in the same browser skips the form unless prompt=login is sent or
 * sessions are cleared.
 *
 * Cookies are SameSite=Lax and never Secure, so they work on http://127.0.0.1.
 * Prints "OIDC provider ready at <issuer>" when listening. Exits cleanly on SIGTERM/SIGINT.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node server.js <config.json>');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const HOST = '127.0.0.1';
const issuerPath = `/${String(config.issuer_path ?? '/oauth2/default').replace(/^\/+|\/+$/g, '')}`
  .replace(/^\/$/, '');
const usersFile = config.users_file ? path.resolve(config.users_file) : path.resolve(configPath);

// ---------------------------------------------------------------------------------------------
// Users (re-read from disk on every lookup)
// ---------------------------------------------------------------------------------------------
function readUsersDoc() {
  const doc = JSON.parse(fs.readFileSync(usersFile, 'utf8'));
  return doc;
}

function loadUsers() {
  const doc = readUsersDoc();
  const users = Array.isArray(doc) ? doc : doc.users || [];
  return users.map((u) => ({ ...u, sub: String(u.sub ?? u.id ?? u.username) }));
}

function writeUsers(mutator) {
  const doc = readUsersDoc();
  const users = Array.isArray(doc) ? doc : doc.users || [];
  mutator(users);
  const out = Array.isArray(doc) ? users : { ...doc, users };
  const tmp = `${usersFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(out, null, 2));
  fs.renameSync(tmp, usersFile);
}

function findUserByLogin(login) {
  const needle = String(login || '').trim().toLowerCase();
  if (!needle) return undefined;
  return loadUsers().find((u) => String(u.username || '').toLowerCase() === needle
    || String(u.email || '').toLowerCase() === needle);
}

function userClaims(user) {
  const given = user.given_name || '';
  const family = user.family_name || '';
  return {
    sub: user.sub,
    name: user.name || `${given} ${family}`.trim() || user.username,
    given_name: user.given_name,
    family_name: user.family_name,
    preferred_username: user.preferred_username || user.username,
    email: user.email,
    email_verified: Boolean(user.email_verified),
    // `groups: null` on file leaves the claim out entirely (an authorization server without
    // a groups claim); a missing or non-list value gives an empty list.
    groups: user.groups === null ? undefined : (Array.isArray(user.groups) ? user.groups.map(String) : []),
    locale: user.locale,
    zoneinfo: user.zoneinfo,
  };
}

async function findAccount(ctx, sub) {
  const user = loadUsers().find((u) => u.sub === String(sub));
  if (!user) return undefined;
  return {
    accountId: user.sub,
    async claims() {
      // Re-read again: the file may have changed between findAccount and claims().
      const fresh = loadUsers().find((u) => u.sub === String(sub)) || user;
      return userClaims(fresh);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Minimal in-memory adapter (explicit, so the library's dev-only adapter warning is not printed)
// ---------------------------------------------------------------------------------------------
const storage = new Map(); // key -> { value, expiresAt }
const GRANTABLE = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

function sget(key) {
  const entry = storage.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt && entry.expiresAt < Date.now()) {
    storage.delete(key);
    return undefined;
  }
  return entry.value;
}

function sset(key, value, expiresIn) {
  storage.set(key, { value, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
}

class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    if (this.model === 'Session') sset(`sessionUid:${payload.uid}`, id, expiresIn);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const list = sget(grantKey) || [];
      list.push(key);
      sset(grantKey, list, expiresIn);
    }
    if (payload.userCode) sset(`userCode:${payload.userCode}`, id, expiresIn);
    sset(key, payload, expiresIn);
  }

  async find(id) {
    return sget(this.key(id));
  }

  async findByUid(uid) {
    const id = sget(`sessionUid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = sget(`userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    const value = sget(this.key(id));
    if (value) value.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId(grantId) { // eslint-disable-line class-methods-use-this
    const grantKey = `grant:${grantId}`;
    (sget(grantKey) || []).forEach((key) => storage.delete(key));
    storage.delete(grantKey);
  }
}

function clearSessions() {
  let n = 0;
  for (const key of [...storage.keys()]) {
    if (key.startsWith('Session:') || key.startsWith('sessionUid:')) {
      if (key.startsWith('Session:')) n += 1;
      storage.delete(key);
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// HTML helpers
// ---------------------------------------------------------------------------------------------
function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body{font-family:sans-serif;background:#f4f4f4;margin:40px}
.box{max-width:340px;margin:0 auto;background:#fff;padding:24px;border-radius:4px;box-shadow:0 1px 3px rgba(0,0,0,.2)}
label{display:block;margin-top:12px}input{width:100%;box-sizing:border-box;padding:6px}
button{margin-top:16px;width:100%;padding:8px}.error{color:#b00020}
</style>
</head>
<body><div class="box">${body}</div></body>
</html>`;
}

function loginPage({
  uid, clientName, username = '', error,
}) {
  const action = `${issuerPath}/interaction/${encodeURIComponent(uid)}`;
  return page('Sign In', `
<h1>Sign In</h1>
<p>to continue to <strong>${esc(clientName)}</strong></p>
${error ? `<p class="error" role="alert" id="login-error">${esc(error)}</p>` : ''}
<form method="post" action="${esc(action)}" id="login-form" autocomplete="off">
  <label for="username">Username</label>
  <input id="username" name="username" type="text" value="${esc(username)}" autofocus required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button type="submit" id="sign-in">Sign in</button>
</form>`);
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
  });
  res.end(html);
}

function sendJson(res, status, obj) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(obj));
}

function readBody(req, limit = 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Provider configuration
// ---------------------------------------------------------------------------------------------
function generateJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    keys: [{
      ...jwk, kid: `test-${crypto.randomBytes(8).toString('hex')}`, alg: 'RS256', use: 'sig',
    }],
  };
}

const redirectPrefixes = new Map(); // client_id -> [prefix, ...]

function buildClients() {
  return (config.clients || []).map((raw) => {
    const { redirect_uri_prefix: prefix, ...metadata } = raw;
    const prefixes = (Array.isArray(prefix) ? prefix : [prefix]).filter(Boolean).map(String);
    redirectPrefixes.set(String(metadata.client_id), prefixes);
    const redirectUris = metadata.redirect_uris?.length
      ? metadata.redirect_uris
      : [`http://${HOST}/__unused__/callback`];
    return {
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      ...metadata,
      redirect_uris: redirectUris,
    };
  });
}

function prefixAllowed(clientId, value) {
  const prefixes = redirectPrefixes.get(String(clientId)) || [];
  if (!prefixes.length) return false;
  try {
    new URL(value); // eslint-disable-line no-new
  } catch {
    return false;
  }
  return prefixes.some((p) => String(value).startsWith(p));
}

function logoutSource(ctx, form) {
  // Okta signs the user out without a confirmation page: auto-submit "yes" (JS), with a visible
  // button as fallback for non-JS clients.
  const autoForm = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>');
  ctx.type = 'html';
  ctx.body = page('Sign Out', `
<h1>Sign Out</h1>
${autoForm}
<button type="submit" form="op.logoutForm" id="sign-out">Sign out</button>
<script>document.getElementById('op.logoutForm').submit();</script>`);
}

function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Signed Out', '<h1>Signed out</h1><p>You have been signed out.</p>');
}

function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', `<h1>Error</h1>${Object.entries(out)
    .map(([k, v]) => `<p><strong>${esc(k)}</strong>: <span class="${esc(k)}">${esc(v)}</span></p>`)
    .join('')}`);
}

function buildProvider(issuer) {
  const configuration = {
    adapter: MemoryAdapter,
    clients: buildClients(),
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    findAccount,
    jwks: generateJwks(),
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
      names: {
        session: '_okta_test_session',
        interaction: '_okta_test_interaction',
        resume: '_okta_test_interaction_resume',
      },
    },
    claims: {
      openid: ['sub'],
      profile: [
        'name', 'given_name', 'family_name', 'preferred_username', 'locale', 'zoneinfo', 'groups',
      ],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
    conformIdTokenClaims: false,
    clientBasedCORS: () => true,
    pkce: {
      methods: ['S256'],
      required: () => Boolean(config.require_pkce),
    },
    routes: {
      authorization: '/v1/authorize',
      token: '/v1/token',
      userinfo: '/v1/userinfo',
      jwks: '/v1/keys',
      end_session: '/v1/logout',
      introspection: '/v1/introspect',
      revocation: '/v1/revoke',
      registration: '/v1/clients',
      device_authorization: '/v1/device/authorize',
      code_verification: '/v1/device',
      pushed_authorization_request: '/v1/par',
      backchannel_authentication: '/v1/bc/authorize',
    },
    interactions: {
      url: (ctx, interaction) => `${issuerPath}/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true, allowedPolicy: () => true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    renderError,
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      ClientCredentials: 600,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
      IdToken: 3600,
      RefreshToken: 86400,
      Interaction: 1800,
      Session: 86400,
      Grant: 86400,
    },
  };

  const provider = new Provider(issuer, configuration);

  const { Client } = provider;
  const origRedirect = Client.prototype.redirectUriAllowed;
  Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
    return origRedirect.call(this, value) || prefixAllowed(this.clientId, value);
  };
  const origPostLogout = Client.prototype.postLogoutRedirectUriAllowed;
  Client.prototype.postLogoutRedirectUriAllowed = function postLogoutRedirectUriAllowed(value) {
    return origPostLogout.call(this, value) || prefixAllowed(this.clientId, value);
  };

  const logError = (name) => (ctx, err) => {
    console.error(`[oidc] ${name}: ${err?.name || ''} ${err?.message || err}`
      + `${err?.error_description ? ` (${err.error_description})` : ''}`);
  };
  ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'end_session.error', 'introspection.error', 'revocation.error', 'jwks.error',
    'discovery.error', 'interaction.error'].forEach((evt) => provider.on(evt, logError(evt)));

  return provider;
}

// ---------------------------------------------------------------------------------------------
// Interaction (login + automatic consent)
// ---------------------------------------------------------------------------------------------
async function autoConsent(provider, req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
  }
  if (!grant) {
    grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    Object.entries(missing.missingResourceScopes).forEach(([indicator, scopes]) => {
      grant.addResourceScope(indicator, scopes.join(' '));
    });
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function handleInteraction(provider, req, res, uid) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      sendHtml(res, 400, page('Error', '<h1>Error</h1><p class="error">Your sign-in session '
        + 'expired or was not found. Start the sign-in again from the application.</p>'));
      return;
    }
    throw err;
  }
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Error', '<h1>Error</h1><p class="error">Interaction mismatch.</p>'));
    return;
  }
  const client = await provider.Client.find(details.params.client_id);
  const clientName = client?.clientName || details.params.client_id;
  const { name } = details.prompt;

  if (name === 'consent') {
    await autoConsent(provider, req, res, details);
    return;
  }
  if (name !== 'login') {
    sendHtml(res, 400, page('Error', `<h1>Error</h1><p>Unsupported prompt ${esc(name)}</p>`));
    return;
  }

  if (req.method === 'GET') {
    sendHtml(res, 200, loginPage({ uid, clientName, username: details.params.login_hint || '' }));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { Allow: 'GET, POST' });
    res.end();
    return;
  }
  const form = new URLSearchParams(await readBody(req));
  const username = form.get('username') || '';
  const password = form.get('password') || '';
  const user = findUserByLogin(username);
  const ok = user && typeof user.password === 'string'
    && crypto.timingSafeEqual(
      crypto.createHash('sha256').update(user.password).digest(),
      crypto.createHash('sha256').update(password).digest(),
    );
  if (!ok) {
    sendHtml(res, 200, loginPage({
      uid, clientName, username, error: 'Invalid username or password.',
    }));
    return;
  }
  await provider.interactionFinished(req, res, {
    login: { accountId: user.sub, amr: ['pwd'], remember: true },
  }, { mergeWithLastSubmission: false });
}

// ---------------------------------------------------------------------------------------------
// Test endpoints
// ---------------------------------------------------------------------------------------------
async function handleTestEndpoint(req, res, pathname, issuer) {
  if (req.method === 'GET' && pathname === '/__test__/health') {
    sendJson(res, 200, { ok: true, issuer });
    return;
  }
  if (req.method === 'GET' && pathname === '/__test__/users') {
    sendJson(res, 200, { users: loadUsers() });
    return;
  }
  if (req.method === 'POST' && pathname === '/__test__/sessions/clear') {
    sendJson(res, 200, { cleared: clearSessions() });
    return;
  }
  const m = pathname.match(/^\/__test__\/users\/([^/]+)\/groups\/?$/);
  if (m && req.method === 'POST') {
    const username = decodeURIComponent(m[1]);
    let groups;
    try {
      groups = JSON.parse(await readBody(req));
    } catch {
      sendJson(res, 400, { error: 'body must be a JSON list of group names' });
      return;
    }
    if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) {
      sendJson(res, 400, { error: 'body must be a JSON list of group names' });
      return;
    }
    let found = false;
    writeUsers((users) => {
      users.forEach((u) => {
        if (String(u.username).toLowerCase() === username.toLowerCase()) {
          u.groups = groups; // eslint-disable-line no-param-reassign
          found = true;
        }
      });
    });
    if (!found) {
      sendJson(res, 404, { error: `unknown user ${username}` });
      return;
    }
    sendJson(res, 200, { username, groups });
    return;
  }
  sendJson(res, 404, { error: 'not found' });
}

// ---------------------------------------------------------------------------------------------
// HTTP server: mounts the provider under issuer_path
// ---------------------------------------------------------------------------------------------
let provider;
let providerCallback;
let issuer;

async function handle(req, res) {
  if (!provider) {
    sendJson(res, 503, { error: 'starting' });
    return;
  }
  const url = new URL(req.url, `http://${HOST}`);
  const { pathname } = url;

  if (pathname.startsWith('/__test__/')) {
    await handleTestEndpoint(req, res, pathname, issuer);
    return;
  }

  const im = pathname.match(new RegExp(`^${issuerPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/interaction/([^/]+)/?$`));
  if (im) {
    await handleInteraction(provider, req, res, decodeURIComponent(im[1]));
    return;
  }

  if (issuerPath === '' || pathname === issuerPath || pathname.startsWith(`${issuerPath}/`)) {
    // Mount: the provider derives its mount path from req.originalUrl vs the rewritten req.url.
    if (issuerPath) {
      req.originalUrl = req.url;
      req.url = req.url.slice(issuerPath.length) || '/';
      if (!req.url.startsWith('/')) req.url = `/${req.url}`;
    }
    providerCallback(req, res);
    return;
  }

  sendJson(res, 404, { error: 'not found', issuer });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error('[oidc] unhandled error:', err);
    if (!res.headersSent) sendJson(res, 500, { error: 'server_error', message: String(err) });
    else res.end();
  });
});

server.listen(Number(config.port || 0), HOST, () => {
  const { port } = server.address();
  issuer = `http://${HOST}:${port}${issuerPath}`;
  provider = buildProvider(issuer);
  providerCallback = provider.callback();
  if (config.ready_file) {
    const tmp = `${config.ready_file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ issuer, port, pid: process.pid }));
    fs.renameSync(tmp, config.ready_file);
  }
  console.log(`OIDC provider ready at ${issuer}`);
});

server.on('error', (err) => {
  console.error(`[oidc] server error: ${err.message}`);
  process.exit(1);
});

function shutdown(signal) {
  console.log(`[oidc] ${signal} received, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
