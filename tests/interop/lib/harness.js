'use strict';
// Shared helpers for the interop tests: run mim-local on a free port, point the official
// Momento Node.js SDK (@gomomento/sdk) at it, and small waiting utilities.
//
// Using mim-local from the official SDK (what this file does):
//   mim-local --port 0 --port-file /tmp/p --root-key-file /tmp/k --cache my-cache
//   const endpoint = `127.0.0.1:${port}`;
//   const creds = CredentialProvider.fromString({
//     apiKey: fs.readFileSync('/tmp/k', 'utf8').trim(),   // v1 key: base64 {"endpoint","api_key"}
//     endpointOverrides: {cacheEndpoint: endpoint, controlEndpoint: endpoint,
//                         tokenEndpoint: endpoint, secureConnection: false},
//   });
//   new TopicClient({configuration: TopicConfigurations.Default.latest(), credentialProvider: creds});
// The endpoint overrides are needed because the SDK would otherwise prefix the key's endpoint
// with "cache."/"control."/"token." and use TLS.

const {spawn, spawnSync} = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const sdk = require('@gomomento/sdk');
const gen = require('@gomomento/generated-types');
const {permission_messages: pm} = require('@gomomento/generated-types/dist/permissionmessages');

const REPO = path.resolve(__dirname, '..', '..', '..');
const READY_RE = /mim-local listening on (\S+):(\d+)/;

function serverBinary() {
  if (process.env.MIM_LOCAL_BIN) {
    return process.env.MIM_LOCAL_BIN;
  }
  const build = process.env.MIM_BUILD || 'build';
  return path.resolve(REPO, build, 'bin', 'mim-local');
}

function logDir() {
  const build = process.env.MIM_BUILD || 'build';
  const dir = path.resolve(REPO, build, 'test-logs', 'interop');
  fs.mkdirSync(dir, {recursive: true});
  return dir;
}

// setpriv --pdeathsig ties the server to this process: a crashed test run leaves no server.
let setprivOk;
function haveSetpriv() {
  if (setprivOk === undefined) {
    const r = spawnSync('setpriv', ['--help'], {encoding: 'utf8'});
    setprivOk = r.status === 0 && /pdeathsig/.test(r.stdout || '');
  }
  return setprivOk;
}

const running = new Set();
process.on('exit', () => {
  for (const s of running) {
    try {
      s.proc.kill('SIGKILL');
      fs.rmSync(s.dir, {recursive: true, force: true});
    } catch {
      // already gone
    }
  }
});

/**
 * Starts mim-local on 127.0.0.1 with --port 0. Resolves to
 * {port, endpoint, rootKey, proc, logFile, log(), stop(), kill(), signal(sig)}.
 * opts: caches[], noAuth, heartbeatMs, replay, extraArgs[], name (for the log file), timeoutMs.
 */
