// Unit tests of the snippet's pure helpers (matching and formatting), run with `node --test`.
// The source is loaded as is; its DEV hook (dropped from the build) hands the helpers over.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const SOURCE = fs.readFileSync(path.join(__dirname, '..', '..', 'src', 'dni.js'), 'utf8');

function load(document = {}) {
  let helpers;
  const window = { dniTest: (h) => { helpers = h; } };
  vm.runInNewContext(SOURCE, { window, document, location: {}, history: {} });
  return helpers;
}

const IN_AN_HOUR = new Date(Date.now() + 3600e3).toISOString();
const US = {
  target: '+18005550100', number: '+18005550123', expires_at: IN_AN_HOUR, fallback: false,
  target_national: '8005550100', number_national: '8005550123',
};
const UK = {
  target: '+442079460000', number: '+442079460123', expires_at: IN_AN_HOUR, fallback: false,
  target_national: '02079460000', number_national: '02079460123',
};

// Swap one string as the snippet swaps one text node.
function swap(h, text) {
  const node = { nodeValue: text };
  h.run([node]);
  return node.nodeValue;
}

function withNumbers(entries) {
  const h = load();
  h.use(entries);
  return h;
}

test('every US layout is swapped keeping its separators', () => {
  const h = withNumbers([US]);
  const cases = {
    '(800) 555-0100': '(800) 555-0123',
    '800-555-0100': '800-555-0123',
    '800.555.0100': '800.555.0123',
    '800 555 0100': '800 555 0123',
    '1-800-555-0100': '1-800-555-0123',
    '+1 800 555 0100': '+1 800 555 0123',
    '+1 (800) 555-0100': '+1 (800) 555-0123',
    '8005550100': '8005550123',
    '+18005550100': '+18005550123',
    '1.800.555.0100': '1.800.555.0123',
    '+1-800-555-0100': '+1-800-555-0123',
    '800/555-0100': '800/555-0123',
    '800\u2013555\u20130100': '800\u2013555\u20130123',
    '800\u00a0555\u00a00100': '800\u00a0555\u00a00123',
    'tel:+18005550100': 'tel:+18005550123',
    'tel:1-800-555-0100': 'tel:1-800-555-0123',
    'Call 800-555-0100 or (800) 555-0100!': 'Call 800-555-0123 or (800) 555-0123!',
    '800-555-0100/800-555-0100': '800-555-0123/800-555-0123',
  };
  for (const [input, want] of Object.entries(cases)) assert.equal(swap(h, input), want, input);
});

test('UK layouts, with and without the country code, are swapped', () => {
  const h = withNumbers([US, UK]);
  const cases = {
    '+44 20 7946 0000': '+44 20 7946 0123',
    '020 7946 0000': '020 7946 0123',
    '(020) 7946 0000': '(020) 7946 0123',
    '+442079460000': '+442079460123',
    '02079460000': '02079460123',
    'UK +44 20 7946 0000, US (800) 555-0100': 'UK +44 20 7946 0123, US (800) 555-0123',
  };
  for (const [input, want] of Object.entries(cases)) assert.equal(swap(h, input), want, input);
});

test('numbers that are not a target, and other digits, are left alone', () => {
  const h = withNumbers([US, UK]);
  for (const text of [
    '(800) 555-0199', '1-800-555-0101', '555-0100', '800 555 010', '2800-555-0100',
    'Order #180055501001', 'Order 28005550100', 'Invoice 80055501002', '8005550100123',
    'Total $8,005.55', '2025-01-00', '05/10/2025', '+44 20 7946 0001', '+1 800 555 01001',
    '800 - - - - 555 0100', 'ISBN 978-0-306-40615-7', '0800 555 0100', '',
  ]) assert.equal(swap(h, text), text, text);
});

test('a number split over several nodes keeps each node its own characters', () => {
  const h = withNumbers([US]);
  const nodes = ['Call ', '(800)', ' 555', '-0100', ' now'].map((nodeValue) => ({ nodeValue }));
  h.run(nodes);
  assert.deepEqual(nodes.map((n) => n.nodeValue), ['Call ', '(800)', ' 555', '-0123', ' now']);
});

