// The live page: samples from /ws/metrics/ drawn with the vendored uPlot, one chart per kind of series. Charts, legends,
// units and which series go where come from the table of series (#live-series, controlplane/monitoring/series.py).
// Reconnects by itself (1 s, 2 s, 4 s... at most 10 s); "Last hour" draws one-minute rollups from the history API.
// Test hooks: #live-state[data-state] (connecting, live, reconnecting, history), #live-samples (samples received),
// #live-charts figure[data-chart] with data-points (points drawn) and data-series (lines drawn).
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("live-config").textContent);
  const stateEl = document.getElementById("live-state");
  const samplesEl = document.getElementById("live-samples");
  const droppedEl = document.getElementById("live-dropped");
  const grid = document.getElementById("live-charts");
  const empty = document.getElementById("live-empty");
  const WINDOW = config.window_s;

  // The table of series (controlplane/monitoring/series.py): the charts in order, and for each series its pattern as a
  // regular expression, its id parts, its chart, its legend ("{worker} RSS", "GPU {gpu}") and its scale on the chart.
  const TABLE = JSON.parse(document.getElementById("live-series").textContent);
  const worker = (id) => config.workers[id] || "worker " + id;
  function legend(entry, m) {
    const parts = {};
    entry.parts.forEach((part, i) => { parts[part] = m[i + 1]; });
    return entry.legend.replace(/\{(\w+)\}/g, (_, part) => (part === "worker" ? worker(parts.deployment) : parts[part]));
  }
  const CHARTS = TABLE.charts.map((chart) => ({
    id: chart.id,
    title: chart.title,
    unit: chart.unit,
    series: TABLE.series.filter((s) => s.chart === chart.id).map((s) => Object.assign({ re: new RegExp(s.regex) }, s)),
  }));
  const COLOURS = ["#1565c0", "#c62828", "#2e7d32", "#b26a00", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#558b2f", "#283593"];

  const formatBytes = window.lcpFormat.bytes;
  function formatDuration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " days";
  }
  function axisValues(unit) {
    if (unit === "bytes") return (u, values) => values.map(formatBytes);
    const suffix = window.lcpFormat.suffix(unit);
    const digits = unit === "percent" ? 1 : 2;
    return (u, values) => values.map((v) => (v === null ? "" : +v.toFixed(digits) + suffix));
  }

  // --- the data: one time column, one column per series, the same length --------------------------------------------
  let ts = [];
  let columns = new Map();
  let mode = "live";
  let samples = 0;

  function reset(times, series) {
    ts = times.slice();
    columns = new Map(Object.entries(series).map(([name, values]) => [name, values.slice()]));
  }
  function append(t, values) {
    // A sample stored just before this client joined and published just after comes twice: in the hello's backfill
    // and as a sample. Drawn twice it would repeat an x value.
    if (ts.length && ts[ts.length - 1] === t) return;
    const n = ts.length;
    ts.push(t);
    for (const [name, column] of columns) column.push(name in values ? values[name] : null);
    for (const name of Object.keys(values)) {
      if (!columns.has(name)) {
        const column = new Array(n).fill(null);
        column.push(values[name]);
        columns.set(name, column);
      }
    }
    let cut = 0;
    while (cut < ts.length && ts[cut] < t - WINDOW) cut++;
    if (cut > 0) {
      ts = ts.slice(cut);
      for (const [name, column] of columns) {
        const kept = column.slice(cut);
        if (kept.every((v) => v === null)) columns.delete(name);
        else columns.set(name, kept);
      }
    }
  }

  // --- the charts ---------------------------------------------------------------------------------------------------
  const plots = new Map(); // chart id -> {plot, key, element}
  const HEIGHT = 220;
  // A chart is as wide as its grid cell, and follows it: the cells change when charts come and go and when the window
  // is resized (uPlot draws at a fixed size, so a chart made while it was alone in the grid would keep the full width
  // and overlap its neighbours).
  const resized = new ResizeObserver((observed) => {
    for (const item of observed) {
      const entry = [...plots.values()].find((e) => e.element === item.target);
      const width = Math.floor(item.contentRect.width);
      if (entry && width > 0 && width !== entry.plot.width) entry.plot.setSize({ width: width, height: HEIGHT });
    }
  });
  function removePlot(id) {
    const entry = plots.get(id);
    if (!entry) return;
    resized.unobserve(entry.element);
    entry.plot.destroy();
    entry.element.remove();
    plots.delete(id);
  }
  function removePlots() {
    for (const id of [...plots.keys()]) removePlot(id);
  }

  function matching(chart) {
    const found = [];
    for (const name of columns.keys()) {
      for (const entry of chart.series) {
        const m = name.match(entry.re);
        if (m) found.push({ name: name, label: legend(entry, m), scale: entry.scale });
      }
    }
    found.sort((a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }));
    return found;
  }

  function draw() {
    let drawn = 0;
    for (const chart of CHARTS) {
      const lines = matching(chart);
      let entry = plots.get(chart.id);
      if (!lines.length) {
        removePlot(chart.id);
        continue;
      }
      drawn++;
      const key = lines.map((l) => l.name).join("|");
      const data = [ts].concat(lines.map((l) => columns.get(l.name).map((v) => (v === null ? null : v * l.scale))));
      if (!entry || entry.key !== key) {
        removePlot(chart.id);
        const element = document.createElement("figure");
        element.className = "chart-card";
        element.dataset.chart = chart.id;
        const position = CHARTS.filter((c) => plots.has(c.id) && CHARTS.indexOf(c) < CHARTS.indexOf(chart)).length;
        grid.insertBefore(element, grid.children[position] || null);
        const options = {
          title: chart.title,
          width: Math.max(element.clientWidth || 320, 200),
          height: HEIGHT,
          series: [{}].concat(lines.map((l, i) => ({ label: l.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false }))),
          axes: [{}, { values: axisValues(chart.unit), size: 80 }],
          scales: { x: { time: true } },
        };
        entry = { plot: new uPlot(options, data, element), key: key, element: element };
        plots.set(chart.id, entry);
        resized.observe(element);
      } else {
        entry.plot.setData(data);
      }
      entry.element.dataset.points = String(ts.length);
      entry.element.dataset.series = String(lines.length);
    }
    empty.hidden = drawn > 0;
  }

  // --- the leak table and the NVML notice -----------------------------------------------------------------------------
  function showLeaks(rows) {
    const panel = document.getElementById("leak-panel");
    const body = document.getElementById("leak-rows");
    panel.hidden = !rows || rows.length === 0;
    if (panel.hidden) return;
    body.replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      const cells = [
        worker(String(row.deployment)), row.label, null,
        row.state === "ok" && !row.slope_bytes_per_s ? "—" : formatBytes(row.slope_bytes_per_s * 60) + "/min",
        formatDuration(row.time_to_oom_s), row.reason,
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 2) {
          const badge = document.createElement("span");
          badge.className = "badge badge-" + row.state;
          badge.textContent = row.state;
          td.append(badge);
        } else if (i === 5) {
          const small = document.createElement("small");
          small.textContent = text;
          td.append(small);
        } else td.textContent = text;
        tr.append(td);
      });
      tr.dataset.state = row.state;
      return tr;
    }));
  }
  function showNvml(nvml) {
    const notice = document.getElementById("nvml-notice");
    if (!nvml || nvml.available || config.deployment) { notice.hidden = true; return; }
    notice.hidden = false;
    notice.textContent = "No GPU readings on this node: " + (nvml.reason || "NVML is not available") + ". Host and worker charts carry on.";
  }

  function setState(state, text) {
    stateEl.dataset.state = state;
    stateEl.textContent = text;
  }

  // --- the websocket ------------------------------------------------------------------------------------------------
  let socket = null;
  let delay = 1000;
  let connections = 0;
  function connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + config.ws;
    socket = new WebSocket(url);
    socket.onopen = () => { delay = 1000; connections++; stateEl.dataset.connections = String(connections); };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "hello") {
        if (mode === "live") {
          // A restarted server has no samples yet: keep what is drawn, new samples carry on from it.
          if (message.backfill.ts.length || !ts.length) reset(message.backfill.ts, message.backfill.series);
          draw();
          setState("live", "live");
        }
      } else if (message.type === "sample") {
        samples++;
        samplesEl.textContent = String(samples);
        droppedEl.textContent = String(message.dropped || 0);
        showLeaks(message.leaks);
        showNvml(message.nvml);
        if (message.workers) Object.assign(config.workers, message.workers);
        if (mode === "live") {
          append(message.ts, message.series);
          draw();
          setState("live", "live");
        }
      } else if (message.type === "error") {
        setState("error", message.error);
      }
    };
    socket.onclose = () => {
      if (stateEl.dataset.state === "error") return;
      if (mode === "live") setState("reconnecting", "reconnecting in " + Math.round(delay / 1000) + " s…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  // --- the last hour from the history API ---------------------------------------------------------------------------
  async function showHour() {
    mode = "history";
    setState("history", "loading the last hour…");
    try {
      const listed = await (await fetch(config.series_api, { credentials: "same-origin" })).json();
      const names = listed.series.filter((name) => CHARTS.some((c) => c.series.some((s) => s.re.test(name))) &&
        (!config.deployment || name.startsWith("worker." + config.deployment + ".")));
      const merged = new Map();
      for (let i = 0; i < names.length; i += 50) {
        const params = new URLSearchParams({ start: "-3600", step: "60", node: String(config.node) });
        names.slice(i, i + 50).forEach((name) => params.append("series", name));
        const answer = await (await fetch(config.query_api + "?" + params, { credentials: "same-origin" })).json();
        for (const [name, points] of Object.entries(answer.series)) merged.set(name, points);
      }
      const times = [...new Set([...merged.values()].flatMap((points) => points.map((p) => p[0])))].sort((a, b) => a - b);
      const index = new Map(times.map((t, i) => [t, i]));
      const series = {};
      for (const [name, points] of merged) {
        const column = new Array(times.length).fill(null);
        for (const p of points) column[index.get(p[0])] = p[1];
        series[name] = column;
      }
      removePlots();
      reset(times, series);
      draw();
      setState("history", "last hour (one-minute means)");
    } catch (error) {
      setState("error", "could not load the last hour: " + error);
    }
  }
  const liveButton = document.getElementById("show-live");
  const hourButton = document.getElementById("show-hour");
  function press(live) {
    liveButton.setAttribute("aria-pressed", String(live));
    hourButton.setAttribute("aria-pressed", String(!live));
    liveButton.classList.toggle("secondary", !live);
    hourButton.classList.toggle("secondary", live);
  }
  hourButton.addEventListener("click", () => { press(false); showHour(); });
  liveButton.addEventListener("click", () => {
    press(true);
    mode = "live";
    removePlots();
    reset([], {});
    setState("connecting", "reconnecting…");
    if (socket) socket.close(); // onclose reconnects, and the hello brings the backfill
  });

  connect();
})();
