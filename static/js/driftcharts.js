// Drift charts: each check's statistic over its threshold, with the firing line at 1.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("drift-charts").textContent);
  data.forEach(function (chart) {
    const el = document.getElementById(chart.id);
    if (!el || !window.uPlot) return;
    const ones = chart.t.map(function () { return 1; });
    const opts = {
      width: el.clientWidth || 480, height: 180,
      series: [{}, {label: "statistic / threshold", stroke: "#0172ad", width: 2, points: {show: true}},
               {label: "fires", stroke: "#c62828", dash: [6, 4], width: 1, points: {show: false}}],
      axes: [{}, {size: 50}],
      scales: {y: {range: function (u, min, max) { return [0, Math.max(1.5, max * 1.1)]; }}},
    };
    new uPlot(opts, [chart.t, chart.v, ones], el);
    el.dataset.drawn = "1";
  });
})();
