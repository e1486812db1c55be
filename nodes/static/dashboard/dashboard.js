// The fleet page: one socket (/ws/dashboard) pushes a snapshot each second; this draws it.
// The node table is paged, sorted and filtered by the server: the page's choice goes up the
// socket ("view") and only that page comes down. The pools table is sorted here.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const sorts = { pools: { key: null, dir: 1 } };
  // what the node table shows; the first click on a column sorts it this way
  const view = { page: 0, size: 50, sort: "id", order: "asc", status: "", pool: "", node: "", pair: "" };
  const firstOrder = { id: "asc", free: "desc", used: "desc", failed: "desc", heartbeat: "desc" };
  let typing = null;
  let socket = null;
  let retryMs = 500;
  let last = null;
  let poolNames = "";

  function cell(text, attrs) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
    for (const [key, value] of Object.entries(attrs || {})) td.setAttribute(key, value);
    return td;
  }

  function setConnection(text, kind) {
    const pill = $("connection");
    pill.textContent = text;
    pill.className = "pill pill-" + kind;
  }

  function notice(message, level) {
    const box = $("notice");
    box.textContent = message;
    box.className = "notice-" + (level || "info");
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
  }

  function sendView() {
    send(Object.assign({ type: "view" }, view));
  }

  function filtersChanged() {
    view.pool = $("filter-pool").value;
    view.status = $("filter-status").value;
    view.node = $("filter-node").value.trim();
    view.pair = $("filter-pair").value.trim();
    view.page = 0;
    sendView();
  }

  function typed() {
    clearTimeout(typing);
    typing = setTimeout(filtersChanged, 300);
  }

  function compare(key, dir) {
    return (a, b) => {
      let x = a[key], y = b[key];
      const xNone = x === null || x === undefined, yNone = y === null || y === undefined;
      if (xNone || yNone) return xNone === yNone ? 0 : xNone ? 1 : -1;
      if (typeof x === "number" && typeof y === "number") return (x - y) * dir;
      return String(x).localeCompare(String(y)) * dir;
    };
  }

  function sorted(rows, table) {
    const sort = sorts[table];
    return sort.key ? rows.slice().sort(compare(sort.key, sort.dir)) : rows;
  }

  function poolsText(node) {
    const parts = node.pools.slice();
    if (node.auto_pools) parts.push(node.auto_pools + " auto");
    return parts.join(", ");
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : value.toFixed(0);
  }

  function drawNodes(snapshot) {
    const body = document.querySelector("#nodes tbody");
    body.replaceChildren();
    for (const node of snapshot.nodes) {
      const tr = document.createElement("tr");
      tr.dataset.nodeId = node.id;
      tr.dataset.status = node.status;
      tr.appendChild(cell(node.id, { "data-col": "id", class: "mono" }));
      const ejected = node.ejected_s ? " · ejected " + Math.ceil(node.ejected_s) + " s (" + node.eject_reason + ")" : "";
      const status = cell(node.status + ejected, { "data-col": "status" });
      status.classList.add("status", "status-" + node.status);
      tr.appendChild(status);
      tr.appendChild(cell(poolsText(node), { "data-col": "pools" }));
      tr.appendChild(cell(node.pairs_text, { "data-col": "pairs", title: node.pairs + " pairs" }));
      tr.appendChild(cell(node.services.join(" "), { "data-col": "services" }));
      tr.appendChild(cell(node.used + "/" + node.slots, { "data-col": "slots", class: "num" }));
      tr.appendChild(cell(node.free, { "data-col": "free", class: "num" }));
      tr.appendChild(cell(percent(node.cpu), { "data-col": "cpu", class: "num" }));
      tr.appendChild(cell(node.gpu === null ? "—" : percent(node.gpu) + (node.gpu_mem === null ? "" : " (mem " + percent(node.gpu_mem) + ")"),
        { "data-col": "gpu", class: "num" }));
      tr.appendChild(cell(percent(node.mem), { "data-col": "mem", class: "num" }));
      tr.appendChild(cell(node.running_jobs, { "data-col": "running_jobs", class: "num" }));
      tr.appendChild(cell(node.heartbeat_age_s === null ? null : node.heartbeat_age_s.toFixed(0) + " s ago",
        { "data-col": "heartbeat", class: "num" }));
      tr.appendChild(cell(node.jobs_done, { "data-col": "jobs_done", class: "num" }));
      tr.appendChild(cell(node.jobs_failed, { "data-col": "jobs_failed", class: "num" }));
      tr.appendChild(cell(node.median_ms === null ? null : Math.round(node.median_ms), { "data-col": "median_ms", class: "num" }));
      const actions = document.createElement("td");
      const button = document.createElement("button");
      const resume = node.status === "draining";
      button.textContent = resume ? "Resume" : "Drain";
      button.className = resume ? "resume" : "drain";
      button.dataset.nodeId = node.id;
      button.addEventListener("click", () => {
        button.disabled = true;
        send({ type: resume ? "resume" : "drain", node_id: node.id });
      });
      actions.appendChild(button);
      if (node.ejected_s) {
        const end = document.createElement("button");
        end.textContent = "End ejection";
        end.className = "eject-end";
        end.dataset.nodeId = node.id;
        end.addEventListener("click", () => {
          end.disabled = true;
          send({ type: "eject_end", node_id: node.id });
        });
        actions.appendChild(end);
      }
      tr.appendChild(actions);
      body.appendChild(tr);
    }
    const page = snapshot.page;
    $("nodes-count").textContent = "(" + page.rows + ")";
    $("nodes-none").hidden = !page.built || page.rows > 0;
    $("nodes-preparing").hidden = page.built;
    const pages = Math.max(1, page.pages);
    $("page-info").textContent = "page " + (page.index + 1) + " of " + pages;
    $("page-prev").disabled = page.index <= 0;
    $("page-next").disabled = page.index + 1 >= pages;
    if (page.built && page.index > 0 && page.index >= pages) {  // the view shrank under us
      view.page = pages - 1;
      sendView();
    }
  }

  function drawSortHeaders() {
    for (const th of document.querySelectorAll("#nodes th[data-sort]")) {
      th.classList.remove("sorted-up", "sorted-down");
      if (th.dataset.sort === view.sort) th.classList.add(view.order === "asc" ? "sorted-up" : "sorted-down");
    }
  }

  function drawPools(snapshot) {
    const body = document.querySelector("#pools tbody");
    body.replaceChildren();
    for (const pool of sorted(snapshot.pools, "pools")) {
      const tr = document.createElement("tr");
      tr.dataset.pool = pool.name;
      tr.appendChild(cell(pool.name, { "data-col": "name", class: pool.admin ? "admin-pool" : "auto-pool" }));
      tr.appendChild(cell(pool.ready_nodes, { "data-col": "ready_nodes", class: "num" }));
      tr.appendChild(cell(pool.free + "/" + pool.total, { "data-col": "slots", class: "num" }));
      tr.appendChild(cell(pool.jobs_per_min, { "data-col": "jobs_per_min", class: "num" }));
      tr.appendChild(cell(pool.jobs_15m, { "data-col": "jobs_15m", class: "num" }));
      tr.appendChild(cell(pool.p50_ms, { "data-col": "p50_ms", class: "num" }));
      tr.appendChild(cell(pool.p95_ms, { "data-col": "p95_ms", class: "num" }));
      tr.appendChild(cell(pool.no_available, { "data-col": "no_available", class: "num" + (pool.no_available ? " warn" : "") }));
      body.appendChild(tr);
    }
    $("pools-count").textContent = "(" + snapshot.pools.length + ")";
    $("pools-none").hidden = snapshot.pools.length > 0;
  }

  function drawRooms(snapshot) {
    const rooms = snapshot.rooms || { count: 0, shown: [] };
    const body = document.querySelector("#rooms tbody");
    body.replaceChildren();
    for (const room of rooms.shown) {
      const tr = document.createElement("tr");
      tr.dataset.room = room.code;
      const code = document.createElement("td");
      const link = document.createElement("a");
      link.href = "/dashboard/jobs/?room_code=" + encodeURIComponent(room.code);
      link.textContent = room.code;
      code.appendChild(link);
      tr.appendChild(code);
      tr.appendChild(cell(room.members, { class: "num" }));
      tr.appendChild(cell(room.languages.join(" "), {}));
      tr.appendChild(cell(room.jobs_last_minute, { class: "num" }));
      tr.appendChild(cell(room.idle_s, { class: "num" }));
      body.appendChild(tr);
    }
    $("rooms-count").textContent = "(" + rooms.count + (rooms.count > rooms.shown.length ? ", " + rooms.shown.length + " most recently active shown" : "") + ")";
    $("rooms-none").hidden = rooms.count > 0;
  }

  function drawTotals(snapshot) {
    const t = snapshot.totals;
    $("total-sessions").textContent = t.sessions;
    $("total-sessions-by-tenant").textContent = Object.entries(snapshot.tenant_sessions || {})
      .filter(([, n]) => n > 0).map(([name, n]) => n + " " + name).join(" · ");
    $("total-nodes").textContent = t.node_count;
    $("total-nodes-by-status").textContent = Object.entries(t.nodes).map(([s, n]) => n + " " + s).join(" · ");
    $("total-slots").textContent = t.slots_used + " / " + t.slots_total;
    $("total-inflight").textContent = t.jobs_in_flight;
    $("total-jobs").textContent = t.jobs_done + " / " + t.jobs_failed;
    const worker = $("total-worker");
    worker.textContent = t.workers_alive ? "alive" + (t.workers_alive > 1 ? " ×" + t.workers_alive : "") : "none running";
    worker.className = "value " + (t.workers_alive ? "ok" : "bad");
  }

  function drawPoolFilter(snapshot) {
    const names = snapshot.pool_names.join("\n");
    if (names === poolNames) return;
    poolNames = names;
    const select = $("filter-pool");
    const chosen = select.value;
    select.replaceChildren(new Option("all pools", ""));
    for (const name of snapshot.pool_names) select.appendChild(new Option(name, name));
    select.value = snapshot.pool_names.includes(chosen) ? chosen : "";
  }

  function draw(snapshot) {
    last = snapshot;
    $("summary-note").textContent = snapshot.summary_note;
    drawTotals(snapshot);
    drawPoolFilter(snapshot);
    const empty = snapshot.summary_at_ms > 0 && snapshot.totals.node_count === 0;  // a summary says so
    $("empty-state").hidden = !empty;
    $("nodes-block").hidden = empty;
    drawNodes(snapshot);
    drawPools(snapshot);
    drawRooms(snapshot);
    const windowMs = snapshot.history.window_s * 1000;
    // the worker's samples, then the fleet as it is now
    const now = { t: snapshot.now_ms, used: snapshot.totals.slots_used, total: snapshot.totals.slots_total,
      cpu: snapshot.totals.cpu };
    Charts.load($("chart-load"), snapshot.history.load.concat([now]), windowMs, snapshot.now_ms);
    Charts.bars($("chart-jobs"), snapshot.history.jobs, windowMs, snapshot.now_ms);
    document.body.dataset.updatedAt = String(snapshot.now_ms);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/dashboard");
    socket.onopen = () => {
      retryMs = 500;
      setConnection("live", "ok");
      sendView();
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "snapshot") draw(frame);
      else if (frame.type === "notice") notice(frame.message, frame.level);
    };
    socket.onclose = (event) => {
      if (event.code === 4403) {
        setConnection("not allowed: sign in as a staff user", "bad");
        return;
      }
      setConnection("reconnecting…", "wait");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    };
  }

  function setupNodeSorting() {
    for (const th of document.querySelectorAll("#nodes th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        view.order = view.sort === key ? (view.order === "asc" ? "desc" : "asc") : firstOrder[key];
        view.sort = key;
        view.page = 0;
        drawSortHeaders();
        sendView();
      });
    }
    drawSortHeaders();
  }

  function turnPage(by) {
    view.page = Math.max(0, view.page + by);
    sendView();
  }

  function setupSorting(table) {
    for (const th of document.querySelectorAll("#" + table + " th[data-sort]")) {
      th.addEventListener("click", () => {
        const sort = sorts[table];
        sort.dir = sort.key === th.dataset.sort ? -sort.dir : 1;
        sort.key = th.dataset.sort;
        for (const other of document.querySelectorAll("#" + table + " th")) other.classList.remove("sorted-up", "sorted-down");
        th.classList.add(sort.dir > 0 ? "sorted-up" : "sorted-down");
        if (last) draw(last);
      });
    }
  }

  $("node-url").textContent = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/node?token=TOKEN";
  $("filter-pool").addEventListener("change", filtersChanged);
  $("filter-status").addEventListener("change", filtersChanged);
  $("filter-node").addEventListener("input", typed);
  $("filter-pair").addEventListener("input", typed);
  $("page-prev").addEventListener("click", () => turnPage(-1));
  $("page-next").addEventListener("click", () => turnPage(1));
  setupNodeSorting();
  setupSorting("pools");
  connect();
})();
