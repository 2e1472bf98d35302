/*
 * dni-callback.js: web callbacks on the page. dni.js loads it on the first
 * dni('callback', {phone, name?, at?, consent?, done?}); a page with only a form calls
 * dni('callback') once (or includes this file's tag) to have it wired.
 *
 * A request goes to the service (POST /v1/callbacks, JSON as text/plain: no CORS preflight)
 * with the session dni.js holds, the page's URL and the consent text shown. Its outcome comes
 * back through done(error, answer), node style: answer is {id, status, at, deferred, reason},
 * error {status, code, message}. A form marked data-dni-callback (a phone field named "phone",
 * optional "name" and "at", the consent text in an element marked data-dni-consent or in the
 * attribute's own value) is sent the same way on submit; the outcome is set on the form as
 * data-dni-state ("sending", "scheduled" or "error") and dispatched as a "dni:callback" event
 * whose detail is {error, answer}.
 *
 * ES5 only; nothing ever throws into the host page. The build fails above 900 bytes gzipped.
 */
(function (w, d) {
  var api = w.dni, waiting = [], sid, site, base;

  function send(o) {
    o = o || {};
    var done = o.done || function () {};
    if (!sid) return waiting.push(o); // no session yet: sent once dni.js has one
    var x = new XMLHttpRequest();
    x.open('POST', base + '/v1/callbacks');
    x.setRequestHeader('Content-Type', 'text/plain');
    x.onloadend = function () {
      var r = {};
      try {
        r = JSON.parse(x.responseText);
      } catch (e) {}
      if (x.status == 202) done(null, r);
      else done({ status: x.status, code: (r.error || {}).code || 'network',
        message: (r.error || {}).message || '' });
    };
    x.send(JSON.stringify({ site: site, session_id: sid, phone: o.phone, name: o.name, at: o.at,
      consent: o.consent || '', url: location.href }));
  }

  function form(f) {
    f.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var el = f.elements, c = f.querySelector('[data-dni-consent]');
      function value(n) {
        return el[n] && el[n].value || undefined;
      }
      f.setAttribute('data-dni-state', 'sending');
      send({ phone: value('phone'), name: value('name'), at: value('at'),
        consent: c ? c.textContent : f.getAttribute('data-dni-callback'),
        done: function (error, answer) {
          f.setAttribute('data-dni-state', error ? 'error' : 'scheduled');
          var e = d.createEvent('CustomEvent');
          e.initCustomEvent('dni:callback', true, false, { error: error, answer: answer });
          f.dispatchEvent(e);
        } });
    });
  }

  // What dni() was asked before this file ran: one request, or (dni.js keeping them all)
  // a pair [earlier, latest] nested oldest innermost; each is sent, in order.
  function replay(c) {
    if (c && c.pop) {
      replay(c[0]);
      c = c[1];
    }
    if (c) send(c);
  }

  function forms() {
    var all = d.querySelectorAll('form[data-dni-callback]');
    for (var i = 0; i < all.length; i++) form(all[i]);
  }

  try {
    if (!api || api.cb) return; // loaded twice: the first copy serves every request
    base = d.currentScript.src.replace(/\/[^/]*$/, '');
    site = d.querySelector('script[data-site]').dataset.site;
    w.dni = function (cmd, o) {
      if (cmd == 'callback') return o && send(o);
      return api.apply(this, arguments);
    };
    w.dni.l = w.dni.cb = 1;
    api('onNumber', function (entries) {
      for (var i = 0; i < entries.length; i++) sid = sid || entries[i].session_id;
      while (sid && waiting.length) send(waiting.shift());
    });
    if (d.readyState == 'loading') d.addEventListener('DOMContentLoaded', forms);
    else forms();
    replay(api.c);
  } catch (e) {}
})(window, document);
