// The deployment page (its forms' confirmations are forms.js's data-confirm): while a worker starts or is replaced the status
// is followed live (the REST API, with the page's session) until it settles; then the page reloads to show the
// true state: the worker's own live config and measured memory.
(function () {
  "use strict";
  var status = document.getElementById("deployment-status");
  if (!status || !status.dataset.busy) return;
  var badge = status.querySelector('[data-field="status"]');
  var detail = status.querySelector('[data-field="status_detail"]');
  var polls = 0;
  function busy(d) {
    return d.status === "starting" || /restarting|loading the model|starting worker/.test(d.status_detail || "");
  }
  function again(delay) {
    polls += 1;
    if (polls < 900) window.setTimeout(poll, delay);
  }
  function poll() {
    fetch(status.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error(String(r.status))); })
      .then(function (d) {
        badge.textContent = d.status.charAt(0).toUpperCase() + d.status.slice(1);
        badge.className = "badge badge-" + d.status;
        detail.textContent = d.status_detail;
        if (busy(d)) again(1000);
        else window.location.reload();
      })
      .catch(function () { again(2000); });
  }
  window.setTimeout(poll, 1000);
})();
