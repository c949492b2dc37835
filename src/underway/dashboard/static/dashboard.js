// underway dashboard: live counts and progress bars by polling a JSON endpoint.
// The element with data-poll names the endpoint; elements with data-live="key" get the
// value's text, <progress data-live-progress="key"> its value. When the endpoint's "shape"
// differs from the page's (a job finished, a worker came or went) the page reloads.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
  var root = document.querySelector("[data-poll]");
  if (!root) return;
  var url = root.getAttribute("data-poll");
  var shape = root.getAttribute("data-shape");
  var interval = parseInt(root.getAttribute("data-interval"), 10) || 2000;
  function apply(values) {
    root.querySelectorAll("[data-live]").forEach(function (el) {
      var key = el.getAttribute("data-live");
      if (Object.prototype.hasOwnProperty.call(values, key)) el.textContent = values[key];
    });
    root.querySelectorAll("progress[data-live-progress]").forEach(function (el) {
      var value = values[el.getAttribute("data-live-progress")];
      if (typeof value === "number") el.value = value;
    });
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        if (data.shape !== shape) { window.location.reload(); return; }
        apply(data.values);
      })
      .catch(function () { /* the server is restarting: try again at the next tick */ })
      .then(function () { window.setTimeout(tick, interval); });
  }
  window.setTimeout(tick, interval);
})();
