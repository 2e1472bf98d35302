// The block list's CSV import on the dashboard's fraud page (dashboard/fraud.html).
//
// Without this script the form posts the whole file and the page shows the per-row report.
// With it, the file is read here and sent in chunks of rows (each with the header row), so
// the progress bar moves as each chunk is stored and the report grows row by row. Values
// are shown with textContent: a row's text never becomes HTML.
(function () {
  'use strict';
  var CHUNK_ROWS = 200;
  var form = document.getElementById('block-import');
  if (!form || !window.fetch || !window.FormData || !window.File) {
    return;
  }
  var progress = document.getElementById('import-progress');
  var status = document.getElementById('import-status');
  var report = document.getElementById('import-report');
  var summary = document.getElementById('import-summary');
  var body = document.querySelector('#import-rows tbody');

  // Records of a CSV text, a quoted field's line breaks kept inside its record.
  function records(text) {
    var out = [];
    var start = 0;
    var quoted = false;
    for (var i = 0; i < text.length; i++) {
      var c = text.charAt(i);
      if (c === '"') {
        quoted = !quoted;
      } else if (c === '\n' && !quoted) {
        out.push(text.slice(start, i).replace(/\r$/, ''));
        start = i + 1;
      }
    }
    if (start < text.length) {
      out.push(text.slice(start).replace(/\r$/, ''));
    }
    return out.filter(function (line) { return line.trim() !== ''; });
  }

  function addRow(r) {
    var tr = document.createElement('tr');
    tr.className = 'row-' + r.status;
    var cells = [String(r.row), r.value || '', r.status + (r.error ? ': ' + r.error : '')];
    cells.forEach(function (text, n) {
      var td = document.createElement('td');
      if (n === 0) { td.className = 'num'; }
      if (n === 1) {
        var code = document.createElement('code');
        code.textContent = text;
        td.appendChild(code);
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }

  function send(header, chunk, firstRow) {
    var data = new FormData();
    data.append('csrf_token', form.elements.csrf_token.value);
    data.append('csv', [header].concat(chunk).join('\n') + '\n');
    data.append('first_row', String(firstRow));
    return fetch(form.action, {
      method: 'POST', body: data, credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        if (!response.ok) {
          var message = (answer.error && answer.error.message) || ('HTTP ' + response.status);
          throw new Error(message);
        }
        return answer;
      });
    });
  }

  form.addEventListener('submit', function (event) {
    var file = form.elements.file.files[0];
    if (!file) {
      return;
    }
    event.preventDefault();
    var button = form.querySelector('button[type=submit]');
    button.disabled = true;
    body.textContent = '';
    summary.textContent = '';
    report.hidden = false;
    file.text().then(function (text) {
      var lines = records(text.replace(/^\uFEFF/, ''));
      var header = lines.shift() || '';
      var total = lines.length;
      var done = 0;
      var totals = { rows: 0, added: 0, errors: 0 };
      progress.hidden = false;
      progress.max = Math.max(total, 1);
      progress.value = 0;
      status.textContent = '0 of ' + total + ' rows';
      function next() {
        if (done >= total) {
          return Promise.resolve();
        }
        var chunk = lines.slice(done, done + CHUNK_ROWS);
        return send(header, chunk, done + 2).then(function (answer) {
          answer.report.forEach(addRow);
          totals.rows += answer.rows;
          totals.added += answer.added;
          totals.errors += answer.errors;
          done += chunk.length;
          progress.value = done;
          status.textContent = done + ' of ' + total + ' rows';
          return next();
        });
      }
      return next().then(function () {
        progress.value = progress.max;
        summary.textContent = totals.rows + ' rows: ' + totals.added + ' added, ' +
          totals.errors + ' errors, ' + (totals.rows - totals.added - totals.errors) +
          ' already listed. Reload the page to see the list.';
      });
    }).catch(function (error) {
      status.textContent = 'Import stopped: ' + error.message;
    }).then(function () {
      button.disabled = false;
    });
  });
}());