async function startMimLocal(opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mim-interop-'));
  const portFile = path.join(dir, 'port');
  const keyFile = path.join(dir, 'root-key');
  const args = ['--host', '127.0.0.1', '--port', '0', '--port-file', portFile,
    '--root-key-file', keyFile];
  for (const c of opts.caches || []) {
    args.push('--cache', c);
  }
  if (opts.noAuth) {
    args.push('--no-auth');
  }
  if (opts.heartbeatMs !== undefined) {
    args.push('--heartbeat-ms', String(opts.heartbeatMs));
  }
  if (opts.replay !== undefined) {
    args.push('--replay', String(opts.replay));
  }
  if (opts.logLevel) {
    args.push('--log-level', opts.logLevel);
  }
  args.push(...(opts.extraArgs || []));

  const bin = serverBinary();
  const [cmd, argv] = haveSetpriv()
    ? ['setpriv', ['--pdeathsig', 'SIGTERM', '--', bin, ...args]]
    : [bin, args];
  const logFile = path.join(logDir(), `${opts.name || 'server'}-${process.pid}.log`);
  const logStream = fs.createWriteStream(logFile);
  let logText = '';
  const proc = spawn(cmd, argv, {stdio: ['ignore', 'pipe', 'pipe']});
  let exitInfo = null;
  const exited = new Promise(resolve => {
    proc.on('exit', (code, signal) => {
      exitInfo = {code, signal};
      resolve(exitInfo);
    });
  });
  let wake = () => {};
  const keep = chunk => {
    if (!logStream.writableEnded) { // output can still arrive after the cleanup ended the log
      logStream.write(chunk);
    }
    logText = (logText + chunk.toString()).slice(-64 * 1024);
    wake();
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);

  const server = {
    proc,
    logFile,
    dir,
    log: () => logText,
    exited,
    exitInfo: () => exitInfo,
    signal(sig) {
      proc.kill(sig);
    },
    async stop(timeoutMs = 10000) {
      return finish(server, 'SIGTERM', timeoutMs);
    },
    // stop(), and throw unless the server exited by itself with status 0.
    async stopClean(timeoutMs = 10000) {
      const st = await finish(server, 'SIGTERM', timeoutMs);
      if (!st || st.code !== 0) {
        throw new Error(`mim-local did not exit cleanly: ${JSON.stringify(st)}; log tail:\n${logText.slice(-3000)}`);
      }
      return st;
    },
    async kill() {
      return finish(server, 'SIGKILL', 5000);
    },
  };
  running.add(server);
  server._cleanup = () => {
    running.delete(server);
    logStream.end();
    fs.rmSync(dir, {recursive: true, force: true});
  };

  const timeoutMs = opts.timeoutMs || 10000;
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const m = READY_RE.exec(logText);
      if (m && fs.existsSync(portFile) && fs.existsSync(keyFile)) {
        const port = Number(fs.readFileSync(portFile, 'utf8').trim());
        const rootKey = fs.readFileSync(keyFile, 'utf8').trim();
        if (port === Number(m[2]) && rootKey.length > 0) {
          server.port = port;
          server.endpoint = `127.0.0.1:${port}`;
          server.rootKey = rootKey;
          return server;
        }
      }
      if (exitInfo) {
        throw new Error(`mim-local exited before ready (${JSON.stringify(exitInfo)}):\n${logText}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`mim-local not ready after ${timeoutMs} ms:\n${logText}`);
      }
      // Wake on output or exit, or re-check the files shortly (they may lag the line).
      await Promise.race([new Promise(r => {
        wake = r;
      }), exited, sleep(m ? 5 : 100)]);
    }
  } catch (e) {
    await server.kill();
    throw e;
  }
}

async function finish(server, sig, timeoutMs) {
  if (!server.exitInfo()) {
    server.proc.kill(sig);
    const t = await Promise.race([server.exited, sleep(timeoutMs).then(() => null)]);
    if (!t) {
      server.proc.kill('SIGKILL');
      await server.exited;
    }
  }
  server._cleanup();
  return server.exitInfo();
}

function sleep(ms) {
  return new Promise(r => {
    const t = setTimeout(r, ms);
    t.unref?.();
  });
}

/** Resolves when pred() is true; rejects with what() after timeoutMs. Polls every 10 ms. */
async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await new Promise(r => setTimeout(r, 10));
  }
}

// ---- SDK wiring -------------------------------------------------------------------------

const loggerFactory = new sdk.DefaultMomentoLoggerFactory(
  process.env.MIM_INTEROP_SDK_LOG === 'debug'
    ? sdk.DefaultMomentoLoggerLevel.TRACE
    : sdk.DefaultMomentoLoggerLevel.ERROR);

/** The SDK credential for a v1 key (root key or disposable token), aimed at the server. */
function credentials(server, key) {
  const ep = server.endpoint;
  return sdk.CredentialProvider.fromString({
    apiKey: key === undefined ? server.rootKey : key,
    endpointOverrides: {
      cacheEndpoint: ep,
      controlEndpoint: ep,
      tokenEndpoint: ep,
      secureConnection: false,
    },
  });
}

async function cacheClient(creds) {
  return sdk.CacheClient.create({
    configuration: sdk.Configurations.Laptop.v1(loggerFactory),
    credentialProvider: creds,
    defaultTtlSeconds: 600,
    eagerConnectTimeout: 5,
  });
}

// TopicClient and AuthClient have no close() in this SDK version; close the gRPC clients they
// hold so a test file does not keep channels open after its server is gone.
function closeGrpcClients(obj, seen = new Set(), depth = 0) {
  if (!obj || typeof obj !== 'object' || seen.has(obj) || depth > 4) {
    return;
  }
  seen.add(obj);
  if (obj instanceof grpc.Client) {
    obj.close();
    return;
  }
  for (const v of Object.values(obj)) {
    closeGrpcClients(v, seen, depth + 1);
  }
}

function topicClient(creds) {
  const c = new sdk.TopicClient({
    configuration: sdk.TopicConfigurations.Default.latest(loggerFactory),
    credentialProvider: creds,
  });
  c.close = () => closeGrpcClients(c);
  return c;
}

function authClient(creds) {
  const c = new sdk.AuthClient({
    configuration: sdk.AuthClientConfigurations.Default.latest(loggerFactory),
    credentialProvider: creds,
  });
  c.close = () => closeGrpcClients(c);
  return c;
}

/**
 * Subscribes and records everything the stream delivers. Resolves to
 * {sub, items[], discontinuities[], heartbeats, errors[], connectionLost, unsubscribe()} or throws
 * with the SDK's error if subscribe() returned an Error response.
 */
async function recordingSubscribe(topics, cacheName, topic) {
  const rec = {items: [], discontinuities: [], heartbeats: 0, errors: [], connectionLost: 0, ended: 0};
  const resp = await topics.subscribe(cacheName, topic, {
    onItem: item => rec.items.push(item),
    onDiscontinuity: d => rec.discontinuities.push(d),
    onHeartbeat: () => {
      rec.heartbeats++;
    },
    onError: err => rec.errors.push(err),
    onConnectionLost: () => {
      rec.connectionLost++;
    },
    onSubscriptionEnd: () => {
      rec.ended++;
    },
  });
  if (!(resp instanceof sdk.TopicSubscribe.Subscription)) {
    const err = new Error(`subscribe(${cacheName}, ${topic}) failed: ${resp.toString()}`);
    err.response = resp;
    throw err;
  }
  rec.sub = resp;
  rec.unsubscribe = () => resp.unsubscribe();
  return rec;
}

/** A TCP relay in front of the server, so a test can cut a client's connection at will. */
async function startProxy(targetPort) {
  const sockets = new Set();
  let refusing = false;
  const srv = net.createServer(client => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise(r => srv.listen(0, '127.0.0.1', r));
  return {
    port: srv.address().port,
    endpoint: `127.0.0.1:${srv.address().port}`,
    connections: () => sockets.size / 2,
    // Drops every live connection and refuses new ones until resume().
    cut() {
      refusing = true;
      for (const s of sockets) {
        s.resetAndDestroy ? s.resetAndDestroy() : s.destroy();
      }
      sockets.clear();
    },
    resume() {
      refusing = false;
    },
    close() {
      this.cut();
      return new Promise(r => srv.close(r));
    },
  };
}

/** Credential whose endpoints are the proxy's (same key). */
function credentialsVia(proxy, key) {
  return credentials({endpoint: proxy.endpoint}, key);
}

/** Runs each cleanup even if an earlier one throws (so the server is always stopped). */
async function cleanupAll(fns) {
  const errors = [];
  for (const fn of fns) {
    try {
      await fn();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) {
    throw errors[0];
  }
}

// ---- exact token scopes ----
// AuthClient.generateDisposableToken() widens an item selector to the whole cache when a
// scope mixes item and topic permissions (see test/tokens.test.js), so exact policies are
// minted through the SDK's generated token stub: the bytes the SDK itself would send.
const PT = pm.PermissionsType;

const cacheItem = (role, cache, key) => new PT({
  cache_permissions: new PT.CachePermissions({
    role,
    cache_selector: new PT.CacheSelector({cache_name: cache}),
    item_selector: new PT.CacheItemSelector({key: Buffer.from(key)}),
  }),
});
const topicGrant = (role, cache, topic) => new PT({
  topic_permissions: new PT.TopicPermissions({
    role,
    cache_selector: new PT.CacheSelector({cache_name: cache}),
    topic_selector: new PT.TopicSelector({topic_name: topic}),
  }),
});

/** Mints exactly `grants` on `server` with its root key, the way the SDK's AuthClient does
 * (caller key in the body, no authorization metadata); resolves to a v1 credential string. */
function mintExact(server, grants, tokenId, validForSeconds = 3600) {
  const rootApiKey = JSON.parse(Buffer.from(server.rootKey, 'base64').toString('utf8')).api_key;
  const T = gen.token.token;
  const client = new T.TokenClient(server.endpoint, grpc.credentials.createInsecure());
  const req = new T._GenerateDisposableTokenRequest({
    expires: new T._GenerateDisposableTokenRequest.Expires({valid_for_seconds: validForSeconds}),
    auth_token: rootApiKey,
    permissions: new pm.Permissions({explicit: new pm.ExplicitPermissions({permissions: grants})}),
    token_id: tokenId,
  });
  return new Promise((resolve, reject) => {
    client.GenerateDisposableToken(req, new grpc.Metadata(), {deadline: Date.now() + 5000},
      (err, resp) => {
        client.close();
        if (err) {
          reject(new Error(`GenerateDisposableToken: ${err.code} ${err.details}`));
          return;
        }
        resolve(Buffer.from(JSON.stringify({endpoint: resp.endpoint, api_key: resp.api_key}))
          .toString('base64'));
      });
  });
}

module.exports = {
  pm,
  cacheItem,
  topicGrant,
  mintExact,
  cleanupAll,
  sdk,
  startMimLocal,
  credentials,
  credentialsVia,
  cacheClient,
  topicClient,
  authClient,
  recordingSubscribe,
  startProxy,
  waitFor,
  sleep,
  loggerFactory,
};
