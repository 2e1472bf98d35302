/*
 * dni-touch.js: the add-on dni.js loads once a page shows a swapped number. A tap on a tel:
 * link showing a number the session holds, or a copy of text showing one, goes to the service
 * (POST /v1/sessions/<id>/touch) as a beacon: evidence, for matching, of which visit dialled.
 *
 * It learns the session's numbers through dni('onNumber') (each entry carries its session_id)
 * and costs dni.js nothing beyond the loader. It listens on the document in the capture phase,
 * so a page that stops the click's propagation still reports it; it never cancels the event
 * and never waits for the beacon. No sendBeacon (old browsers): it does nothing at all.
 *
 * ES5 only, and every entry point is wrapped so nothing ever throws into the host page. The
 * build fails above 700 bytes gzipped.
 */
(function (w, d) {
  var held = []; // [international digits, national digits, entry], per leased number shown
  var site, base;

  function digits(s) {
    return (s || '').replace(/\D/g, '');
  }

  // The numbers the session holds, from each answer; a fallback (leased to nobody) and a number
  // the page shows unchanged are left out: nothing is sent for them.
  function learn(entries) {
    var i, e, n;
    held = [];
    for (i = 0; i < entries.length; i++) {
      e = entries[i];
      n = digits(e.number);
      if (e.session_id && !e.fallback && n && n != digits(e.target))
        held.push([n, digits(e.number_national) || n, e]);
    }
  }

  // Report the first held number whose digits the touched text holds (a link's href, the copied
  // text: its digits run together, in the page's own layout).
  function touch(ev) {
    try {
      var s = ev.type == 'copy' ? String(getSelection())
        : ev.target.closest('a[href^="tel:"]').getAttribute('href');
      var i, h;
      s = digits(s);
      for (i = 0; i < held.length; i++) {
        h = held[i];
        if (s.indexOf(h[0]) + 1 || s.indexOf(h[1]) + 1)
          return navigator.sendBeacon(base + '/v1/sessions/' + h[2].session_id + '/touch',
            JSON.stringify({ site: site, number: h[2].number, kind: ev.type }));
      }
    } catch (e) {} // a click outside any tel: link (closest finds none) ends here
  }

  try {
    if (navigator.sendBeacon) {
      // dni.js loads this file from its own base: this script's URL without the file name.
      base = d.currentScript.src.replace(/\/[^/]*$/, '');
      site = d.querySelector('script[data-site]').dataset.site;
      d.addEventListener('click', touch, true);
      d.addEventListener('copy', touch, true);
      w.dni('onNumber', learn);
    }
  } catch (e) {}
})(window, document);
