'use strict';
// A small chat client written only from docs/PROTOCOL.md (protocol version 2), on the
// official Momento Node.js SDK. It is the proof that the document is enough for another
// language to take part in a libmomento-im chat: protocol.test.js runs it against C
// clients. Section numbers below refer to docs/PROTOCOL.md.

const crypto = require('node:crypto');
const sdk = require('@gomomento/sdk');

const HISTORY_CAP = 100; // section 1: the library's default truncate_front_to_size

function newId() {
  return crypto.randomBytes(16).toString('hex'); // 3.1: 32 lowercase hex digits
}

// Section 7: "dm-" + hex of the first 16 bytes of SHA-256(x || 0x00 || y), x <= y bytewise.
function directChatId(a, b) {
  let x = Buffer.from(a, 'utf8');
  let y = Buffer.from(b, 'utf8');
  if (Buffer.compare(x, y) > 0) {
    [x, y] = [y, x];
  }
  const h = crypto.createHash('sha256').update(Buffer.concat([x, Buffer.from([0]), y])).digest();
  return 'dm-' + h.subarray(0, 16).toString('hex');
}

// 3.4: a stored value is foreign unless it is an object with the members its type needs.
const STORED_NEEDS = {
  msg: {text: 'string'},
  edit: {ref: 'string', text: 'string'},
  delete: {ref: 'string'},
  react: {ref: 'string', key: 'string', on: 'boolean'},
};

/** Parses one value: {kind: 'stored'|'signal'|'ignored'|'foreign', env}. */
function parseValue(text) {
  let env;
  try {
    env = JSON.parse(text);
  } catch {
    return {kind: 'foreign'};
  }
  if (env === null || typeof env !== 'object' || Array.isArray(env)) {
    return {kind: 'foreign'};
  }
  const v = env.v === undefined ? 1 : env.v;
  if (!Number.isInteger(v) || v < 1) {
    return {kind: 'foreign'};
  }
  const t = env.t === undefined ? 'msg' : env.t;
  if (t === 'typing' || t === 'presence') {
    return {kind: 'signal', env: {...env, v, t}};
  }
  const needs = STORED_NEEDS[t];
  if (!needs) {
    return {kind: 'ignored'}; // 3.4: unknown t
  }
  if (typeof env.id !== 'string' || env.id.length === 0 || typeof env.from !== 'string' ||
      !Number.isInteger(env.ts)) {
    return {kind: 'foreign'};
  }
  for (const [k, type] of Object.entries(needs)) {
    if (typeof env[k] !== type) {
      return {kind: 'foreign'};
    }
  }
  return {kind: 'stored', env: {...env, v, t}};
}

class ProtocolChat {
  /**
   * opts: {cache: CacheClient, topics: TopicClient, cacheName, chat, userId, name,
   *        moderated: bool}
   * Events: onMessage(state), onUpdate(state, what), onSignal(env).
   */
  constructor(opts) {
    Object.assign(this, opts);
    this.sid = crypto.randomBytes(8).toString('hex'); // section 5: 16 hex digits
    this.applied = new Set(); // 4.1: ids applied once
    this.messages = new Map(); // id -> state (4.3)
    this.held = []; // 4.3: events for messages not delivered yet
    this.buffer = null; // live values that arrive while the list is fetched (4.2)
    this.onMessage = () => {};
    this.onUpdate = () => {};
    this.onSignal = () => {};
  }

  // 3.2: a value's sender.
  senderOf(env) {
    if (this.moderated && typeof env.pub === 'string') {
      return env.pub;
    }
    return typeof env.uid === 'string' ? env.uid : env.from;
  }

  /** 4.2: subscribe to topic C first, then fetch list C, then live values. */
  async join() {
    this.buffer = [];
    const sub = await this.topics.subscribe(this.cacheName, this.chat, {
      onItem: item => this.onItem(item.valueString()),
      onError: () => {},
    });
    if (!(sub instanceof sdk.TopicSubscribe.Subscription)) {
      throw new Error(`subscribe ${this.chat}: ${sub.toString()}`);
    }
    this.sub = sub;
    const r = await this.cache.listFetch(this.cacheName, this.chat);
    if (r instanceof sdk.CacheListFetch.Hit) {
      for (const value of r.valueListString()) {
        this.apply(value, true);
      }
    } else if (!(r instanceof sdk.CacheListFetch.Miss)) {
      throw new Error(`listFetch ${this.chat}: ${r.toString()}`);
    }
    const live = this.buffer;
    this.buffer = null;
    for (const value of live) {
      this.apply(value, false);
    }
  }

  onItem(value) {
    if (this.buffer) {
      this.buffer.push(value);
    } else {
      this.apply(value, false);
    }
  }