test('a replacement of another length is written plainly', () => {
  const h = withNumbers([{ ...US, number: '+16505550101234', number_national: '6505550101234' }]);
  assert.equal(swap(h, 'Call (800) 555-0100.'), 'Call (6505550101234.');
  assert.equal(swap(h, '+1 800 555 0100'), '+16505550101234');
  // Split over nodes, each node is then swapped alone: only whole numbers change.
  const nodes = [{ nodeValue: '800-' }, { nodeValue: '555-0100' }, { nodeValue: ' or 800-555-0100' }];
  h.run(nodes);
  assert.deepEqual(nodes.map((n) => n.nodeValue), ['800-', '555-0100', ' or 6505550101234']);
});

test('expired leases and fallbacks equal to the target swap nothing', () => {
  const past = new Date(Date.now() - 1000).toISOString();
  const h = withNumbers([{ ...US, expires_at: past }, { ...UK, number: UK.target, number_national: UK.target_national, fallback: true, expires_at: null }]);
  assert.equal(swap(h, '800-555-0100 and 020 7946 0000'), '800-555-0100 and 020 7946 0000');
});

test('a fallback number (no expiry) is swapped in', () => {
  const h = withNumbers([{ ...US, number: '+18005550999', number_national: '8005550999', expires_at: null, fallback: true, reason: 'pool_exhausted' }]);
  assert.equal(swap(h, '(800) 555-0100'), '(800) 555-0999');
});

test('use() reports the map it built, so the same answer twice is no change', () => {
  const h = load();
  assert.equal(h.use([US]), h.use([{ ...US }]));
  assert.notEqual(h.use([US]), h.use([{ ...US, number: '+18005550124', number_national: '8005550124' }]));
  assert.equal(h.use([]), '{}');
});

test('campaign parameters are read in a stable order, others ignored', () => {
  const h = load();
  assert.equal(h.camp('?utm_source=a&x=1&gclid=b'), h.camp('?gclid=b&utm_source=a'));
  assert.equal(h.camp('?utm_source=a&utm_medium=cpc'), '&utm_medium=cpc&utm_source=a');
  assert.notEqual(h.camp('?utm_source=a'), h.camp('?utm_source=b'));
  assert.notEqual(h.camp('?msclkid=1'), h.camp('?fbclid=1'));
  assert.equal(h.camp('?page=2&q=plumber'), '');
  assert.equal(h.camp(''), '');
  assert.equal(h.camp('?xgclid=1&notutm_source=2'), '');
});

test('the ad ids are the raw cookies, read only with consent', () => {
  const cookie = 'a=b; _ga=GA1.1.123.456; _ga_ABC123=GS2.1.s1700000000$o1$g1$t1700000100$j60$l0$h0; '
    + '_fbp=fb.1.1700000000000.987654321; x_ga=GA1.1.1.2';
  const h = load({ cookie });
  h.state({}, true);
  assert.deepEqual(JSON.parse(JSON.stringify(h.ids())), {
    ga_client_id: 'GA1.1.123.456', ga_session_id: 'GS2.1.s1700000000$o1$g1$t1700000100$j60$l0$h0',
    fbp: 'fb.1.1700000000000.987654321', consent: true,
  });
  h.state({}, false); // consent required and not given: no cookie is read
  assert.equal(JSON.stringify(h.ids()), '{"consent":false}');
  const unasked = function () {}; // a site that does not ask: the service hears no answer
  h.state({}, unasked);
  assert.equal(JSON.parse(JSON.stringify(h.ids())).consent, undefined);
});

test('a missing cookie is left out, never made up', () => {
  const h = load({ cookie: '_ga_ABC123=GS1.1.1700000000.1.0.1700000000.0.0.0; x_fbp=fb.1.2.3; _gax=1' });
  h.state({}, true);
  assert.equal(JSON.stringify(h.ids()),
    '{"ga_session_id":"GS1.1.1700000000.1.0.1700000000.0.0.0","consent":true}');
  assert.equal(JSON.stringify(load({ cookie: '' }).ids()), '{}');
});

test('expires_in, when the service sends it, counts from the answer, not the local clock', () => {
  const h = load();
  const answeredAt = Date.now() - 60e3;
  h.state({ t: answeredAt });
  // A visitor clock an hour fast makes expires_at look past; expires_in still holds.
  const skewed = { ...US, expires_at: new Date(Date.now() - 3600e3).toISOString() };
  h.use([{ ...skewed, expires_in: 300 }]);
  assert.equal(swap(h, '800-555-0100'), '800-555-0123');
  h.use([{ ...US, expires_in: 30 }]); // answered a minute ago, lapsed 30 s ago
  assert.equal(swap(h, '800-555-0100'), '800-555-0100');
  h.use([skewed]);
  assert.equal(swap(h, '800-555-0100'), '800-555-0100');
});
