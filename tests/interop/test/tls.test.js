'use strict';
// mim-local --tls-cert/--tls-key with the official SDK over TLS (secureConnection: true).
// The SDK has no CA option; grpc-js reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH when it is loaded,
// so this file makes a self-signed certificate for 127.0.0.1 and sets that variable before
// requiring the SDK.
const {spawnSync} = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mim-interop-tls-'));
const certFile = path.join(certDir, 'cert.pem');
const keyFile = path.join(certDir, 'key.pem');
const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt',
  'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1',
  '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], {encoding: 'utf8'});
process.env.GRPC_DEFAULT_SSL_ROOTS_FILE_PATH = certFile;

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, cacheClient, topicClient, authClient, recordingSubscribe, waitFor,
  cleanupAll,
} = require('../lib/harness');

const CACHE = 'tls-cache';
let server;
const closers = [];

before(async () => {
  assert.equal(made.status, 0, `openssl: ${made.stderr}`);
  server = await startMimLocal({name: 'tls', caches: [CACHE],
    extraArgs: ['--tls-cert', certFile, '--tls-key', keyFile]});
});

after(async () => {
  await cleanupAll([...closers.reverse(), () => server?.stopClean(),
    () => fs.rmSync(certDir, {recursive: true, force: true})]);
});

function tlsCredentials(key) {
  const ep = server.endpoint;
  return sdk.CredentialProvider.fromString({
    apiKey: key,
    endpointOverrides: {cacheEndpoint: ep, controlEndpoint: ep, tokenEndpoint: ep,
      secureConnection: true},
  });
}

test('lists, topics and tokens over TLS', async () => {
  const creds = tlsCredentials(server.rootKey);
  const cache = await cacheClient(creds);
  const topics = topicClient(creds);
  const auth = authClient(creds);
  closers.push(() => cache.close(), () => topics.close(), () => auth.close());

  const push = await cache.listPushBack(CACHE, 'l', 'over tls');
  assert.ok(push instanceof sdk.CacheListPushBack.Success, push.toString());
  const f = await cache.listFetch(CACHE, 'l');
  assert.ok(f instanceof sdk.CacheListFetch.Hit, f.toString());
  assert.deepEqual(f.valueListString(), ['over tls']);

  const minted = await auth.generateDisposableToken(
    sdk.DisposableTokenScopes.topicPublishSubscribe(CACHE, 't'), sdk.ExpiresIn.minutes(5),
    {tokenId: 'tls-user'});
  assert.ok(minted instanceof sdk.GenerateDisposableToken.Success, minted.toString());
  const user = topicClient(tlsCredentials(minted.authToken));
  closers.push(() => user.close());
  const rec = await recordingSubscribe(topics, CACHE, 't');
  closers.push(() => rec.unsubscribe());
  const pub = await user.publish(CACHE, 't', 'secret');
  assert.ok(pub instanceof sdk.TopicPublish.Success, pub.toString());
  await waitFor(() => rec.items.length === 1, 5000, 'the item');
  assert.equal(rec.items[0].valueString(), 'secret');
  assert.equal(rec.items[0].tokenId(), 'tls-user');
});