  apply(value, fromHistory) {
    const {kind, env} = parseValue(value);
    if (kind === 'signal') {
      if (!fromHistory && env.sid !== this.sid) {
        this.onSignal({...env, sender: this.senderOf(env)}); // 3.4: signals in a list are ignored
      }
      return;
    }
    if (kind !== 'stored' || this.applied.has(env.id)) {
      return;
    }
    this.applied.add(env.id);
    if (env.t === 'msg') {
      this.deliver(env, fromHistory);
    } else {
      this.applyEvent(env, true);
    }
  }

  deliver(env, fromHistory) {
    const state = {
      id: env.id, from: env.from, sender: this.senderOf(env), text: env.text,
      replyTo: typeof env.re === 'string' ? env.re : '', edited: false, deleted: false,
      reactions: new Map(), fromHistory,
      trusted: this.moderated && typeof env.pub === 'string',
    };
    this.messages.set(env.id, state);
    // 4.3: held events for this message are folded in before it is delivered.
    const mine = this.held.filter(e => e.ref === env.id);
    this.held = this.held.filter(e => e.ref !== env.id);
    for (const e of mine) {
      this.applyEvent(e, false);
    }
    this.onMessage(state);
  }

  applyEvent(env, report) {
    const m = this.messages.get(env.ref);
    if (!m) {
      this.held.push(env);
      if (this.held.length > 1024) {
        this.held.shift();
      }
      return;
    }
    const what = this.change(m, env);
    if (what && report) {
      this.onUpdate(m, what);
    }
  }

  // 4.3: returns 'edited' | 'deleted' | 'reactions' or null when nothing changed.
  change(m, env) {
    const sender = this.senderOf(env);
    if (m.deleted) {
      return null;
    }
    if (env.t === 'edit' || env.t === 'delete') {
      if (sender !== m.sender) {
        return null;
      }
      if (env.t === 'edit') {
        m.text = env.text;
        m.edited = true;
        return 'edited';
      }
      m.deleted = true;
      m.text = '';
      m.reactions = new Map();
      return 'deleted';
    }
    const users = m.reactions.get(env.key) || [];
    const has = users.includes(sender);
    if (env.on === has) {
      return null;
    }
    const next = env.on ? [...users, sender] : users.filter(u => u !== sender);
    if (next.length) {
      m.reactions.set(env.key, next);
    } else {
      m.reactions.delete(env.key);
    }
    return 'reactions';
  }

  envelope(t, extra) {
    // 3.3: v, t, id, from, uid, ts, then the type's members.
    return JSON.stringify({v: 2, t, id: newId(), from: this.name, uid: this.userId, ts: Date.now(),
      ...extra});
  }

  /** Section 2: client-only pushes then publishes; moderated publishes on C-input. */
  async store(json) {
    if (this.moderated) {
      await this.publish(`${this.chat}-input`, json);
      return JSON.parse(json).id;
    }
    const r = await this.cache.listPushBack(this.cacheName, this.chat, json,
      {truncateFrontToSize: HISTORY_CAP});
    if (!(r instanceof sdk.CacheListPushBack.Success)) {
      throw new Error(`listPushBack: ${r.toString()}`);
    }
    await this.publish(this.chat, json);
    return JSON.parse(json).id;
  }

  async publish(topic, json) {
    const r = await this.topics.publish(this.cacheName, topic, json);
    if (!(r instanceof sdk.TopicPublish.Success)) {
      throw new Error(`publish ${topic}: ${r.toString()}`);
    }
  }

  send(text, replyTo) {
    return this.store(this.envelope('msg', replyTo ? {text, re: replyTo} : {text}));
  }

  edit(ref, text) {
    return this.store(this.envelope('edit', {ref, text}));
  }

  remove(ref) {
    return this.store(this.envelope('delete', {ref}));
  }

  react(ref, key, on) {
    return this.store(this.envelope('react', {ref, key, on}));
  }

  /** Section 5: a typing signal (ephemeral: published only). */
  typing(on) {
    const json = JSON.stringify({v: 2, t: 'typing', from: this.name, uid: this.userId,
      sid: this.sid, ts: Date.now(), on});
    return this.publish(this.moderated ? `${this.chat}-input` : this.chat, json);
  }

  presence(state) {
    const json = JSON.stringify({v: 2, t: 'presence', from: this.name, uid: this.userId,
      sid: this.sid, ts: Date.now(), state});
    return this.publish(this.moderated ? `${this.chat}-input` : this.chat, json);
  }

  leave() {
    this.sub?.unsubscribe();
  }
}

module.exports = {ProtocolChat, directChatId, parseValue, newId};
