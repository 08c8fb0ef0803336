'use strict';
// The protocol test: a Node.js client written only from docs/PROTOCOL.md on the official
// @gomomento/sdk (protocol/chat.js) takes part in a chat with C clients (our library,
// through c/mim_chat_peer.c) in both modes: it sends, replies, edits, reacts and types,
// and everything is seen correctly on both sides. Each side holds the token PROTOCOL.md
// section 8 gives its mode, minted with the user id as token id.
const {spawn} = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, topicClient, waitFor, cleanupAll, mintExact,
  cacheItem, topicGrant, pm,
} = require('../lib/harness');
const {ProtocolChat, parseValue} = require('../protocol/chat');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BUILD = path.resolve(REPO, process.env.MIM_BUILD || 'build');
const PEER = path.join(BUILD, 'interop', 'mim-chat-peer');
const MODERATOR = path.join(BUILD, 'examples', 'moderator');
const IM = 'instant-messaging';
const WAIT = 10000;

let server;
const closers = [];

before(async () => {
  assert.ok(fs.existsSync(PEER), `${PEER} is missing: run tests/scripts/interop.sh (it builds it)`);
  server = await startMimLocal({name: 'protocol', caches: [IM]});
});

after(async () => {
  await cleanupAll([...closers.reverse(), () => server?.stopClean()]);
});

// PROTOCOL.md section 8.
function grants(chat, moderated) {
  if (moderated) {
    return [
      cacheItem(pm.CacheRole.CacheReadOnly, IM, chat),
      cacheItem(pm.CacheRole.CacheReadWrite, IM, `${chat}-read`),
      topicGrant(pm.TopicRole.TopicWriteOnly, IM, `${chat}-input`),
      topicGrant(pm.TopicRole.TopicReadOnly, IM, chat),
    ];
  }
  return [
    cacheItem(pm.CacheRole.CacheReadWrite, IM, chat),
    cacheItem(pm.CacheRole.CacheReadWrite, IM, `${chat}-read`),
    topicGrant(pm.TopicRole.TopicReadWrite, IM, chat),
  ];
}

/** A C session: mim-chat-peer, its output lines collected. */
async function cPeer(token, chat, user, moderated) {
  const proc = spawn(PEER, [IM, chat, user, user, moderated ? 'moderated' : 'client'],
    {env: {...process.env, MIM_PEER_KEY: token, MIM_PEER_ENDPOINT: server.endpoint},
      stdio: ['pipe', 'pipe', 'pipe']});
  const peer = {proc, lines: [], events: [], err: ''};
  readline.createInterface({input: proc.stdout}).on('line', line => {
    peer.lines.push(line);
    if (line.startsWith('event ')) {
      peer.events.push(JSON.parse(line.slice(6)));
    }
  });
  proc.stderr.on('data', d => {
    peer.err += d;
  });
  const exited = new Promise(resolve => proc.on('exit', code => resolve(code)));
  peer.cmd = async (line, expect) => {
    const from = peer.lines.length;
    proc.stdin.write(line + '\n');
    await waitFor(() => peer.lines.slice(from).some(l => expect.test(l)), WAIT,
      () => `C ${user}: ${line} -> ${expect} (got ${JSON.stringify(peer.lines.slice(from))}; ${peer.err})`);
    return peer.lines.slice(from).find(l => expect.test(l));
  };
  peer.quit = async () => {
    proc.stdin.end('quit\n');
    assert.equal(await exited, 0, `mim-chat-peer ${user} exit: ${peer.err}`);
  };
  closers.push(() => proc.exitCode === null && proc.kill('SIGKILL'));
  await waitFor(() => peer.lines.includes('joined'), WAIT, () => `C ${user} joined: ${peer.err}`);
  return peer;
}

async function nodeClient(token, chat, user, moderated) {
  const creds = credentials(server, token);
  const cache = await cacheClient(creds);
  const topics = topicClient(creds);
  closers.push(() => cache.close(), () => topics.close());
  const c = new ProtocolChat({cache, topics, cacheName: IM, chat, userId: user, name: user,
    moderated});
  c.seen = [];
  c.updates = [];
  c.signals = [];
  c.onMessage = m => c.seen.push({...m, reactions: new Map(m.reactions)});
  c.onUpdate = (m, what) => c.updates.push({what, ...m, reactions: new Map(m.reactions)});
  c.onSignal = s => c.signals.push(s);
  await c.join();
  closers.push(() => c.leave());
  return c;
}

async function startModerator(chat) {
  const keyFile = path.join(server.dir, `mod-${chat}.key`);
  fs.writeFileSync(keyFile, server.rootKey);
  const proc = spawn(MODERATOR, ['--chat', chat, '--endpoint', server.endpoint, '--key-file', keyFile],
    {stdio: ['ignore', 'pipe', 'pipe']});
  let out = '';
  proc.stdout.on('data', d => {
    out += d;
  });
  proc.stderr.on('data', d => {
    out += d;
  });
  closers.push(() => proc.exitCode === null && proc.kill('SIGTERM'));
  await waitFor(() => /moderator: watching/.test(out), WAIT, () => `moderator start: ${out}`);
  proc.output = () => out;
  return proc;
}

async function cEvent(peer, pred, what) {
  await waitFor(() => peer.events.find(pred), WAIT,
    () => `C: ${what}; events ${JSON.stringify(peer.events)}`);
  return peer.events.find(pred);
}

