// fastgw dashboard: polls /dashboard/data every second and draws the node's metrics.
//
// The server sends cumulative totals (fastgw.admin.dashboard.snapshot); rates, percentiles and hit
// ratios are computed here from the difference between the newest answer and the one WINDOW polls
// before it, the way `fastgw top` diffs two scrapes: a counter that went down was reset, and its
// increase is its new value. Names come from the config: they are set with textContent only.
(() => {
  "use strict";

  const DATA_URL = "/dashboard/data";
  const POLL_MS = 1000;
  const WINDOW = 3; // polls per rate window (workers publish about once a second)
  const POINTS = 120; // chart history: two minutes
  const COLORS = {
    rps: "#2563eb",
    p50: "#0d9488",
    p99: "#ea580c",
    e4: "#d97706",
    e5: "#dc2626",
    thr: "#7c3aed",
    grid: "#e5e7eb",
    label: "#9ca3af",
  };

  const samples = []; // the last WINDOW + 1 answers: {time, routes: Map(key -> route), node}
  const rows = new Map(); // route key -> row state
  const sections = new Map(); // "ApiId\0Stage" -> {section, tbody}
  const nodeSeries = { rps: [], e4: [], e5: [], thr: [] };
  let filterText = "";
  let stopped = false;

  // ------------------------------------------------------------------ helpers
  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function push(series, value) {
    series.push(value);
    if (series.length > POINTS) series.shift();
  }

  function increase(prev, cur) {
    return prev === undefined || prev === null || cur < prev ? cur : cur - prev;
  }

  function sum(values) {
    let total = 0;
    for (const v of values) total += v;
    return total;
  }

  // Per-bucket increase; a histogram whose total went down was reset.
  function bucketIncrease(prev, cur) {
    if (!prev || sum(cur) < sum(prev)) return cur.slice();
    return cur.map((c, i) => Math.max(0, c - (prev[i] || 0)));
  }

  // fastgw_core.stats.bucket_quantile: Prometheus's interpolation; the first bucket starts at 0.
  function quantile(counts, q, bounds) {
    const total = sum(counts);
    if (total <= 0) return null;
    const rank = q * total;
    let cum = 0;
    for (let i = 0; i < counts.length; i++) {
      const c = counts[i];
      if (c > 0 && cum + c >= rank) {
        if (i >= bounds.length) return bounds[bounds.length - 1];
        const lower = i ? bounds[i - 1] : 0;
        return lower + ((bounds[i] - lower) * (rank - cum)) / c;
      }
      cum += c;
    }
    return bounds[bounds.length - 1];
  }

  function fmtRate(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0";
    if (v < 100) return v.toFixed(1);
    return Math.round(v).toLocaleString("en-US");
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return "–";
    if (v < 100) return v.toFixed(1);
    return Math.round(v).toLocaleString("en-US");
  }

  function fmtCount(v) {
    return v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US");
  }

  function fmtBytes(v) {
    if (v === null || v === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i ? v.toFixed(1) : String(v)) + " " + units[i];
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // ------------------------------------------------------------------ charts
  // series: [{values, color, fill}]; values hold numbers or null (a gap), newest last.
  function draw(canvas, series, unit) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = niceMax(max);
    const top = 10;
    const y = (v) => h - 1 - (v / max) * (h - top - 2);
    const step = w / (POINTS - 1);
    ctx.strokeStyle = COLORS.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, h - 0.5);
    ctx.lineTo(w, h - 0.5);
    ctx.moveTo(0, top + 0.5);
    ctx.lineTo(w, top + 0.5);
    ctx.stroke();
    for (const s of series) {
      const n = s.values.length;
      const x = (i) => w - (n - 1 - i) * step;
      let run = [];
      const flush = () => {
        if (!run.length) return;
        ctx.beginPath();
        run.forEach(([px, py], j) => (j ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
        ctx.strokeStyle = s.color;
        ctx.lineWidth = 1.5;
        ctx.lineJoin = "round";
        ctx.stroke();
        if (s.fill && run.length > 1) {
          ctx.lineTo(run[run.length - 1][0], h);
          ctx.lineTo(run[0][0], h);
          ctx.closePath();
          ctx.globalAlpha = 0.12;
          ctx.fillStyle = s.color;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
        if (run.length === 1) {
          ctx.fillStyle = s.color;
          ctx.fillRect(run[0][0] - 1.5, run[0][1] - 1.5, 3, 3);
        }
        run = [];
      };
      for (let i = 0; i < n; i++) {
        const v = s.values[i];
        if (v === null || v === undefined) flush();
        else run.push([x(i), y(v)]);
      }
      flush();
    }
    ctx.fillStyle = COLORS.label;
    ctx.font = "9px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(fmtRate(max) + (unit ? " " + unit : ""), 2, 0);
  }

  // ------------------------------------------------------------------ DOM
  function routeKey(r) {
    return [r.ApiId, r.Stage, r.route].join("\u0000");
  }

  function sectionFor(r) {
    const key = r.ApiId + "\u0000" + r.Stage;
    let s = sections.get(key);
    if (s) return s;
    const section = el("section", "api");
    const h2 = el("h2");
    h2.append(el("span", "api-name", r.ApiName), el("span", "stage", r.Stage));
    h2.append(el("span", "tag", r.ApiId), el("span", "tag", r.kind === "rest" ? "REST" : r.kind.toUpperCase()));
    const table = el("table", "routes");
    const head = el("tr");
    for (const [label, cls] of [
      ["Route", "name c-name"],
      ["Requests", "num c-count"],
      ["Req/s", "chart c-rps"],
      ["p50 / p99 ms", "chart c-lat"],
      ["4XX", "num c-e4"],
      ["5XX", "num c-e5"],
      ["Cache hit", "num c-hit"],
      ["Upstream", "up c-up"],
    ]) {
      head.append(el("th", cls, label));
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    table.append(thead, tbody);
    section.append(h2, table);
    $("apis").append(section);
    s = { section, tbody, rows: 0 };
    sections.set(key, s);
    return s;
  }

  function rowFor(r) {
    const key = routeKey(r);
    let row = rows.get(key);
    if (row) return row;
    const tr = el("tr");
    tr.dataset.route = r.route;
    tr.dataset.api = r.ApiName;
    tr.dataset.stage = r.Stage;
    const name = el("td", "name");
    name.append(el("code", "", r.route));
    const count = el("td", "num count");
    const rps = el("td", "chart c-rps");
    const rpsVal = el("span", "val");
    const rpsCanvas = el("canvas", "spark");
    rps.append(rpsVal, rpsCanvas);
    const lat = el("td", "chart c-lat");
    const latVal = el("span", "val");
    const latCanvas = el("canvas", "spark");
    lat.append(latVal, latCanvas);
    const e4 = el("td", "num e4");
    const e5 = el("td", "num e5");
    const hit = el("td", "num hit");
    const up = el("td", "up");
    const upDot = el("span", "dot");
    const upText = el("span", "up-text");
    up.append(upDot, upText);
    tr.append(name, count, rps, lat, e4, e5, hit, up);
    const s = sectionFor(r);
    s.tbody.append(tr);
    row = {
      tr,
      section: s,
      cells: { count, rpsVal, rpsCanvas, latVal, latCanvas, e4, e5, hit, upDot, upText },
      series: { rps: [], p50: [], p99: [] },
      haystack: [r.ApiName, r.ApiId, r.Stage, r.route].join(" ").toLowerCase(),
    };
    rows.set(key, row);
    return row;
  }

  function twoLine(td, main, sub) {
    if (td.childNodes.length !== 2) {
      td.textContent = "";
      td.append(el("span", "main"), el("span", "sub"));
    }
    setText(td.childNodes[0], main);
    setText(td.childNodes[1], sub);
  }

  function applyFilter() {
    const words = filterText.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = new Map();
    for (const row of rows.values()) {
      const ok = words.every((w) => row.haystack.includes(w));
      row.tr.hidden = !ok;
      shown.set(row.section, (shown.get(row.section) || 0) + (ok ? 1 : 0));
    }
    for (const [s, n] of shown) s.section.hidden = n === 0;
  }

  function setStatus(kind, text) {
    const status = $("status");
    status.className = "status " + kind;
    setText($("status-text"), text);
  }

  // ------------------------------------------------------------------ one answer
  function windowed(cur, old, dt, buckets) {
    const o = old || {};
    const hits = increase(o.CacheHitCount, cur.CacheHitCount);
    const misses = increase(o.CacheMissCount, cur.CacheMissCount);
    const lat = bucketIncrease(o.latency, cur.latency);
    const integ = bucketIncrease(o.integration, cur.integration);
    const e5 = increase(o["5XXError"], cur["5XXError"]);
    const requests = increase(o.Count, cur.Count);
    return {
      requests,
      rps: requests / dt,
      e4: increase(o["4XXError"], cur["4XXError"]) / dt,
      e5: e5 / dt,
      e5Share: requests > 0 ? e5 / requests : 0,
      hitRatio: hits + misses > 0 ? hits / (hits + misses) : null,
      p50: quantile(lat, 0.5, buckets),
      p99: quantile(lat, 0.99, buckets),
      upCalls: sum(integ) / dt,
      upP99: quantile(integ, 0.99, buckets),
    };
  }

  function updateRow(row, r, w) {
    const c = row.cells;
    row.tr.classList.remove("absent");
    setText(c.count, fmtCount(r.Count));
    if (w) {
      push(row.series.rps, w.rps);
      push(row.series.p50, w.p50);
      push(row.series.p99, w.p99);
    }
    setText(c.rpsVal, w ? fmtRate(w.rps) : "–");
    setText(c.latVal, w && w.p50 !== null ? fmtMs(w.p50) + " / " + fmtMs(w.p99) : "–");
    c.latVal.title = "since start: " + fmtMs(r.p50) + " / " + fmtMs(r.p99) + " ms";
    twoLine(c.e4, fmtCount(r["4XXError"]), w ? fmtRate(w.e4) + "/s" : "");
    twoLine(c.e5, fmtCount(r["5XXError"]), w ? fmtRate(w.e5) + "/s" : "");
    c.e4.classList.toggle("hot", !!w && w.e4 > 0);
    c.e5.classList.toggle("bad", !!w && w.e5 > 0);
    const lookups = r.CacheHitCount + r.CacheMissCount;
    if (lookups === 0) {
      twoLine(c.hit, "–", "no cache");
    } else {
      const ratio = w && w.hitRatio !== null ? w.hitRatio : r.CacheHitCount / lookups;
      twoLine(c.hit, (100 * ratio).toFixed(1) + " %", fmtCount(lookups) + " lookups");
    }
    // Upstream: IntegrationLatency counts backend responses; 5XX may also be a backend that
    // never answered (refused, timed out), so the dot follows the route's 5XX share.
    const answered = r.IntegrationCount > 0;
    const busy = !!w && w.requests > 0;
    let health = answered ? "idle" : "none";
    if (busy && w.e5Share >= 0.05) health = "bad";
    else if (busy && w.e5Share > 0) health = "warn";
    else if (busy && w.upCalls > 0) health = "ok";
    if (busy && w.upCalls > 0) {
      setText(c.upText, fmtRate(w.upCalls) + "/s · p99 " + fmtMs(w.upP99) + " ms");
    } else if (answered && !busy) {
      setText(c.upText, "idle · p99 " + fmtMs(r.integration_p99) + " ms");
    } else {
      setText(c.upText, "no backend responses");
    }
    c.upDot.className = "dot " + health;
    c.upDot.title = {
      none: "no backend response: MOCK, function or cache, or a backend that does not answer",
      idle: "no requests in the last seconds",
      ok: "backend responses and no 5XX in the last seconds",
      warn: "under 5 % 5XX in the last seconds",
      bad: "5 % or more 5XX in the last seconds",
    }[health];
  }

  function gauge(node, ...names) {
    for (const n of names) if (n in node.gauges) return node.gauges[n];
    return null;
  }

  // prev: the answer at the start of the rate window (null on the first answer).
  function updateNode(data, prev, dt) {
    const node = data.node;
    const g = node.gauges;
    const k = node.counters;
    let total = 0;
    for (const r of data.routes) total += r.Count;
    setText($("n-total"), "· " + fmtCount(total) + " requests since start");
    let rps = null;
    let e4 = null;
    let e5 = null;
    let thr = null;
    if (prev) {
      rps = 0;
      e4 = 0;
      e5 = 0;
      const before = prev.routes;
      for (const r of data.routes) {
        const o = before.get(routeKey(r)) || {};
        rps += increase(o.Count, r.Count) / dt;
        e4 += increase(o["4XXError"], r["4XXError"]) / dt;
        e5 += increase(o["5XXError"], r["5XXError"]) / dt;
      }
      if ("throttled" in k) thr = increase(prev.node.counters.throttled, k.throttled) / dt;
      push(nodeSeries.rps, rps);
      push(nodeSeries.e4, e4);
      push(nodeSeries.e5, e5);
      push(nodeSeries.thr, thr);
    }
    setText($("n-rps"), fmtRate(rps));
    setText($("n-4xx"), fmtRate(e4));
    setText($("n-5xx"), fmtRate(e5));
    setText($("n-thr"), "throttled" in k ? fmtRate(thr) + "/s" : "–");
    setText($("n-thr-total"), "throttled" in k ? fmtCount(k.throttled) + " since start" : "");
    setText($("n-quota"), "quota_refused" in k ? fmtCount(k.quota_refused) + " over quota" : "");
    setText($("n-conn"), fmtCount(gauge(node, "active_connections")));
    const inUse = gauge(node, "upstream_connections_in_use", "upstream_pool_in_use");
    const idle = gauge(node, "upstream_connections_idle", "upstream_pool_idle");
    setText($("n-up"), inUse === null ? "–" : fmtCount(inUse) + " in use");
    setText($("n-up-idle"), idle === null ? "" : fmtCount(idle) + " idle");
    setText($("n-cache"), "cache_entries" in g ? fmtCount(g.cache_entries) + " entries" : "–");
    setText($("n-cache-bytes"), "cache_bytes" in g ? fmtBytes(g.cache_bytes) : "");
    setText($("n-workers"), String(node.workers_reporting));
    setText($("n-stale"), node.stale_workers.length ? node.stale_workers.length + " stale" : "reporting");
    setText($("n-config"), "config_version" in g ? "config version " + fmtCount(g.config_version) : "");
    draw($("c-rps"), [{ values: nodeSeries.rps, color: COLORS.rps, fill: true }], "/s");
    draw(
      $("c-err"),
      [
        { values: nodeSeries.e4, color: COLORS.e4 },
        { values: nodeSeries.e5, color: COLORS.e5 },
        { values: nodeSeries.thr, color: COLORS.thr },
      ],
      "/s",
    );
    const kv = $("kv");
    const names = Object.keys(g).map((n) => [n, "gauge", g[n]]);
    for (const n of Object.keys(k)) names.push([n, "counter", k[n]]);
    names.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    if (kv.childNodes.length !== names.length) {
      kv.textContent = "";
      for (let i = 0; i < names.length; i++) {
        const tr = el("tr");
        tr.append(el("td"), el("td", "muted"), el("td", "num"));
        kv.append(tr);
      }
    }
    names.forEach(([n, kind, v], i) => {
      const cells = kv.childNodes[i].childNodes;
      setText(cells[0], n);
      setText(cells[1], kind);
      setText(cells[2], fmtCount(v));
    });
  }

  function render(data) {
    const current = { time: data.time, node: data.node, routes: new Map() };
    for (const r of data.routes) current.routes.set(routeKey(r), r);
    const last = samples[samples.length - 1];
    if (last && data.time <= last.time) return; // the same numbers again
    samples.push(current);
    while (samples.length > WINDOW + 1) samples.shift();
    const old = samples.length > 1 ? samples[0] : null;
    const dtWindow = old ? data.time - old.time : 0;

    const empty = $("empty");
    if (!data.route_metrics) {
      empty.hidden = false;
      setText(empty, "Per-route metrics are off (gateway.metrics: false); the node's own metrics are above.");
    } else if (!data.routes.length) {
      empty.hidden = false;
      setText(empty, "No routes counted yet.");
    } else {
      empty.hidden = true;
    }

    let added = false;
    const seen = new Set();
    for (const r of data.routes) {
      const key = routeKey(r);
      seen.add(key);
      added = added || !rows.has(key);
      const row = rowFor(r);
      const w = old ? windowed(r, old.routes.get(key), dtWindow, data.buckets) : null;
      updateRow(row, r, w);
    }
    for (const [key, row] of rows) if (!seen.has(key)) row.tr.classList.add("absent");
    if (added) applyFilter();
    updateNode(data, old, dtWindow);
    // Charts after the layout settled: canvases read their CSS size.
    for (const row of rows.values()) {
      if (row.tr.hidden) continue;
      draw(row.cells.rpsCanvas, [{ values: row.series.rps, color: COLORS.rps, fill: true }], "/s");
      draw(
        row.cells.latCanvas,
        [
          { values: row.series.p50, color: COLORS.p50 },
          { values: row.series.p99, color: COLORS.p99 },
        ],
        "ms",
      );
    }
    const stale = data.node.stale_workers.length ? " · " + data.node.stale_workers.length + " stale" : "";
    setStatus(
      "live",
      "live · " + data.node.workers_reporting + " workers" + stale + " · " + new Date(data.time * 1000).toLocaleTimeString(),
    );
  }

  // ------------------------------------------------------------------ polling
  async function poll() {
    const started = Date.now();
    try {
      const resp = await fetch(DATA_URL, { cache: "no-store", credentials: "same-origin" });
      if (resp.status === 401) {
        stopped = true;
        setStatus("error", "session expired: open /dashboard?token=ADMIN_TOKEN again");
        return;
      }
      const data = await resp.json();
      if (!resp.ok) {
        setStatus("error", data.message || "HTTP " + resp.status);
      } else if (data.version !== 1) {
        stopped = true;
        setStatus("error", "unknown data version " + data.version + ": reload the page");
        return;
      } else {
        render(data);
      }
    } catch (err) {
      setStatus("error", "admin API unreachable, retrying");
    } finally {
      if (!stopped) setTimeout(poll, Math.max(100, POLL_MS - (Date.now() - started)));
    }
  }

  function start() {
    $("filter").addEventListener("input", (ev) => {
      filterText = ev.target.value;
      applyFilter();
    });
    poll();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
