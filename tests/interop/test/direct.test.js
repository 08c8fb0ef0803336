'use strict';
// Direct chat ids (docs/PROTOCOL.md, section 7) computed here with node:crypto from the
// document alone, compared with our C library's mim_direct_chat_id (through
// `mim-peer dm-id`, built by tests/scripts/interop.sh). No server is needed.
const {execFile} = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const {test} = require('node:test');
const assert = require('node:assert/strict');

const REPO = path.resolve(__dirname, '..', '..', '..');
const PEER = process.env.MIM_PEER_BIN ||
  path.resolve(REPO, process.env.MIM_BUILD || 'build', 'interop', 'mim-peer');

/** The document's rule: the smaller id in byte order (a proper prefix first), 0x00, the other. */
function directChatId(a, b) {
  let x = Buffer.from(a, 'utf8');
  let y = Buffer.from(b, 'utf8');
  if (Buffer.compare(x, y) > 0) [x, y] = [y, x];
  const digest = crypto.createHash('sha256').update(Buffer.concat([x, Buffer.from([0]), y])).digest();
  return 'dm-' + digest.subarray(0, 16).toString('hex');
}

function cId(a, b) {
  return new Promise((resolve, reject) => {
    execFile(PEER, ['dm-id', a, b], {timeout: 15000}, (err, stdout, stderr) => {
      if (err) reject(new Error(`mim-peer dm-id ${a} ${b}: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout.trim());
    });
  });
}

const PAIRS = [
  ['alice', 'bob'],
  ['alice', 'alice'],
  ['ab', 'abc'], // a proper prefix is smaller
  ['b', 'aa'], // byte order, not length
  ['zé', '中文'],
  // UTF-16 order (JavaScript's `<` on strings) puts the emoji first; byte order does not.
  ['\u{ff61}', '\u{1f600}'],
  ['a'.repeat(128), 'b'],
];

test('the C library and node:crypto agree on direct chat ids', async () => {
  assert.ok(fs.existsSync(PEER), `${PEER} is missing: run tests/scripts/interop.sh (it builds it)`);
  assert.equal(directChatId('alice', 'bob'), 'dm-141a4cd242b67e82edf4a78bb418d40a');
  for (const [a, b] of PAIRS) {
    const want = directChatId(a, b);
    assert.match(want, /^dm-[0-9a-f]{32}$/);
    assert.equal(directChatId(b, a), want);
    assert.equal(await cId(a, b), want, `${a} / ${b}`);
    assert.equal(await cId(b, a), want, `${b} / ${a}`);
  }
  // The UTF-16 pitfall is real: ordering the strings themselves gives another id.
  const [p, q] = ['\u{ff61}', '\u{1f600}'].sort();
  const wrong = 'dm-' + crypto.createHash('sha256').update(`${p}\0${q}`, 'utf8').digest('hex').slice(0, 32);
  assert.notEqual(wrong, directChatId(p, q));
});
