'use strict';
// Control plane with the official SDK's CacheClient: create/list/delete caches, NOT_FOUND for a
// missing cache, and a clean exit (status 0) of mim-local on SIGTERM.
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {sdk, startMimLocal, credentials, cacheClient, cleanupAll} = require('../lib/harness');

let server;
let cache;

before(async () => {
  server = await startMimLocal({name: 'control', caches: ['preexisting']});
  cache = await cacheClient(credentials(server));
});

after(async () => {
  await cleanupAll([() => cache?.close(), () => server?.stopClean()]);
});

test('listCaches shows the --cache caches', async () => {
  const r = await cache.listCaches();
  assert.ok(r instanceof sdk.ListCaches.Success, r.toString());
  assert.ok(r.getCaches().map(c => c.getName()).includes('preexisting'));
});

test('createCache, listCaches, deleteCache round trip', async () => {
  const c = await cache.createCache('made-at-runtime');
  assert.ok(c instanceof sdk.CreateCache.Success, c.toString());
  const again = await cache.createCache('made-at-runtime');
  assert.ok(again instanceof sdk.CreateCache.AlreadyExists, again.toString());
  const names = (await cache.listCaches()).getCaches().map(x => x.getName());
  assert.ok(names.includes('made-at-runtime'), names.join(','));
  const push = await cache.listPushBack('made-at-runtime', 'l', 'v');
  assert.ok(push instanceof sdk.CacheListPushBack.Success, push.toString());
  const d = await cache.deleteCache('made-at-runtime');
  assert.ok(d instanceof sdk.DeleteCache.Success, d.toString());
  const gone = (await cache.listCaches()).getCaches().map(x => x.getName());
  assert.ok(!gone.includes('made-at-runtime'), gone.join(','));
});

test('a list call on a missing cache fails with NOT_FOUND_ERROR', async () => {
  const r = await cache.listFetch('no-such-cache', 'l');
  assert.ok(r instanceof sdk.CacheListFetch.Error, r.toString());
  assert.equal(r.errorCode(), sdk.MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
});

test('mim-local exits with status 0 on SIGTERM', async () => {
  cache.close();
  cache = undefined;
  const st = await server.stop();
  assert.deepEqual(st, {code: 0, signal: null}, `exit ${JSON.stringify(st)}; log:\n${server.log()}`);
});
