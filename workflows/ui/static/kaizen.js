// kaizen ui: live updates and approvals, in plain JavaScript (no framework, no build step, nothing fetched from elsewhere).
(function () {
  "use strict";

  // An element with data-refresh-url is re-fetched as an HTML fragment and swapped in place, until the
  // fragment comes back without the attribute (the run finished). The page itself never reloads.
  function poll(el) {
    var url = el.getAttribute("data-refresh-url");
    var every = parseInt(el.getAttribute("data-refresh-ms") || "1000", 10);
    window.setTimeout(function () {
      fetch(url, { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var box = document.createElement("div");
          box.innerHTML = html.trim();
          var fresh = box.firstElementChild;
          if (!fresh) { poll(el); return; }
          // Keep what the user is typing in a form that is still there after the swap.
          el.querySelectorAll("textarea, input").forEach(function (old) {
            if (!old.name || !old.closest("form[data-decide]")) return;
            var twin = fresh.querySelector('form[data-run="' + old.closest("form").getAttribute("data-run") + '"] [name="' + old.name + '"]');
            if (twin && old.value) twin.value = old.value;
          });
          el.replaceWith(fresh);
          bindForms(fresh);
          window.kaizenRefreshes = (window.kaizenRefreshes || 0) + 1;
          if (fresh.hasAttribute("data-refresh-url")) poll(fresh);
          else document.dispatchEvent(new CustomEvent("kaizen:final", { detail: { status: fresh.getAttribute("data-run-status") } }));
        })
        .catch(function () { poll(el); });
    }, every);
  }

  // Approve / reject: POST JSON to /api/runs/RUN/approve|reject with the token (header), the reason and the name.
  function bindForms(root) {
    root.querySelectorAll("form[data-decide]").forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var action = (ev.submitter && ev.submitter.value) || "approve";
        var out = form.querySelector(".result");
        var data = {};
        new FormData(form).forEach(function (v, k) { data[k] = v; });
        var headers = { "Content-Type": "application/json", Accept: "application/json" };
        if (data.token) headers["X-Kaizen-Token"] = data.token;
        delete data.token;
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        out.className = "result"; out.textContent = (action === "approve" ? "approving" : "rejecting") + "…";
        fetch(form.getAttribute("data-decide") + "/" + action, { method: "POST", headers: headers, body: JSON.stringify(data), credentials: "same-origin" })
          .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
          .then(function (res) {
            if (!res.ok) throw new Error(res.body.error || "refused");
            var st = res.body.run.status;
            out.className = "result ok";
            out.setAttribute("data-status", st);
            out.innerHTML = "";
            out.appendChild(document.createTextNode("done: run " + res.body.run.id + " is now " + st.replace(/_/g, " ") + " "));
            var a = document.createElement("a"); a.href = "/runs/" + res.body.run.id; a.textContent = "open the run";
            out.appendChild(a);
            form.querySelectorAll("textarea, input").forEach(function (i) { i.disabled = true; });
            var badge = document.getElementById("waiting-count");
            if (badge) { var n = parseInt(badge.textContent, 10) - 1; if (n > 0) badge.textContent = n; else badge.remove(); }
          })
          .catch(function (e) {
            out.className = "result err"; out.textContent = "refused: " + e.message;
            form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
          });
      });
    });
  }

  document.querySelectorAll("[data-refresh-url]").forEach(poll);
  bindForms(document);
})();
