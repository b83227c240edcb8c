// taskhub web view: fills the pages from the JSON endpoints (docs/web.md).
// Plain browser JavaScript, no build step. Every request carries the page's token.
"use strict";

const taskhub = (() => {
  const token = document.querySelector('meta[name="taskhub-token"]').content;
  const $ = (id) => document.getElementById(id);

  async function api(path, options = {}) {
    const headers = { Authorization: "token " + token };
    const response = await fetch(path, { ...options, headers, cache: "no-store" });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
    }
    return node;
  }

  // -- formatting -------------------------------------------------------------------------
  const pad = (n, width = 2) => String(n).padStart(width, "0");

  function localTime(iso, withDate = true) {
    if (!iso) return "";
    const d = new Date(iso);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
      `.${pad(d.getMilliseconds(), 3)}`;
    if (!withDate) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  // Microseconds since the epoch: Date keeps milliseconds, the ISO text has microseconds.
  function micros(iso) {
    const fraction = (iso.match(/\.(\d+)/) || ["", ""])[1].padEnd(6, "0");
    return Date.parse(iso) * 1000 + Number(fraction.slice(3, 6));
  }

  function seconds(fromIso, toIso) {
    if (!fromIso || !toIso) return "";
    const s = (micros(toIso) - micros(fromIso)) / 1e6;
    return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(3)} s`;
  }

  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - new Date(iso)) / 1000);
    return s < 60 ? `${s.toFixed(1)} s ago` : `${Math.round(s / 60)} min ago`;
  }

  // A task's state: the DB's status once finished; before, whether an engine has it.
  function state(task) {
    if (task.completed) return task.status || "finished";
    return task.engine_id === null || task.engine_id === undefined ? "waiting" : "running";
  }

  const badge = (text) => el("span", { class: `badge s-${text}`, text });
  const taskLink = (msgId) => el("a", { href: `/task/${encodeURIComponent(msgId)}`,
                                        class: "mono", text: msgId });

  // -- the cluster page -------------------------------------------------------------------
  function renderEngines(engines) {
    const body = $("engines").tBodies[0];
    const up = engines.filter((e) => e.state === "up").length;
    $("engine-count").textContent = `${up} up` + (engines.length > up ?
      `, ${engines.length - up} down or registering` : "");
    body.replaceChildren(...engines.map((e) => el("tr", { class: `engine e-${e.state}` },
      el("td", { class: "num", text: e.id }), el("td", { text: e.host ?? "" }),
      el("td", { class: "num", text: e.pid ?? "" }), el("td", {}, badge(e.state)),
      el("td", { class: "num", text: e.queue ?? "" }),
      el("td", { class: "num", text: e.completed ?? "" }),
      el("td", { text: ago(e.last_heartbeat) }))));
    if (!engines.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "quiet",
                                                   text: "no engines yet" })));
    }
  }

  const SPARK_SAMPLES = 60;  // the sparkline spans the last 2 minutes (a poll every 2 s)
  const rates = [];  // tasks/s samples for the sparkline, one per poll

  function renderThroughput(t) {
    const rate = t.rate ?? 0;  // null: the controller keeps no task DB to count in
    $("rate").textContent = t.rate === null ? "–" : rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
    $("outstanding").textContent = t.outstanding;
    $("waiting").textContent = t.waiting;
    $("throughput").textContent = `${$("rate").textContent} tasks/s · ` +
      `${t.outstanding} running · ${t.waiting} waiting`;
    const failing = t.db && t.db.db_state === "failing";  // the task DB cannot be written
    $("throughput").classList.toggle("db-failing", failing);
    if (failing) {
      $("throughput").textContent += ` · TASK DB FAILING: ${t.db.db_error} ` +
        `(${t.db.db_kept_in_memory + t.db.db_kept_in_spill_file} records kept to write)`;
    }
    rates.push(rate);
    if (rates.length > SPARK_SAMPLES) rates.shift();
    drawSparkline($("spark"), rates);
  }

  function drawSparkline(canvas, values) {
    const ctx = canvas.getContext("2d");
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    const top = Math.max(1, ...values);
    const step = width / (SPARK_SAMPLES - 1);
    ctx.beginPath();
    values.forEach((v, i) => {
      const x = width - (values.length - 1 - i) * step;
      const y = height - 2 - (v / top) * (height - 6);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.fillStyle = "#64748b";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(`max ${top.toFixed(top >= 100 ? 0 : 1)}/s`, 4, 12);
    canvas.dataset.rates = values.join(" ");  // what is drawn, for tests and the curious
  }

  // Filters live in the page URL, so a filtered view can be bookmarked or shared.
  const FILTERS = ["status", "engine", "label", "group", "since", "until", "msg_id", "q",
                   "limit"];
  const table = { sort: "-submitted", skip: 0, total: 0, limit: 50 };

  function readUrl() {
    const params = new URLSearchParams(location.search);
    for (const name of FILTERS) {
      const value = params.get(name);
      if (value === null) continue;
      const input = $(`f-${name}`);
      input.value = ["since", "until"].includes(name) ? toLocalInput(value) : value;
    }
    table.sort = params.get("sort") || table.sort;
    table.skip = Number(params.get("skip") || 0);
  }

  // datetime-local inputs hold local time without a zone; the API gets ISO with offset.
  function toLocalInput(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fromLocalInput(value) {
    return value ? new Date(value).toISOString() : "";
  }

  function filterParams() {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      let value = $(`f-${name}`).value.trim();
      if (["since", "until"].includes(name)) value = fromLocalInput(value);
      if (value && !(name === "status" && value === "all")) params.set(name, value);
    }
    params.set("sort", table.sort);
    if (table.skip) params.set("skip", table.skip);
    return params;
  }

  async function loadTasks() {
    const params = filterParams();
    const shown = new URLSearchParams(params);
    const pageToken = new URLSearchParams(location.search).get("token");
    if (pageToken) shown.set("token", pageToken);
    history.replaceState(null, "", `?${shown}`);
    try {
      const page = await api(`/api/tasks?${params}`);
      $("table-error").hidden = true;
      renderTasks(page);
    } catch (e) {
      $("table-error").textContent = e.message;
      $("table-error").hidden = false;
    }
  }

  function renderTasks(page) {
    Object.assign(table, { total: page.total, limit: page.limit, skip: page.skip });
    $("task-total").textContent = `${page.total.toLocaleString()} matching`;
    const rows = page.tasks.map((t) => el("tr", { class: `task t-${state(t)}`,
                                                 "data-msg-id": t.msg_id },
      el("td", {}, taskLink(t.msg_id)), el("td", {}, badge(state(t))),
      el("td", { class: "num", text: t.engine_id ?? "" }), el("td", { text: t.label ?? "" }),
      el("td", { text: localTime(t.submitted) }), el("td", { text: seconds(t.started, t.completed) }),
      el("td", { text: localTime(t.completed) }),
      el("td", { class: "error-text", text: t.ename ? `${t.ename}: ${t.evalue ?? ""}` : "" })));
    $("tasks").tBodies[0].replaceChildren(...rows);
    if (!rows.length) {
      $("tasks").tBodies[0].append(el("tr", {}, el("td", { colspan: 8, class: "quiet",
                                                          text: "no task matches" })));
    }
    const end = Math.min(page.total, page.skip + page.tasks.length);
    $("page-info").textContent = page.total ?
      `${(page.skip + 1).toLocaleString()}–${end.toLocaleString()} of ${page.total.toLocaleString()}` : "";
    $("prev").disabled = page.skip === 0;
    $("next").disabled = end >= page.total;
    for (const th of $("tasks").tHead.rows[0].cells) {
      const key = th.dataset.sort;
      th.classList.toggle("sorted", !!key && table.sort.replace("-", "") === key);
      th.classList.toggle("desc", !!key && table.sort === `-${key}`);
    }
  }

  function wireTable() {
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      table.skip = 0;
      loadTasks();
    });
    $("f-status").addEventListener("change", () => { table.skip = 0; loadTasks(); });
    $("clear").addEventListener("click", () => {
      $("filters").reset();
      table.skip = 0;
      loadTasks();
    });
    for (const th of $("tasks").tHead.rows[0].cells) {
      if (!th.dataset.sort) continue;
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        table.sort = table.sort === `-${key}` ? key : `-${key}`;
        table.skip = 0;
        loadTasks();
      });
    }
    $("prev").addEventListener("click", () => {
      table.skip = Math.max(0, table.skip - table.limit);
      loadTasks();
    });
    $("next").addEventListener("click", () => { table.skip += table.limit; loadTasks(); });
  }

  // Polls `load` every `ms` while the page is visible; one request in flight at a time.
  function every(ms, load) {
    let busy = false;
    const tick = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try { await load(); } catch (e) { console.warn(e); } finally { busy = false; }
    };
    tick();
    return setInterval(tick, ms);
  }

  function mainPage() {
    readUrl();
    wireTable();
    every(2000, async () => renderEngines((await api("/api/engines")).engines));
    // the chart starts with what the task DB says happened before the page opened
    api(`/api/throughput/history?window=10&step=2&samples=${SPARK_SAMPLES - 1}`)
      .then((h) => { rates.unshift(...h.rates); drawSparkline($("spark"), rates); })
      .catch((e) => console.warn(e))
      .finally(() => every(2000, async () =>
        renderThroughput(await api("/api/throughput?window=10"))));
    loadTasks();
    // the first page of newest tasks keeps itself current; deeper pages stay put
    setInterval(() => { if (table.skip === 0 && !document.hidden) loadTasks(); }, 5000);
  }

  // -- the task page ----------------------------------------------------------------------
  function factRows(target, pairs) {
    target.tBodies[0].replaceChildren(...pairs.filter(([, v]) => v !== "" && v != null)
      .map(([k, v]) => el("tr", {}, el("th", { text: k }),
                          el("td", {}, v instanceof Node ? v : String(v)))));
  }

  function renderTask(info) {
    const t = info.task;
    const s = state(t);
    $("status").replaceWith(Object.assign(badge(s), { id: "status" }));
    const md = t.metadata || {};
    factRows($("facts"), [
      ["label", t.label], ["group", t.task_group], ["queue", t.queue],
      ["engine", t.engine_id ?? ""], ["engine uuid", t.engine_uuid],
      ["client", t.client_uuid],
      ["retries", md.retries], ["time limit", md.time_limit ? `${md.time_limit} s` : ""],
      ["priority", md.priority], ["timeout", md.timeout ? `${md.timeout} s` : ""],
    ]);
    factRows($("timings"), [
      ["submitted", localTime(t.submitted)], ["started", localTime(t.started)],
      ["completed", localTime(t.completed)], ["received", localTime(t.received)],
      ["waited", seconds(t.submitted, t.started)], ["ran", seconds(t.started, t.completed)],
    ]);
    const links = [];
    if (t.resubmitted) links.push(el("p", {}, "resubmitted as ", taskLink(t.resubmitted)));
    if (info.resubmitted_from) {
      links.push(el("p", {}, "a resubmission of ", taskLink(info.resubmitted_from)));
    }
    $("links").replaceChildren(...links);
    const error = t.error || {};
    const traceback = error.traceback || (error.ename ? `${error.ename}: ${error.evalue}` : "");
    $("traceback").textContent = traceback;
    $("traceback").hidden = $("traceback-title").hidden = !traceback;
    $("stdout").textContent = t.stdout || "";
    $("stderr").textContent = t.stderr || "";
    renderDependencies(md);
    renderAttempts((t.result_metadata || {}).failed_attempts || []);
    $("raw").textContent = JSON.stringify({ header: t.header, metadata: t.metadata,
      result_header: t.result_header, result_metadata: t.result_metadata }, null, 2);
    $("resubmit").hidden = !t.completed;
    $("abort").hidden = !!t.completed;
    return s;
  }

  function renderDependencies(md) {
    const parts = [];
    for (const kind of ["after", "follow"]) {
      const dep = md[kind];
      if (!dep || !dep.msg_ids || !dep.msg_ids.length) continue;
      const how = [dep.all === false ? "any of" : "all of",
                   dep.success === false ? "" : "succeeded",
                   dep.failure ? "or failed" : ""].filter(Boolean).join(" ");
      const list = el("ul", {}, ...dep.msg_ids.map((m) => el("li", {}, taskLink(m))));
      parts.push(el("p", {}, el("strong", { text: kind }), ` (${how}):`), list);
    }
    $("dependencies").replaceChildren(...parts);
    $("deps-title").hidden = !parts.length;
  }

  function renderAttempts(attempts) {
    $("attempts").tBodies[0].replaceChildren(...attempts.map((a) => el("tr", {},
      el("td", { text: a.engine_id ?? a.engine_uuid }),
      el("td", { class: "error-text", text: `${a.ename}: ${a.evalue}` }),
      el("td", { text: localTime(a.at) }))));
    $("attempts").hidden = $("attempts-title").hidden = !attempts.length;
  }

  function taskPage(msgId) {
    const path = `/api/tasks/${encodeURIComponent(msgId)}`;
    let timer = null;
    const load = async () => {
      try {
        const done = !["waiting", "running"].includes(renderTask(await api(path)));
        $("task-error").hidden = true;
        if (done && timer) { clearInterval(timer); timer = null; }
      } catch (e) {
        $("task-error").textContent = e.message;
        $("task-error").hidden = false;
      }
    };
    load();
    timer = setInterval(load, 1000);
    const act = (button, verb, after) => $(button).addEventListener("click", async () => {
      $(button).disabled = true;
      try {
        after(await api(`${path}/${verb}`, { method: "POST" }));
      } catch (e) {
        $("action-result").textContent = e.message;
      } finally {
        $(button).disabled = false;
      }
    });
    act("resubmit", "resubmit", (r) => { location.href = `/task/${encodeURIComponent(r.msg_id)}`; });
    act("abort", "abort", () => { $("action-result").textContent = "abort requested"; load(); });
  }

  return { mainPage, taskPage };
})();
