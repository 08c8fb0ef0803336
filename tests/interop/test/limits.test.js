'use strict';
// Hosted Momento's limits in mim-local, seen from the official SDK: each refusal carries
// the `err` trailer, and @gomomento/sdk reports LIMIT_EXCEEDED_ERROR with the cause in
// errCause (read from `err`) and the message it has for that cause (sdk-core's
// LimitExceededMessageWrapper). In SDK 1.118.1 LimitExceededError chooses that message
// before it stores errCause, so the message always comes from the fallback, words in
// the status message ("subscribers", "operations", "throughput", "request limit",
// "item size", "element size"): mim-local's messages carry those words, and this test
// checks both the cause and the message.
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, topicClient, recordingSubscribe, cleanupAll,
} = require('../lib/harness');

const MESSAGES = {
  topic_subscriptions_limit_exceeded: 'Topic subscriptions limit exceeded for this account',
  operations_rate_limit_exceeded: 'Request rate limit exceeded for this account',
  throughput_rate_limit_exceeded: 'Bandwidth limit exceeded for this account',
  request_size_limit_exceeded: 'Request size limit exceeded for this account',
  item_size_limit_exceeded: 'Item size limit exceeded for this account',
  element_size_limit_exceeded: 'Element size limit exceeded for this account',
};

let hard; // hosted hard limits (the default)
let rates; // small rate limits
let cache;
let topics;
let rateCache;
let rateTopics;
const subs = [];

before(async () => {
  hard = await startMimLocal({name: 'limits-hard', caches: ['sizes']});
  rates = await startMimLocal({
    name: 'limits-rates',
    caches: ['ops', 'bytes', 'topics', 'subs'],
    extraArgs: ['--cache-ops-per-s', '3', '--cache-bytes-per-s', '1000',
      '--topic-ops-per-s', '2', '--topic-subscriptions', '1'],
  });
  cache = await cacheClient(credentials(hard));
  topics = topicClient(credentials(hard));
  rateCache = await cacheClient(credentials(rates));
  rateTopics = topicClient(credentials(rates));
});

after(async () => {
  await cleanupAll([
    ...subs.map(s => () => s.unsubscribe()),
    () => cache?.close(), () => topics?.close(), () => rateCache?.close(), () => rateTopics?.close(),
    () => hard?.stopClean(), () => rates?.stopClean(),
  ]);
});

function assertLimit(resp, ErrorClass, cause) {
  assert.ok(resp instanceof ErrorClass, `expected an error for ${cause}: ${resp.toString()}`);
  assert.equal(resp.errorCode(), sdk.MomentoErrorCode.LIMIT_EXCEEDED_ERROR, resp.toString());
  const inner = resp.innerException();
  assert.equal(inner.errCause, cause, `errCause: ${resp.toString()}`);
  assert.ok(resp.message().startsWith(`${MESSAGES[cause]}: `), resp.message());
}

test('a topic message over 4 KB: request_size_limit_exceeded', async () => {
  const ok = await topics.publish('sizes', 't', 'x'.repeat(4096));
  assert.ok(ok instanceof sdk.TopicPublish.Success, ok.toString());
  const r = await topics.publish('sizes', 't', 'x'.repeat(4097));
  assertLimit(r, sdk.TopicPublish.Error, 'request_size_limit_exceeded');
  assert.match(r.message(), /4097 bytes exceeds the request limit of 4096 bytes/);
});

test('a list element over 128 KB: element_size_limit_exceeded', async () => {
  const r = await cache.listPushBack('sizes', 'el', 'x'.repeat(200000));
  assertLimit(r, sdk.CacheListPushBack.Error, 'element_size_limit_exceeded');
  assert.match(r.message(), /list element of 200000 bytes exceeds the element size limit of 131072 bytes/);
});

test('a list over 1 MB: item_size_limit_exceeded, nothing written', async () => {
  const big = 'x'.repeat(131072);
  const c = await cache.listConcatenateBack('sizes', 'item', Array(8).fill(big));
  assert.ok(c instanceof sdk.CacheListConcatenateBack.Success, c.toString());
  const r = await cache.listPushBack('sizes', 'item', 'y');
  assertLimit(r, sdk.CacheListPushBack.Error, 'item_size_limit_exceeded');
  const len = await cache.listLength('sizes', 'item');
  assert.equal(len.length(), 8);
});

test('past the operations rate: operations_rate_limit_exceeded', async () => {
  let r;
  for (let i = 0; i < 50; i++) {
    r = await rateCache.listLength('ops', 'x');
    if (r instanceof sdk.CacheListLength.Error) {
      break;
    }
  }
  assertLimit(r, sdk.CacheListLength.Error, 'operations_rate_limit_exceeded');
});

test('past the throughput rate: throughput_rate_limit_exceeded', async () => {
  const ok = await rateCache.listPushBack('bytes', 'b', 'x'.repeat(1500));
  assert.ok(ok instanceof sdk.CacheListPushBack.Success, ok.toString());
  const r = await rateCache.listPushBack('bytes', 'b', 'y');
  assertLimit(r, sdk.CacheListPushBack.Error, 'throughput_rate_limit_exceeded');
});

test('past the topic operations rate: operations_rate_limit_exceeded', async () => {
  let r;
  for (let i = 0; i < 20; i++) {
    r = await rateTopics.publish('topics', 't', 'x');
    if (r instanceof sdk.TopicPublish.Error) {
      break;
    }
  }
  assertLimit(r, sdk.TopicPublish.Error, 'operations_rate_limit_exceeded');
});

test('past the concurrent subscriptions: topic_subscriptions_limit_exceeded', async () => {
  subs.push(await recordingSubscribe(rateTopics, 'subs', 'room'));
  const r = await rateTopics.subscribe('subs', 'room', {});
  assertLimit(r, sdk.TopicSubscribe.Error, 'topic_subscriptions_limit_exceeded');
});
