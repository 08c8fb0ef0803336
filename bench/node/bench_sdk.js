'use strict';
// Bench of the official Momento Node.js SDK (@gomomento/sdk) against mim-local, the same
// figures as bench_mim.c: topic publish -> onItem latency (one in flight), publish
// throughput with a window of promises in flight, join = subscribe + listFetch of 100,
// RSS per idle subscription. Prints one JSON line; writes sorted samples (us).
// The SDK comes from the interop tests' pinned install: run with
// NODE_PATH=tests/interop/node_modules (bench/run.sh does).
// --only fanout --subs N --procs P --messages M and --only scale --chats N: the fan-out
// and chat-count figures, the same protocol as bench_common.h (subscriber processes are
// this script again with --fanout-sub K, one TopicClient per 100 subscriptions, since
// the SDK allows 100 streams per connection; process.hrtime is CLOCK_MONOTONIC).

const fs = require('node:fs');
const childProcess = require('node:child_process');
const readline = require('node:readline');
const path = require('node:path');
const sdk = require('@gomomento/sdk');

function arg(name, dflt) {
  const i = process.argv.lastIndexOf(name); // the last one wins (run.sh overrides --tput)
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const cfg = {
  endpoint: arg('--endpoint'),
  key: fs.readFileSync(arg('--key-file'), 'utf8').trim(),
  cache: arg('--cache', 'bench'),
  samplesDir: arg('--samples-dir'),
  count: Number(arg('--count', 2000)),
  warmup: Number(arg('--warmup', 200)),
  tput: Number(arg('--tput', 20000)),
  window: Number(arg('--window', 256)),
  joins: Number(arg('--joins', 200)),
  sessions: Number(arg('--sessions', 1000)),
  serverPid: Number(arg('--server-pid', 0)),
  payload: Number(arg('--payload', 100)),
};
const WAIT_MS = 10000;
const payload = Array.from({length: cfg.payload}, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
const now = () => process.hrtime.bigint();
const logger = new sdk.DefaultMomentoLoggerFactory(sdk.DefaultMomentoLoggerLevel.ERROR);

function creds() {
  return sdk.CredentialProvider.fromString({
    apiKey: cfg.key,
    endpointOverrides: {cacheEndpoint: cfg.endpoint, controlEndpoint: cfg.endpoint,
      tokenEndpoint: cfg.endpoint, secureConnection: false},
  });
}
function topicClient(streamConnections) {
  let configuration = sdk.TopicConfigurations.Default.latest(logger);
  if (streamConnections) configuration = configuration.withNumStreamConnections(streamConnections);
  return new sdk.TopicClient({configuration, credentialProvider: creds()});
}

function stats(ns) {
  const v = ns.map(Number).sort((a, b) => a - b);
  const pct = p => {
    if (!v.length) return -1;
    const rank = Math.min(v.length, Math.max(1, Math.ceil((p / 100) * v.length)));
    return Math.round(v[rank - 1] / 100) / 10;
  };
  return {n: v.length, p50: pct(50), p90: pct(90), p99: pct(99), max: pct(100), sorted: v};
}

function serverRss(pid) {
  if (!pid) return -1;
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : -1;
}

// A subscription whose onItem resolves the next waiter; `last` is the arrival time.
async function subscribe(client, topic) {
  const s = {n: 0, last: 0n, waiters: []};
  const resp = await client.subscribe(cfg.cache, topic, {
    onItem: () => {
      s.n++;
      s.last = now();
      while (s.waiters.length && s.waiters[0].want <= s.n) s.waiters.shift().resolve();
    },
    onError: () => {},
  });
  if (!(resp instanceof sdk.TopicSubscribe.Subscription)) throw new Error(`subscribe: ${resp}`);
  s.sub = resp;
  s.until = want => new Promise((resolve, reject) => {
    if (s.n >= want) return resolve();
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${want} items (got ${s.n})`)), WAIT_MS);
    s.waiters.push({want, resolve: () => { clearTimeout(t); resolve(); }});
  });
  return s;
}

async function publishOk(client, topic) {
  const r = await client.publish(cfg.cache, topic, payload);
  if (!(r instanceof sdk.TopicPublish.Success)) throw new Error(`publish: ${r}`);
}

async function benchLatency(tx, rx) {
  const s = await subscribe(rx, 'node-lat');
  const out = [];
  for (let i = 0; i < cfg.warmup + cfg.count; i++) {
    const t0 = now();
    const arrived = s.until(i + 1);
    await publishOk(tx, 'node-lat');
    await arrived;
    if (i >= cfg.warmup) out.push(s.last - t0);
  }
  s.sub.unsubscribe();
  return out;
}

async function benchThroughput(tx, rx) {
  const s = await subscribe(rx, 'node-tput');
  let inflight = 0, failed = 0, lastDone = 0n;
  let wake = null;
  const t0 = now();
  for (let i = 0; i < cfg.tput; i++) {
    while (inflight >= cfg.window) await new Promise(r => (wake = r));
    inflight++;
    tx.publish(cfg.cache, 'node-tput', payload).then(r => {
      if (!(r instanceof sdk.TopicPublish.Success)) failed++;
      inflight--;
      lastDone = now();
      if (wake) { const w = wake; wake = null; w(); }
    });
  }
  while (inflight > 0) await new Promise(r => (wake = r));
  try { await s.until(cfg.tput); } catch { /* counted below */ }
  s.sub.unsubscribe();
  return {
    sends_per_s: Math.round(cfg.tput / (Number(lastDone - t0) / 1e9)),
    recv_per_s: Math.round(s.n / (Number(s.last - t0) / 1e9)),
    received: s.n, publish_failed: failed,
  };
}

async function benchJoin(cache, rx) {
  await cache.delete(cfg.cache, 'node-join');
  for (let i = 0; i < 100; i++) {
    const r = await cache.listPushBack(cfg.cache, 'node-join', payload);
    if (!(r instanceof sdk.CacheListPushBack.Success)) throw new Error(`push: ${r}`);
  }
  const out = [];
  for (let i = 0; i < Math.floor(cfg.warmup / 10) + cfg.joins; i++) {
    const t0 = now();
    const s = await subscribe(rx, 'node-join');
    const f = await cache.listFetch(cfg.cache, 'node-join');
    const t1 = now();
    if (!(f instanceof sdk.CacheListFetch.Hit) || f.valueList().length !== 100) throw new Error(`fetch: ${f}`);
    s.sub.unsubscribe();
    if (i >= Math.floor(cfg.warmup / 10)) out.push(t1 - t0);
  }
  return out;
}

async function benchMemory() {
  const c = topicClient();
  const subs = [];
  for (let i = 0; i < 10; i++) subs.push(await subscribe(c, `node-idle-w${i}`));
  if (global.gc) global.gc();
  const c0 = process.memoryUsage().rss, s0 = serverRss(cfg.serverPid);
  let made = 0, error = null;
  try {
    for (; made < cfg.sessions; made++) subs.push(await subscribe(c, `node-idle-${made}`));
  } catch (e) {
    error = String(e.message || e).slice(0, 200);
  }
  if (global.gc) global.gc();
  const c1 = process.memoryUsage().rss, s1 = serverRss(cfg.serverPid);
  for (const s of subs) s.sub.unsubscribe();
  return {
    rss_client_per_session: made ? Math.round((c1 - c0) / made) : -1,
    rss_server_per_sub: made && s0 > 0 ? Math.round((s1 - s0) / made) : -1,
    sessions: made, memory_error: error,
  };
}

function sdkVersion() {
  try {
    return require('@gomomento/sdk/package.json').version;
  } catch {
    return '?';
  }
}

function save(name, st) {
  if (!cfg.samplesDir) return;
  fs.writeFileSync(path.join(cfg.samplesDir, `${name}.txt`),
    st.sorted.map(v => (v / 1000).toFixed(1)).join('\n') + '\n');
}

// ---- fan-out (see bench_common.h for the protocol) ----
const fanoutTopic = () => `fanout-${Number(arg('--subs', 100))}`;

async function fanoutChild(k) {
  const count = new Map(), last = new Map();
  const clients = Array.from({length: Math.ceil(k / 100)}, () => topicClient());
  const onItem = item => {
    const t = now();
    const seq = parseInt(String(item.value()).slice(0, 24), 10);
    const n = (count.get(seq) || 0) + 1;
    count.set(seq, n);
    if (!last.has(seq) || t > last.get(seq)) last.set(seq, t);
    if (n === k) process.stdout.write(`${seq} ${last.get(seq)}\n`);
  };
  const subs = [];
  for (let i = 0; i < k; i++) {
    const r = await clients[i % clients.length].subscribe(cfg.cache, fanoutTopic(), {onItem, onError: () => {}});
    if (!(r instanceof sdk.TopicSubscribe.Subscription)) throw new Error(`subscribe: ${r}`);
    subs.push(r);
  }
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

function fanoutPayload(seq, t0) {
  const head = `${seq} ${t0} `;
  return head + '.'.repeat(Math.max(0, cfg.payload - head.length));
}

async function fanoutMain() {
  const subs = Number(arg('--subs', 100));
  const procs = Math.min(subs, Number(arg('--procs', 4)));
  const messages = Number(arg('--messages', 100));
  const warmup = Number(arg('--fanout-warmup', 10));
  const timeoutMs = Number(arg('--fanout-timeout-ms', 2000));
  const tx = topicClient();
  const t0setup = now();
  let ready = 0, exited = 0, waiter = null, current = null;
  const children = [];
  for (let i = 0; i < procs; i++) {
    const k = Math.floor(subs / procs) + (i < subs % procs ? 1 : 0);
    const child = childProcess.spawn(process.execPath, [__filename, ...process.argv.slice(2), '--fanout-sub', String(k)],
      {stdio: ['pipe', 'pipe', 'inherit']});
    readline.createInterface({input: child.stdout}).on('line', line => {
      if (line === 'ready') ready++;
      else if (current) {
        const [seq, t] = line.split(' ');
        if (Number(seq) === current.seq) {
          current.reported++;
          const tn = BigInt(t);
          if (tn > current.last) current.last = tn;
        }
      }
      if (waiter) waiter();
    });
    child.on('exit', () => { exited++; if (waiter) waiter(); });
    children.push(child);
  }
  const until = (cond, ms) => new Promise(resolve => {
    if (cond()) return resolve(true);
    const t = setTimeout(() => { waiter = null; resolve(false); }, ms);
    waiter = () => { if (cond()) { clearTimeout(t); waiter = null; resolve(true); } };
  });
  // a subscriber process that died (it printed why) ends the wait at once
  if (!(await until(() => ready >= procs || exited > 0, 120000)) || exited > 0) {
    for (const c of children) c.kill('SIGKILL');
    throw new Error('fan-out subscribers not ready');
  }
  const setupMs = Number(now() - t0setup) / 1e6;
  const out = [];
  let incomplete = 0;
  for (let seq = 0; seq < warmup + messages; seq++) {
    const t0 = now();
    current = {seq, reported: 0, last: 0n};
    const r = await tx.publish(cfg.cache, fanoutTopic(), fanoutPayload(seq, t0));
    const ok = r instanceof sdk.TopicPublish.Success && await until(() => current.reported >= procs, timeoutMs);
    if (seq < warmup) continue;
    if (ok) out.push(current.last - t0);
    else incomplete++;
  }
  for (const c of children) c.stdin.end();
  await Promise.all(children.map(c => new Promise(resolve => {
    if (c.exitCode !== null) return resolve();
    const t = setTimeout(() => { c.kill('SIGKILL'); resolve(); }, 5000);
    c.on('exit', () => { clearTimeout(t); resolve(); });
  })));
  const st = stats(out);
  process.stdout.write(JSON.stringify({system: `Node SDK (@gomomento/sdk ${sdkVersion()})`, kind: 'fanout',
    subs, procs, messages, incomplete, setup_ms: Math.round(setupMs),
    latency: {n: st.n, p50: st.p50, p90: st.p90, p99: st.p99, max: st.max}}) + '\n');
}

// ---- latency in one of N subscribed topics, and RSS per subscription ----
async function scaleMain() {
  const chats = Number(arg('--chats', 1));
  const rx = topicClient(Math.ceil((chats + 10) / 100)), tx = topicClient();
  const subs = [];
  for (let i = 0; i < 10; i++) subs.push(await subscribe(rx, `scale${chats}-w${i}`));
  if (global.gc) global.gc();
  const c0 = process.memoryUsage().rss;
  for (let i = 0; i < chats; i++) subs.push(await subscribe(rx, `scale${chats}-${i}`));
  if (global.gc) global.gc();
  const c1 = process.memoryUsage().rss;
  const s = subs[10];
  const out = [];
  for (let i = 0; i < cfg.warmup + cfg.count; i++) {
    const t0 = now();
    const arrived = s.until(i + 1);
    await publishOk(tx, `scale${chats}-0`);
    await arrived;
    if (i >= cfg.warmup) out.push(s.last - t0);
  }
  for (const x of subs) x.sub.unsubscribe();
  const st = stats(out);
  process.stdout.write(JSON.stringify({system: `Node SDK (@gomomento/sdk ${sdkVersion()})`, kind: 'scale',
    chats, latency: {n: st.n, p50: st.p50, p90: st.p90, p99: st.p99, max: st.max},
    rss_client: c1, rss_client_per_session: Math.round((c1 - c0) / chats)}) + '\n');
}

async function main() {
  const only = arg('--only');
  if (arg('--fanout-sub')) return fanoutChild(Number(arg('--fanout-sub')));
  if (only === 'fanout') { await fanoutMain(); process.exit(0); }
  if (only === 'scale') { await scaleMain(); process.exit(0); }
  const tx = topicClient(), rx = topicClient();
  const cache = await sdk.CacheClient.create({configuration: sdk.Configurations.Laptop.v1(logger),
    credentialProvider: creds(), defaultTtlSeconds: 600});
  const lat = stats(await benchLatency(tx, rx));
  const tput = await benchThroughput(tx, rx);
  const join = stats(await benchJoin(cache, rx));
  const mem = await benchMemory();
  save('node-sdk', lat);
  const strip = s => ({n: s.n, p50: s.p50, p90: s.p90, p99: s.p99, max: s.max});
  process.stdout.write(JSON.stringify({system: `Node SDK (@gomomento/sdk ${sdkVersion()})`,
    latency: strip(lat),
  join: strip(join), ...tput, tput_messages: cfg.tput, window: cfg.window, ...mem}) + '\n');
  process.exit(0); // the SDK keeps channels open
}

main().catch(e => {
  console.error('bench_sdk:', e);
  process.exit(1);
});
