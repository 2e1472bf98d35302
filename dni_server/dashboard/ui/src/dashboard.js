// The dashboard's only script: draws charts from JSON data islands and nothing else.
//
// Each chart is a <canvas data-chart="ID"> next to <script type="application/json" id="ID">.
// Data is read with JSON.parse(textContent) and handed to Chart.js, which paints it on the
// canvas: values never become HTML, so a campaign named <script> stays a label.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, Filler, Legend, LinearScale,
  LineController, LineElement, PointElement, Tooltip);

const COLOURS = ['#2f6fdb', '#1f9d6b', '#d9822b', '#8e44ad', '#c0392b', '#16a2b8'];

function config(spec) {
  // One line is filled below; several lines stay unfilled so none hides another.
  const filled = spec.type === 'line' && spec.series.length === 1;
  const datasets = spec.series.map((series, n) => ({
    label: series.label,
    data: series.data,
    backgroundColor: filled ? COLOURS[n % COLOURS.length] + '33' : COLOURS[n % COLOURS.length],
    borderColor: COLOURS[n % COLOURS.length],
    borderWidth: spec.type === 'line' ? 2 : 0,
    fill: filled,
    pointRadius: spec.type === 'line' ? 2 : undefined,
    tension: 0.2,
  }));
  return {
    type: spec.type === 'line' ? 'line' : 'bar',
    data: { labels: spec.labels, datasets },
    options: {
      animation: false, // screenshots and tests see the finished chart at once
      maintainAspectRatio: false,
      responsive: true,
      scales: {
        // Counts get whole-number ticks; money, rates and averages keep their decimals.
        y: { beginAtZero: true, ticks: { precision: spec.decimals ? undefined : 0 },
          suggestedMax: spec.max || undefined },
      },
      plugins: { legend: { position: 'bottom' } },
    },
  };
}

function drawCharts() {
  const charts = {};
  document.querySelectorAll('canvas[data-chart]').forEach((canvas) => {
    const source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    const spec = JSON.parse(source.textContent);
    charts[canvas.dataset.chart] = new Chart(canvas, config(spec));
    canvas.dataset.ready = 'true';
  });
  return charts;
}

// Filter forms apply as soon as a select changes (the submit button stays for keyboards).
function autoSubmit() {
  document.querySelectorAll('form[data-autosubmit] select').forEach((select) => {
    select.addEventListener('change', () => select.form.requestSubmit());
  });
}

function start() {
  // Exposed for the browser tests, which read each chart's labels and datasets.
  window.dniDashboard = { charts: drawCharts() };
  autoSubmit();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start);
} else {
  start();
}
