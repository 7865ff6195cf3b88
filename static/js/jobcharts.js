// Charts on a job's page, drawn with the vendored uPlot from the JSON the page embeds (id "job-chart"):
// the duration of each run as points coloured by outcome, then one line per number the job's results carry.
(function () {
  "use strict";
  const source = document.getElementById("job-chart");
  if (!source || typeof uPlot === "undefined") return;
  const data = JSON.parse(source.textContent);
  const colours = { success: "#2e7d32", failed: "#c62828", skipped: "#b26a00", missed: "#6b7280" };

  const formatBytes = window.lcpFormat.bytes;

  function formatSeconds(v) {
    if (v === null || v === undefined) return "";
    if (v < 1e-3) return Math.round(v * 1e6) + " µs";
    if (v < 1) return +(v * 1e3).toFixed(1) + " ms";
    return +v.toFixed(2) + " s";
  }

  function formatter(unit) {
    if (unit === "bytes") return (u, values) => values.map(formatBytes);
    if (unit === "s") return (u, values) => values.map(formatSeconds);
    return (u, values) => values.map((v) => (v === null ? "" : String(v)));
  }

  function options(element, title, series, unit) {
    return {
      title: title,
      width: Math.max(element.clientWidth, 320),
      height: 220,
      series: [{}].concat(series),
      axes: [{}, { values: formatter(unit), size: 80 }],
    };
  }

  function durationChart(element) {
    const series = [];
    const columns = [data.t];
    for (const [outcome, label] of data.outcomes) {
      const values = data.duration.map((d, i) => (data.outcome[i] === outcome ? d : null));
      if (values.every((v) => v === null)) continue;
      series.push({ label: label, stroke: colours[outcome], paths: () => null, points: { show: true, size: 6, fill: colours[outcome] } });
      columns.push(values);
    }
    new uPlot(options(element, "Duration of each run", series, "s"), columns, element);
  }

  function seriesChart(element, index) {
    const item = data.series[index];
    const line = { label: item.label, stroke: "#1565c0", spanGaps: true, points: { show: true, size: 4 } };
    new uPlot(options(element, item.label, [line], item.unit), [data.t, item.values], element);
  }

  for (const element of document.querySelectorAll("figure.chart")) {
    if (element.dataset.chart === "duration") durationChart(element);
    else seriesChart(element, Number(element.dataset.index));
  }
})();
