'use strict';
// Both directions: our C library (libmomento-im, through the small CLI tests/interop/c/mim_peer.c
// that tests/scripts/interop.sh builds into $MIM_BUILD/interop/mim-peer) and the official
// Node.js SDK talk to each other through mim-local: topics (text, binary, publisher token id)
// and lists (same bytes both ways), with disposable tokens minted by the SDK.
const {spawn, execFile} = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, topicClient, authClient, recordingSubscribe,
  waitFor, cleanupAll,
} = require('../lib/harness');

const REPO = path.resolve(__dirname, '..', '..', '..');
const PEER = process.env.MIM_PEER_BIN ||
  path.resolve(REPO, process.env.MIM_BUILD || 'build', 'interop', 'mim-peer');
const CACHE = 'both-ways';
let server;
let root;
const closers = [];

before(async () => {
  assert.ok(fs.existsSync(PEER), `${PEER} is missing: run tests/scripts/interop.sh (it builds it)`);
  server = await startMimLocal({name: 'cpeer', caches: [CACHE]});
  const creds = credentials(server);
  root = {cache: await cacheClient(creds), topics: topicClient(creds), auth: authClient(creds)};
  closers.push(() => root.cache.close(), () => root.topics.close(), () => root.auth.close());
});

after(async () => {
  await cleanupAll([...closers.reverse(), () => server?.stopClean()]);
});

async function mint(scope, tokenId) {
  const r = await root.auth.generateDisposableToken(scope, sdk.ExpiresIn.minutes(10), {tokenId});
  assert.ok(r instanceof sdk.GenerateDisposableToken.Success, r.toString());
  return r.authToken;
}

function peerEnv(key) {
  return {...process.env, MIM_PEER_KEY: key, MIM_PEER_ENDPOINT: server.endpoint};
}