async function chatBothWays(chat, moderated) {
  const mod = moderated ? await startModerator(chat) : null;
  const alice = await cPeer(await mintExact(server, grants(chat, moderated), 'alice'), chat, 'alice',
    moderated);
  const bob = await nodeClient(await mintExact(server, grants(chat, moderated), 'bob'), chat, 'bob',
    moderated);

  // C sends: the id is known ("pending") before any callback; Node sees it with its sender.
  const from = alice.lines.length;
  const sent = await alice.cmd('send hello from C', /^sent |^error /);
  const pending = alice.lines.slice(from).find(l => l.startsWith('pending '));
  const aliceMsg = pending.split(' ')[1];
  assert.equal(sent, `sent ${aliceMsg}`, 'the send reports the id chosen before it');
  await waitFor(() => bob.seen.find(m => m.id === aliceMsg), WAIT,
    () => `Node sees the C message (Node saw ${JSON.stringify(bob.seen)}; C: ${alice.lines}; moderator: ${mod?.output()})`);
  const atBob = bob.seen.find(m => m.id === aliceMsg);
  assert.equal(atBob.text, 'hello from C');
  assert.equal(atBob.sender, 'alice');
  assert.equal(atBob.trusted, moderated);
  const own = await cEvent(alice, e => e.ev === 'message' && e.id === aliceMsg, 'own message');
  assert.equal(own.mine, true);

  // Node replies; C sees the reply, its sender, and that it is not its own.
  const bobMsg = await bob.send('hi from node', aliceMsg);
  const reply = await cEvent(alice, e => e.ev === 'message' && e.id === bobMsg, 'Node reply');
  assert.equal(reply.text, 'hi from node');
  assert.equal(reply.reply_to, aliceMsg);
  assert.equal(reply.sender, 'bob');
  assert.equal(reply.trusted, moderated);
  assert.equal(reply.mine, false);

  // Node edits its message and reacts to alice's: C reports each change once.
  await bob.edit(bobMsg, 'hi from node (edited)');
  const edited = await cEvent(alice, e => e.ev === 'update' && e.what === 'edited' && e.id === bobMsg,
    'Node edit');
  assert.equal(edited.text, 'hi from node (edited)');
  await bob.react(aliceMsg, '+1', true);
  const reacted = await cEvent(alice, e => e.ev === 'update' && e.what === 'reactions' &&
    e.id === aliceMsg, 'Node reaction');
  assert.deepEqual(reacted.reactions, {'+1': ['bob']});

  // Node forges an edit of alice's message: nobody applies it (client-only: the readers'
  // author check; moderated: the moderator drops it too).
  await bob.edit(aliceMsg, 'forged by node');
  // C edits and reacts: Node folds them.
  await alice.cmd(`edit ${aliceMsg} hello from C (edited)`, /^sent /);
  await alice.cmd(`react ${bobMsg} heart on`, /^sent /);
  await waitFor(() => bob.updates.find(u => u.id === bobMsg && u.what === 'reactions'), WAIT,
    'Node sees the C reaction');
  await waitFor(() => bob.updates.find(u => u.id === aliceMsg && u.what === 'edited'), WAIT,
    'Node sees the C edit');
  assert.deepEqual([...bob.updates.find(u => u.id === bobMsg && u.what === 'reactions').reactions],
    [['heart', ['alice']]]);
  const aliceEdits = alice.events.filter(e => e.ev === 'update' && e.id === aliceMsg &&
    e.what === 'edited');
  assert.equal(aliceEdits.length, 1, `one edit of alice's message at C: ${JSON.stringify(aliceEdits)}`);
  assert.equal(aliceEdits[0].text, 'hello from C (edited)');
  assert.ok(!bob.updates.some(u => u.text === 'forged by node'), 'Node applied its own forgery');

  // Typing both ways.
  await bob.typing(true);
  await cEvent(alice, e => e.ev === 'presence' && e.change === 'typing' && e.user === 'bob',
    'Node typing at C');
  await alice.cmd('typing on', /^ok/);
  await waitFor(() => bob.signals.find(s => s.t === 'typing' && s.on === true && s.sender === 'alice'),
    WAIT, 'C typing at Node');

  // A late C joiner sees the folded state and no update for what it got folded in.
  const carol = await cPeer(await mintExact(server, grants(chat, moderated), 'carol'), chat, 'carol',
    moderated);
  const hist = await cEvent(carol, e => e.ev === 'message' && e.id === aliceMsg, 'carol history');
  assert.equal(hist.text, 'hello from C (edited)');
  assert.equal(hist.edited, true);
  assert.deepEqual(hist.reactions, {'+1': ['bob']});
  const hist2 = await cEvent(carol, e => e.ev === 'message' && e.id === bobMsg, 'carol history 2');
  assert.equal(hist2.reply_to, aliceMsg);
  assert.deepEqual(hist2.reactions, {heart: ['alice']});
  assert.ok(!carol.events.some(e => e.ev === 'update'), 'no update for folded history');

  // Everything stored is a version 2 stored envelope (moderated: with the trusted pub);
  // typing signals never reached the list (PROTOCOL.md 3.4, 5).
  const list = await bob.cache.listFetch(IM, chat);
  assert.ok(list instanceof sdk.CacheListFetch.Hit, list.toString());
  for (const value of list.valueListString()) {
    const {kind, env} = parseValue(value);
    assert.equal(kind, 'stored', `stored value: ${value}`);
    assert.equal(env.v, 2, value);
    assert.equal(typeof env.pub === 'string', moderated, `pub in ${value}`);
  }
  assert.equal(list.valueListString().length, moderated ? 6 : 7, 'the forged edit is stored only client-only');

  await carol.quit();
  await alice.quit();
  bob.leave();
}

test('client-only: a Node client from PROTOCOL.md and C clients see each other exactly', async () => {
  await chatBothWays('proto-open', false);
});

test('moderated: the same through the moderator, senders trusted', async () => {
  await chatBothWays('proto-mod', true);
});
