// The rollout page: gate charts, and a live view of the status, the step and the bake time left (polls the API).
(function () {
  "use strict";
  JSON.parse(document.getElementById("gate-charts").textContent).forEach(function (chart) {
    const el = document.getElementById("gate-" + chart.gate);
    if (!el || !window.uPlot) return;
    const limit = chart.steps.map(function () { return chart.threshold; });
    new uPlot({width: el.clientWidth || 420, height: 170,
      scales: {x: {time: false}},
      series: [{label: "evaluation"}, {label: "canary vs stable", stroke: "#0172ad", width: 2, points: {show: true}},
               {label: "limit", stroke: "#c62828", dash: [6, 4]}],
      axes: [{label: "evaluation"}, {size: 50}]}, [chart.steps, chart.values, limit], el);
  });

  const box = document.getElementById("rollout");
  const active = ["pending", "running", "paused"];
  if (!box || active.indexOf(box.dataset.status) < 0) return;
  function refresh() {
    fetch(box.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (r) {
        if (r.status !== box.dataset.status || active.indexOf(r.status) < 0) { window.location.reload(); return; }
        document.getElementById("rollout-weight").textContent = r.weight;
        document.querySelectorAll("#rollout-steps li[data-index]").forEach(function (li) {
          const i = Number(li.dataset.index);
          li.className = i < r.current_step ? "done" : (i === r.current_step ? "current" : "");
        });
        const bake = document.getElementById("rollout-bake");
        if (r.step_started_at && r.status === "running") {
          const left = Math.max(0, r.bake_s - (Date.now() - Date.parse(r.step_started_at)) / 1000);
          bake.textContent = "Gates in " + Math.ceil(left) + " s.";
        } else {
          bake.textContent = r.status === "pending" ? "Waiting for the canary worker to become healthy." : "";
        }
      })
      .catch(function () { /* keep the last view; try again on the next tick */ });
  }
  refresh();
  setInterval(refresh, 2000);
})();