/** Runs one mim-peer command; resolves to its stdout lines (rejects on a non-zero exit). */
function peer(key, ...args) {
  return new Promise((resolve, reject) => {
    execFile(PEER, args, {env: peerEnv(key), timeout: 15000}, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`mim-peer ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
        return;
      }
      resolve(stdout.trim().split('\n'));
    });
  });
}

/** Starts `mim-peer subscribe`; resolves once it printed "ready". */
async function peerSubscribe(key, topic, count) {
  const child = spawn(PEER, ['subscribe', CACHE, topic, String(count), '10000'],
    {env: peerEnv(key), stdio: ['ignore', 'pipe', 'pipe']});
  const lines = [];
  let buf = '';
  let stderr = '';
  const exited = new Promise(r => child.on('exit', code => r(code)));
  child.stdout.on('data', d => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr.on('data', d => {
    stderr += d.toString();
  });
  closers.push(() => child.kill('SIGKILL'));
  let code = null;
  exited.then(c => {
    code = c;
  });
  await waitFor(() => lines.includes('ready') || code !== null, 10000, 'mim-peer to subscribe');
  assert.ok(lines.includes('ready'), `mim-peer subscribe failed (${code}): ${lines.join('\n')}${stderr}`);
  return {lines, exited, stderr: () => stderr};
}

const hex = bytes => Buffer.from(bytes).toString('hex');

test('C library publishes text and binary; the SDK receives them with the C token id', async () => {
  const cKey = await mint(sdk.DisposableTokenScopes.topicPublishSubscribe(CACHE, 'c-to-node'), 'c-peer');
  const rec = await recordingSubscribe(root.topics, CACHE, 'c-to-node');
  closers.push(() => rec.unsubscribe());
  assert.deepEqual(await peer(cKey, 'publish', CACHE, 'c-to-node', 'héllo from C ✓'), ['ok']);
  const bytes = [0, 1, 0x80, 0xfe, 0xff];
  assert.deepEqual(await peer(cKey, 'publish-hex', CACHE, 'c-to-node', hex(bytes)), ['ok']);
  await waitFor(() => rec.items.length === 2, 5000, 'both items');
  const [t, b] = rec.items;
  assert.equal(t.value(), 'héllo from C ✓');
  assert.equal(t.tokenId(), 'c-peer');
  assert.ok(b.value() instanceof Uint8Array, 'binary arrives as binary');
  assert.deepEqual(Array.from(b.valueUint8Array()), bytes);
  assert.equal(b.sequenceNumber(), t.sequenceNumber() + 1);
});

test('the SDK publishes text and binary; the C library receives them with the SDK token id', async () => {
  const nodeKey = await mint(sdk.DisposableTokenScopes.topicPublishSubscribe(CACHE, 'node-to-c'), 'node-sdk');
  const cKey = await mint(sdk.DisposableTokenScopes.topicSubscribeOnly(CACHE, 'node-to-c'), 'c-listener');
  const sub = await peerSubscribe(cKey, 'node-to-c', 2);
  const pubber = topicClient(credentials(server, nodeKey));
  closers.push(() => pubber.close());
  const p1 = await pubber.publish(CACHE, 'node-to-c', 'grüße from node');
  assert.ok(p1 instanceof sdk.TopicPublish.Success, p1.toString());
  const bytes = new Uint8Array([0xff, 0, 0x7f]);
  const p2 = await pubber.publish(CACHE, 'node-to-c', bytes);
  assert.ok(p2 instanceof sdk.TopicPublish.Success, p2.toString());
  const code = await sub.exited;
  assert.equal(code, 0, `mim-peer exit ${code}: ${sub.lines.join('\n')}${sub.stderr()}`);
  const items = sub.lines.filter(l => l.startsWith('item ')).map(l => l.split(' '));
  assert.equal(items.length, 2, sub.lines.join('\n'));
  const [, seq1, , pub1, kind1, data1] = items[0];
  const [, seq2, , pub2, kind2, data2] = items[1];
  assert.deepEqual([pub1, kind1, data1], ['node-sdk', 'text', hex(Buffer.from('grüße from node'))]);
  assert.deepEqual([pub2, kind2, data2], ['node-sdk', 'binary', hex(bytes)]);
  assert.equal(Number(seq2), Number(seq1) + 1);
});

test('lists: bytes pushed by C are fetched by the SDK and the other way round', async () => {
  const key = await mint(sdk.DisposableTokenScopes.cacheKeyReadWrite(CACHE, 'shared-list'), 'list-peer');
  const nodeCache = await cacheClient(credentials(server, key));
  closers.push(() => nodeCache.close());
  const fromC = Buffer.from('written by C 💬');
  assert.deepEqual(await peer(key, 'push', CACHE, 'shared-list', hex(fromC)), ['ok']);
  const fromNode = new Uint8Array([1, 2, 3, 0]);
  const push = await nodeCache.listPushBack(CACHE, 'shared-list', fromNode);
  assert.ok(push instanceof sdk.CacheListPushBack.Success, push.toString());
  const f = await nodeCache.listFetch(CACHE, 'shared-list');
  assert.ok(f instanceof sdk.CacheListFetch.Hit, f.toString());
  assert.deepEqual(f.valueListUint8Array().map(hex), [hex(fromC), hex(fromNode)]);
  const lines = await peer(key, 'fetch', CACHE, 'shared-list');
  assert.deepEqual(lines, [`value ${hex(fromC)}`, `value ${hex(fromNode)}`, 'found 2', 'ok']);
});

test('the C library reports PERMISSION_DENIED for a token minted by the SDK without the grant', async () => {
  const key = await mint(sdk.DisposableTokenScopes.topicSubscribeOnly(CACHE, 'read-only-topic'), 'c-ro');
  const out = await peer(key, 'publish', CACHE, 'read-only-topic', 'nope').catch(e => e.message);
  assert.match(String(out), /error \S*PERMISSION_DENIED/);
});
