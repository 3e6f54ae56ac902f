// flor report: renders the JSON in #flor-data as a table, SVG charts, thumbnails and diffs.
// No library, no network. Every string from the data is escaped before it becomes markup.
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("flor-data").textContent);
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var W = 420, H = 250, M = {l: 52, r: 12, t: 8, b: 34};

  function esc(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;")
      .replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function show(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") return String(+value.toPrecision(6));
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  function colour(i) { return PALETTE[i % PALETTE.length]; }

  // -- header ------------------------------------------------------------------------
  document.getElementById("title").textContent = "flor report: " + DATA.title;
  document.getElementById("subtitle").textContent = DATA.rows.length + " runs, generated " +
    DATA.generated + (DATA.where ? ", where " + DATA.where : "");

  // -- runs table --------------------------------------------------------------------
  var table = document.getElementById("runs-table");
  var tbody = table.tBodies[0];
  var numeric = DATA.columns.map(function (_, c) {
    return DATA.rows.length > 0 && DATA.rows.every(function (r) {
      return r[c] === null || typeof r[c] === "number";
    });
  });
  table.tHead.innerHTML = "<tr>" + DATA.columns.map(function (c, i) {
    return '<th data-col="' + i + '">' + esc(c) + "</th>";
  }).join("") + "</tr>";
  var versionCol = DATA.columns.indexOf("version");
  function rowHtml(r) {
    return '<tr data-run="' + esc(r[0]) + '">' + r.map(function (v, c) {
      var text = esc(show(v));
      if (c === versionCol && v) text = '<a href="#version-' + esc(v) + '">' + text + "</a>";
      return numeric[c] ? '<td class="num">' + text + "</td>" : "<td>" + text + "</td>";
    }).join("") + "</tr>";
  }
  var rows = DATA.rows.slice();
  function fillTable() {
    tbody.innerHTML = rows.map(rowHtml).join("");
    applyFilter();
  }
  var sortCol = -1, sortDir = 1;
  table.tHead.addEventListener("click", function (e) {
    var th = e.target.closest("th");
    if (!th) return;
    var c = +th.getAttribute("data-col");
    sortDir = c === sortCol ? -sortDir : 1;
    sortCol = c;
    rows.sort(function (a, b) {
      var x = a[c], y = b[c];
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      if (typeof x === "number" && typeof y === "number") return (x - y) * sortDir;
      return show(x).localeCompare(show(y)) * sortDir;
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.className = +cell.getAttribute("data-col") === c ? (sortDir > 0 ? "asc" : "desc") : "";
    });
    fillTable();
  });
  var filter = document.getElementById("filter");
  var hiddenStyle = document.getElementById("hidden-runs");
  function applyFilter() {
    var needle = filter.value.trim().toLowerCase();
    var shown = 0, hidden = [];
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      var keep = !needle || tr.textContent.toLowerCase().indexOf(needle) >= 0;
      tr.className = keep ? "" : "hidden";
      if (keep) shown++; else hidden.push(tr.getAttribute("data-run"));
    });
    document.getElementById("count").textContent = shown + " of " + DATA.rows.length + " runs";
    // the charts and thumbnails of filtered-out runs are hidden too
    hiddenStyle.textContent = hidden.length ? hidden.map(function (run) {
      return '[data-run="' + CSS.escape(run) + '"]';
    }).join(",") + "{display:none}" : "";
  }
  filter.addEventListener("input", applyFilter);

  // -- charts ------------------------------------------------------------------------
  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || !isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    return [lo, hi];
  }
  function padded(r) { var p = (r[1] - r[0]) * 0.04; return [r[0] - p, r[1] + p]; }
  function ticks(lo, hi, count, integer) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
    var err = (hi - lo) / count / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    if (integer) step = Math.max(1, Math.round(step));
    var out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  function axes(xr, yr, xlabel, xticks, integer) {
    var sx = function (x) { return M.l + (x - xr[0]) / (xr[1] - xr[0]) * (W - M.l - M.r); };
    var sy = function (y) { return H - M.b - (y - yr[0]) / (yr[1] - yr[0]) * (H - M.t - M.b); };
    var svg = '<rect x="' + M.l + '" y="' + M.t + '" width="' + (W - M.l - M.r) + '" height="' +
      (H - M.t - M.b) + '" fill="none" stroke="#ccc"/>';
    ticks(yr[0], yr[1], 5).forEach(function (t) {
      svg += '<text x="' + (M.l - 4) + '" y="' + (sy(t) + 3) + '" text-anchor="end">' + show(t) +
        '</text><line x1="' + M.l + '" x2="' + (W - M.r) + '" y1="' + sy(t) + '" y2="' + sy(t) +
        '" stroke="#eee"/>';
    });
    var xt = xticks ? xticks.map(function (_, i) { return i; }) : ticks(xr[0], xr[1], 6, integer);
    xt.forEach(function (t) {
      svg += '<text x="' + sx(t) + '" y="' + (H - M.b + 13) + '" text-anchor="middle">' +
        esc(xticks ? xticks[t] : show(t)) + "</text>";
    });
    svg += '<text x="' + ((W + M.l) / 2) + '" y="' + (H - 4) + '" text-anchor="middle">' +
      esc(xlabel) + "</text>";
    return {svg: svg, sx: sx, sy: sy};
  }
  function xsOf(s) {
    if (s.x) return s.x;
    return s.y.map(function (_, i) { return i; });
  }
  function legend(items) {
    if (items.length > 12) return '<div class="legend note">' + items.length +
      " series (hover a line for its run)</div>";
    return '<div class="legend">' + items.map(function (item) {
      return '<span data-run="' + esc(item.run) + '"><i style="background:' + item.colour +
        '"></i>' + esc(item.label) + "</span>";
    }).join("") + "</div>";
  }
  function chart(name, kind, body, legendHtml) {
    return '<div class="chart" data-name="' + esc(name) + '" data-kind="' + kind + '"><h3>' +
      esc(name) + '</h3><svg width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H +
      '">' + body + "</svg>" + legendHtml + "</div>";
  }
  function curveChart(panel) {
    var xs = [], ys = [];
    panel.series.forEach(function (s) { xs = xs.concat(xsOf(s)); ys = ys.concat(s.y); });
    var curve = panel.kind === "curve";  // x: loop indices, whole numbers
    var a = axes(curve ? extent(xs) : padded(extent(xs)), padded(extent(ys)), panel.xlabel,
                 panel.xticks, curve);
    var body = a.svg, items = [];
    panel.series.forEach(function (s, i) {
      var x = xsOf(s), c = colour(i), pts = [], marks = "";
      for (var k = 0; k < s.y.length; k++) {
        if (s.y[k] === null) continue;
        var px = a.sx(x[k]).toFixed(1), py = a.sy(s.y[k]).toFixed(1);
        if (panel.kind === "curve") pts.push(px + "," + py);
        else marks += '<circle cx="' + px + '" cy="' + py + '" r="3" fill="' + c + '"/>';
      }
      var title = "<title>" + esc(s.label) + "</title>";
      body += panel.kind === "curve"
        ? '<polyline data-run="' + esc(s.run) + '" fill="none" stroke="' + c +
          '" stroke-width="1.5" points="' + pts.join(" ") + '">' + title + "</polyline>"
        : "<g>" + title + marks + "</g>";
      items.push({run: s.run, label: s.label, colour: c});
    });
    return chart(panel.name, panel.kind, body, legend(items));
  }
  function finalChart(name, arg, finals) {
    var runs = Object.keys(finals).filter(function (r) { return finals[r][0] !== null; });
    var raw = runs.map(function (r) { return (DATA.args[r] || {})[arg]; });
    var isNum = raw.every(function (v) { return typeof v === "number"; });
    var cats = isNum ? null : Array.from(new Set(raw.map(show))).sort();
    var xs = raw.map(function (v) { return isNum ? v : cats.indexOf(show(v)); });
    var ys = runs.map(function (r) { return finals[r][0]; });
    var xr = cats ? [-0.5, cats.length - 0.5] : padded(extent(xs));
    var a = axes(xr, padded(extent(ys)), arg, cats, false);
    var body = a.svg;
    runs.forEach(function (r, i) {
      body += '<circle data-run="' + esc(r) + '" cx="' + a.sx(xs[i]).toFixed(1) + '" cy="' +
        a.sy(ys[i]).toFixed(1) + '" r="3" fill="' + colour(finals[r][1] ? 1 : 0) + '"><title>' +
        esc(r + ": " + show(ys[i]) + (finals[r][1] ? " (replayed)" : "")) + "</title></circle>";
    });
    var marked = runs.some(function (r) { return finals[r][1]; });
    var items = [{run: "", label: "recorded", colour: colour(0)}];
    if (marked) items.push({run: "", label: "replayed", colour: colour(1)});
    return chart(name + " vs " + arg, "final", body, legend(items));
  }
  var curves = document.querySelector("#curves .charts");
  curves.innerHTML = DATA.panels.length ? DATA.panels.map(curveChart).join("")
    : '<p class="note">No numeric values logged.</p>';
  var finalsHtml = [];
  DATA.panels.forEach(function (panel) {
    var finals = DATA.finals[panel.name];
    if (panel.kind === "points") {  // a value per run: its points are the finals
      finals = {};
      DATA.rows.forEach(function (row) {
        var col = DATA.columns.indexOf(panel.name);
        if (col >= 0 && typeof row[col] === "number") finals[row[0]] = [row[col], false];
      });
    }
    DATA.differing.forEach(function (arg) { finalsHtml.push(finalChart(panel.name, arg, finals)); });
  });
  document.querySelector("#finals .charts").innerHTML = finalsHtml.length ? finalsHtml.join("")
    : '<p class="note">No arg differs between the runs.</p>';

  // -- images ------------------------------------------------------------------------
  var imgs = DATA.images.shown;
  document.querySelector("#images .thumbs").innerHTML = (imgs.length ? imgs.map(function (im) {
    var where = Object.keys(im.ctx).map(function (k) { return k + " " + im.ctx[k]; }).join(", ");
    return '<figure data-run="' + esc(im.run) + '"><img alt="' + esc(im.name) + '" src="' +
      esc(im.src) + '"><figcaption>' + esc(im.name) + (where ? " · " + esc(where) : "") +
      (im.replayed ? " (replayed)" : "") + "<br>" + esc(im.run) + "</figcaption></figure>";
  }).join("") : '<p class="note">No images logged.</p>') + (DATA.images.left_out
    ? '<p class="note">' + DATA.images.left_out + " more not embedded (flor export writes them all).</p>"
    : "");

  // -- code versions -----------------------------------------------------------------
  function diffHtml(text) {
    return text.split("\n").map(function (line) {
      var cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add"
        : line.startsWith("-") ? "del" : "";
      return cls ? '<span class="' + cls + '">' + esc(line) + "</span>" : esc(line);
    }).join("\n");
  }
  document.querySelector("#versions .versions").innerHTML = DATA.versions.map(function (v, i) {
    var head = esc(v.id) + " · commit " + esc(v.commit.slice(0, 12)) + " · " + v.runs.length +
      " run" + (v.runs.length === 1 ? "" : "s") + ": " + esc(v.runs.slice(0, 5).join(", ")) +
      (v.runs.length > 5 ? ", …" : "");
    var body = i === 0 ? '<p class="note">The first version.</p>'
      : v.diff_left_out ? '<p class="note">Diff left out to keep the page small: git diff ' +
        esc(DATA.versions[i - 1].commit.slice(0, 12) + " " + v.commit.slice(0, 12)) + "</p>"
      : v.diff ? '<pre class="diff">' + diffHtml(v.diff) + (v.diff_cut ? "\n…" : "") + "</pre>"
      : '<p class="note">Same files as the version before.</p>';
    return '<details id="version-' + esc(v.id) + '"><summary>' + head + "</summary>" + body +
      "</details>";
  }).join("");

  fillTable();
  // when the first frame with everything laid out is done (read by bench/bench_report.py)
  requestAnimationFrame(function () {
    setTimeout(function () { document.body.dataset.renderedMs = Math.round(performance.now()); });
  });
})();
