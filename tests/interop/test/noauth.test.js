'use strict';
// mim-local --no-auth with the official SDK's local provider,
// CredentialProvider.forMomentoLocal({hostname, port}): it sends an empty token and plaintext.
// Every caller is super-user; tokens minted there still carry their token id.
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, topicClient, authClient, recordingSubscribe,
  waitFor, cleanupAll,
} = require('../lib/harness');

const CACHE = 'local';
let server;
const closers = [];

before(async () => {
  server = await startMimLocal({name: 'noauth', caches: [CACHE], noAuth: true});
});

after(async () => {
  await cleanupAll([...closers.reverse(), () => server?.stopClean()]);
});

function localProvider() {
  return sdk.CredentialProvider.forMomentoLocal({hostname: '127.0.0.1', port: server.port});
}

test('forMomentoLocal: lists, topics and token minting work without a key', async () => {
  const creds = localProvider();
  assert.equal(creds.getAuthToken(), '', 'the local provider sends an empty token');
  const cache = await cacheClient(creds);
  const topics = topicClient(creds);
  const auth = authClient(creds);
  closers.push(() => cache.close(), () => topics.close(), () => auth.close());

  const push = await cache.listPushBack(CACHE, 'l', 'v', {truncateFrontToSize: 10});
  assert.ok(push instanceof sdk.CacheListPushBack.Success, push.toString());
  const f = await cache.listFetch(CACHE, 'l');
  assert.ok(f instanceof sdk.CacheListFetch.Hit, f.toString());
  assert.deepEqual(f.valueListString(), ['v']);
  const caches = await cache.listCaches();
  assert.ok(caches instanceof sdk.ListCaches.Success, caches.toString());

  const rec = await recordingSubscribe(topics, CACHE, 't');
  closers.push(() => rec.unsubscribe());
  const pub = await topics.publish(CACHE, 't', 'local hello');
  assert.ok(pub instanceof sdk.TopicPublish.Success, pub.toString());
  await waitFor(() => rec.items.length === 1, 5000, 'the item');
  assert.equal(rec.items[0].valueString(), 'local hello');

  const minted = await auth.generateDisposableToken(
    sdk.DisposableTokenScopes.topicPublishSubscribe(CACHE, 't'), sdk.ExpiresIn.minutes(5),
    {tokenId: 'local-token'});
  assert.ok(minted instanceof sdk.GenerateDisposableToken.Success, minted.toString());
  const withId = topicClient(credentials(server, minted.authToken));
  closers.push(() => withId.close());
  const pub2 = await withId.publish(CACHE, 't', 'from a minted token');
  assert.ok(pub2 instanceof sdk.TopicPublish.Success, pub2.toString());
  await waitFor(() => rec.items.length === 2, 5000, 'the second item');
  assert.equal(rec.items[1].tokenId(), 'local-token', 'a valid token still provides its token id');
});

