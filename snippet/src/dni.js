/*
 * dni.js: lease a tracking number for this visit and show it wherever the page shows its own.
 *
 * Embed: <script async src="https://HOST/dni.js" data-site="KEY"></script>
 * Optional attributes: data-api (service origin, default: this script's origin),
 * data-consent="required" (no storage and no cookie read until dni('consent', true); the
 * number is for this page). It sends the ad platforms' cookies (_ga, _ga_<id>, _fbp) and the
 * visitor's ad consent with the session, and again only when they change.
 *
 * ES5 only (var, no arrows, no template literals): it runs on sites and browsers we do not
 * control. Every entry point is wrapped so nothing ever throws into the host page. Size matters
 * (it loads on every page view of every customer): the build fails above 2,500 bytes gzipped.
 * What was measured to pack smaller stays: a string used often sits in a local variable, one
 * used twice does not; fewer names in the outer scope (each one past 54 costs two letters at
 * every use); the functions' order (hoisted, so free) is the one that gzips best.
 */
(function (w, d) {
  var old = w.dni;
  // Loaded twice (two tags, or a tag plus a tag manager): the first copy keeps the page.
  if (old && old.l) return;

  var NV = 'nodeValue';
  // Between two digits of a phone number a page may put up to three of: space, dot, slash,
  // brackets, hyphen or a Unicode dash. Anything else ends the number.
  var SEP = '[-\\s./()\\u2010-\\u2015]{0,3}';
  // Text in these elements joins its neighbours into one string, so "<span>(800)</span> 555-0100"
  // still reads as one number; any other element (a block, a <br>) is a boundary.
  var INLINE = /^(#text|A|B|I|U|EM|FONT|SMALL|SPAN|STRONG|LABEL)$/;
  // Scripts (JSON-LD too: structured data keeps the business's own number), styles, and what
  // the visitor types.
  var SKIP = /^(SCRIPT|STYLE|TEXTAREA)$/;

  var map; // page digits -> replacement digits, for each target leased to another number
  var RE; // matches any key of map with its separators; falsy when there is nothing to swap
  var soon; // when the first valid lease lapses (ms)
  var active; // the map on the page now, as JSON
  var entries = []; // numbers from the service, or from storage while their lease is valid
  var cbs = [];
  // The visit: the service's last answer (session_id, visitor_id, numbers...), plus c, its
  // campaign parameters, and t, when it arrived.
  var state = {};
  // consent: the visitor's answer, true or false; guard (truthy) when the site does not ask.
  // pend: the ad ids (as JSON) the request in flight carries.
  var consent, pend, off, ready, started, inflight, leasing, pv, hiddenAt, timer, expT, mo, lastUrl;
  var site, base, store;

  // Unit-test hook, dropped from the build (esbuild dropLabels); see tests/js/.
  DEV: if (w.dniTest) {
    return w.dniTest({ use: use, run: run, camp: camp, ids: ids, state: function (s, c) {
      state = s;
      consent = c;
    } });
  }

  function guard(f) {
    return function (a) {
      try {
        f(a);
      } catch (e) {}
    };
  }

  function digits(s) {
    return (s || '').replace(/\D/g, '');
  }

  var mark = guard(function (n) {
    performance.mark('dni:' + n);
  });

  // Build the matcher for the entries whose lease is still valid; return the map as JSON.
  function use(list) {
    var keys = [];
    var i, e, T, N, tn, nn, x;
    map = {};
    soon = 9e15;
    for (i = 0; i < list.length; i++) {
      e = list[i];
      T = digits(e.target);
      N = digits(e.number);
      tn = digits(e.target_national) || T;
      nn = digits(e.number_national) || N;
      // expires_in (seconds after the answer) is immune to a visitor's clock being wrong;
      // without it, expires_at (the service sends milliseconds, which Date.parse reads).
      x = e.expires_in != null ? state.t + e.expires_in * 1e3 : Date.parse(e.expires_at);
      if (!(x <= Date.now())) {
        if (x < soon) soon = x;
        if (T && N && T != N) {
          map[T] = N; // +1 800 555 0100, 1-800-555-0100, +44 20 7946 0000
          map[tn] = nn; // (800) 555-0100, 020 7946 0000
        }
      }
    }
    for (i in map) keys.push(i.split('').join(SEP));
    // No lookbehind (ES2018): the character before the number is captured and written back.
    RE = keys[0] && new RegExp('(^|\\D)(\\+?(?:' + keys.join('|') + '))(?!\\d)', 'g');
    return JSON.stringify(map);
  }

  // Swap numbers in a run of nodes read as one string. A swap that keeps the length (the usual
  // case) leaves each node its own characters, so markup around the digits survives; otherwise
  // each node is swapped alone.
  function run(nodes) {
    var t = '';
    var s = 0;
    var i, u, n;
    for (i = 0; i < nodes.length; i++) t += nodes[i][NV];
    if (RE && /\d/.test(t)) {
      // Put the new digits into the page's own layout: "(800) 555-0100" becomes
      // "(800) 555-0123". A replacement with another digit count is written plainly.
      u = t.replace(RE, function (m, p, x) {
        var r = map[digits(x)];
        var j = 0;
        return (
          p +
          (digits(x).length == r.length
            ? x.replace(/\d/g, function () {
                return r[j++];
              })
            : x.replace(/\d[^]*/, r))
        );
      });
      for (i = 0; i < nodes.length; i++) {
        n = nodes[i];
        if (!nodes[1]) set(n, u);
        else if (u.length == t.length) set(n, u.slice(s, (s += n[NV].length)));
        else run([n]);
      }
    }
  }

  function set(n, v) {
    var c = n[NV];
    if (c != v) {
      // First change, or the page rewrote the node since ours: remember the page's value.
      if (n.dV !== c) n.dO = c;
      n[NV] = n.dV = v;
    }
  }

  // The nearest ancestor that is not inline: text under one block reads as one string.
  function block(n) {
    while (n && INLINE.test(n.nodeName)) n = n.parentNode;
    return n;
  }

  // Put back the page's own value wherever a node still shows ours (never undo a later change by
  // the page). Walking the document again, rather than keeping a list of changed nodes, holds
  // nothing alive after a single-page app throws a route's nodes away.
  function restore() {
    walk(d, function (n) {
      if (n && n[NV] === n.dV) n[NV] = n.dO;
    });
  }

  function scan(root) {
    var group = [];
    var cur;
    if (RE && !off && root)
      walk(root, function (n, b) {
        if (b != cur) {
          run(group);
          group = [];
          cur = b;
        }
        group.push(n);
      });
  }

  // Call f(node, group) for each text node outside scripts and editors and for the href of each
  // tel: link, then f() once at the end.
  function walk(root, f) {
    var tw = d.createTreeWalker(root, 4);
    var n, p, i;
    while ((n = tw.nextNode())) {
      p = n.parentNode;
      if (!SKIP.test(p.nodeName) && !p.isContentEditable) f(n, block(p));
    }
    n = root.querySelectorAll('a[href^="tel:"]');
    for (i = 0; i < n.length; i++) f(n[i].getAttributeNode('href'), n[i]);
    f();
    // Our own writes are not news: drop their records so they do not cause another scan.
    if (mo) mo.takeRecords();
  }

  // Show the numbers whose lease is valid; put the page's own back where a lease lapsed.
  function apply(notify) {
    var k = use(entries);
    var i;
    clearTimeout(expT);
    if (k != active) {
      // Nothing was swapped before the first answer: no need to walk the page to undo it.
      if (active) restore();
      active = k;
      scan(d.body);
      // Every browser still in use that has dataset (the tag needs it) has MutationObserver.
      if (RE && !mo) {
        mo = new MutationObserver(
          guard(function (recs) {
            // Many changes at once (a page still loading, a big re-render): one pass over the
            // document costs less than many overlapping ones.
            if (recs.length > 40) recs = [{ target: d }];
            // Read each changed block again: new inline content may join the text around it.
            for (var j = 0; j < recs.length; j++) scan(block(recs[j].target));
          })
        );
        mo.observe(d,
          { childList: true, subtree: true, characterData: true, attributeFilter: ['href'] });
        // The first swap: load the add-on that reports taps on and copies of the numbers
        // (dni-touch.js, from the service, as the API). A src set after insertion still loads.
        d.head.appendChild(d.createElement('script')).src = base + '/dni-touch.js';
      }
    }
    // Capped: a delay past 2^31 ms fires at once, which would spin.
    expT = setTimeout(guard(apply), Math.min(soon - Date.now() + 50, 2e9));
    mark('swapped');
    if (notify) {
      ready = 1;
      for (i = 0; i < cbs.length; i++) guard(cbs[i])(entries);
    }
  }

  // Store the visit once the service has answered for it (state.t): consent given before the
  // stored visit is read must not overwrite it with an empty one.
  function save() {
    try {
      if (consent && state.t) localStorage.setItem(store, JSON.stringify(state));
    } catch (e) {}
  }

  // Start the visit (page load), or record a page view (SPA route change). No lease while the
  // page is prerendered: the visitor may never see it.
  function visit() {
    // The page's URL without its fragment: never sent (OAuth redirects put tokens there), and
    // a change of fragment alone is no page view.
    var p = location.href.split('#')[0];
    var c = camp(location.search);
    var first = !started;
    if (!d.prerendering && d.visibilityState != 'prerender' && p != lastUrl) {
      if (first) {
        started = 1;
        try {
          if (consent) state = JSON.parse(localStorage.getItem(store)) || state;
        } catch (e) {}
      }
      lastUrl = p;
      pv = 1;
      // Another campaign, or 30 minutes without an answer: a new session for the same visitor.
      if ((c && c != state.c) || Date.now() - state.t > 18e5) {
        state = { visitor_id: state.visitor_id, c: c };
      }
      // A resumed visit shows its number at once while the lease is valid; the lease request
      // then carries its session id.
      if (first && state.session_id) {
        entries = state.numbers || [];
        apply(1);
      }
      beat(first);
    }
  }

  // The campaign parameters of a query string, in a stable order.
  function camp(q) {
    var found = ('&' + q.slice(1)).match(/&(utm_\w+|gclid|[gw]braid|msclkid|fbclid)=[^&]*/gi);
    return (found || []).sort().join('');
  }

  // A cookie's value, as the page's own tags set it (never made up); undefined without one or
  // without consent, and JSON.stringify then drops the key.
  function ck(name) {
    return ((consent && ('; ' + d.cookie).match('; ' + name + '=([^;]+)')) || [])[1];
  }

  // The ad platforms' ids, raw (the service parses them): GA's client id (_ga), the session id
  // of the first GA4 property (_ga_<id>), Meta's browser id (_fbp); and the ad consent.
  function ids() {
    return { ga_client_id: ck('_ga'), ga_session_id: ck('_ga_\\w+'), fbp: ck('_fbp'), consent: consent };
  }

  function post(p, body) {
    var done, c;
    // A slow service must not hold the page's numbers hostage. The timer is left to run after
    // an answer: done makes its call a no-op.
    setTimeout(fin, 1500);
    function fin(r) {
      if (!done) {
        done = 1;
        inflight = 0;
        // No request made (c unset): nothing to abort. abort() never throws, and does
        // nothing once a request has ended.
        if (c) c.abort();
        guard(got)(r);
      }
    }
    inflight = 1;
    p = base + '/v1/sessions' + p;
    body = JSON.stringify(body);
    try {
      if (w.fetch && w.AbortController) {
        c = new AbortController();
        // A string body goes as text/plain: a CORS-simple request, no preflight. keepalive lets
        // the renewal sent as the tab hides arrive even if the page is closing.
        fetch(p, { method: 'POST', body: body, keepalive: true, signal: c.signal })
          .then(function (r) {
            return r.ok ? r.json() : r; // its status, and no session_id
          })
          .then(fin, fin);
      } else {
        c = new XMLHttpRequest();
        c.open('POST', p);
        // No load event (a network error), or an unreadable answer: it ends at the timeout.
        c.onload = guard(function () {
          fin(c.status < 300 ? JSON.parse(c.responseText) : c);
        });
        c.send(body);
      }
    } catch (e) {
      fin();
    }
  }

  function got(r) {
    var n = (r && r.numbers) || [];
    // The numbers' reasons (words of the service's own, never in a number or a target).
    var why = JSON.stringify(n);
    // A renewal that found a lease lapsed (the tab slept too long): lease again for this
    // session. Never after a lease, which would loop.
    var again = !leasing && /"expired"/.test(why);
    // Redis had a bad moment: a visit with a session keeps what it shows (a lease lapses on
    // its own timer, expT) and asks again later, as after a timeout.
    if (state.session_id && /"unavailable"/.test(why)) r = 0;
    if (r && r.session_id) {
      mark('response');
      r.c = state.c;
      r.t = Date.now();
      // A renewal's answer may leave the visitor id out.
      r.visitor_id = r.visitor_id || state.visitor_id;
      entries = n;
      // What the service now knows of the ad ids. Another session (a new one): what this
      // request sent. The same one: what it knew, plus what this request sent if it was a
      // live lease's renewal; resuming a session or finding a lease lapsed records no ad ids,
      // so they go again with the next renewal.
      r.k = r.session_id != state.session_id ? pend : !(leasing || again) && pend || state.k;
      state = r;
      apply(1);
      save(); // after the swap: a synchronous storage write need not delay it
      // renew_in 0: nothing is leased, nothing to renew.
      sched(r.renew_in);
      if (pv || again) beat(again);
    } else if (state.session_id) {
      // A 4xx: the service no longer knows this session, so lease a new one. A timeout, a network
      // error, a 5xx or Redis unavailable: try again in 5 s (the service's retry hint), then 10,
      // 15... while it lasts (state.b; the next answer replaces state, and so starts over). A 4xx
      // to a fresh lease lands in neither branch: no retry.
      if (r && r.status < 500) {
        state = { visitor_id: state.visitor_id, c: state.c };
        beat();
      } else sched((state.b = ~~state.b + 5));
    }
  }

  function api(cmd, a) {
    try {
      if (cmd == 'consent') {
        consent = !!a;
        // Tell the service now, not at the next renewal: the visitor may call at once.
        if (state.session_id) beat();
        if (a) save();
        else localStorage.removeItem(store);
      }
      if (cmd == 'restore') {
        off = 1;
        restore();
      }
      if (cmd == 'rescan') {
        off = 0;
        scan(d.body);
      }
      if (cmd == 'callback') {
        api.c = a;
        d.head.appendChild(d.createElement('script')).src = base + '/dni-callback.js';
      }
      if (cmd == 'onNumber') {
        cbs.push(a);
        if (ready) guard(a)(entries);
      }
    } catch (e) {}
  }

  // Ask again in sec seconds (none: stop), never sooner than 5 s: no tight loop, whatever an
  // answer says.
  function sched(sec) {
    clearTimeout(timer);
    if (sec) {
      timer = setTimeout(
        guard(function () {
          // Hidden for ten minutes: the visitor has gone. Stop until the tab is shown again.
          if (!hiddenAt || Date.now() - hiddenAt < 6e5) beat();
        }),
        Math.max(sec, 5) * 1e3
      );
    }
  }

  // Lease a number (L, or no session yet; a stored session id asks the service to resume it),
  // else renew the lease, with the page's URL when the route changed (a page view).
  function beat(L) {
    var b, k;
    if (!inflight) {
      b = ids();
      k = JSON.stringify(b);
      // The ad ids only when the service does not know them yet: a new session, consent given
      // or withdrawn, a cookie the page's tags set since.
      if (!(pend = k != state.k && k)) b = {};
      b.site = site;
      leasing = L || !state.session_id;
      if (leasing || pv) b.url = lastUrl;
      if (leasing) {
        b.referrer = d.referrer;
        b.visitor_id = state.visitor_id;
        b.session_id = state.session_id;
      }
      // Session ids are the service's own, URL-safe by construction; one tampered with in
      // storage only earns a 4xx from the service, and so a new session.
      post(leasing ? '' : '/' + state.session_id + '/heartbeat', b);
      pv = 0;
    }
  }

  try {
    var tag = d.currentScript || d.querySelector('script[data-site]');
    var data = tag.dataset;
    var on = function (t, ev, f) {
      t.addEventListener(ev, guard(f));
    };
    var hook = function (m) {
      var f = history[m];
      history[m] = function () {
        var r = f.apply(this, arguments);
        guard(visit)();
        return r;
      };
    };
    site = data.site;
    base = (data.api || tag.src.match(/^\w+:\/\/[^/]+/)[0]).replace(/\/+$/, '');
    store = 'dni:' + site;
    // A site that does not ask: storage and cookies are allowed (truthy), and the service hears
    // no answer (null): JSON.stringify leaves a function out.
    consent = data.consent != 'required' && guard;

    (w.dni = api).l = 1;
    // Replay what the page queued through the stub before this script arrived.
    ((old && old.q) || []).forEach(function (a) {
      api.apply(w, a);
    });

    if (site) {
      on(d, 'visibilitychange', function () {
        visit();
        if (started) {
          hiddenAt = d.visibilityState == 'hidden' && Date.now();
          // Shown again: drop a lapsed lease, then renew at once. Hidden: renew once, as the
          // visitor may be switching to the dialer.
          if (!hiddenAt) {
            apply();
            beat();
          } else if (state.session_id) beat();
        }
      });
      on(d, 'prerenderingchange', visit);
      // Restored from the back/forward cache: the lease may have lapsed while the page slept.
      // A request still marked in flight (the renewal sent as the page was hidden, its answer
      // held back while the page was frozen) must not block this renewal.
      on(w, 'pageshow', function (e) {
        if (e.persisted && started) {
          inflight = 0;
          apply();
          beat();
        }
      });
      on(w, 'popstate', visit);
      hook('pushState');
      hook('replaceState');
      visit();
    }
  } catch (e) {}
})(window, document);
