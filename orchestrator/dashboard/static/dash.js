// Draws a workflow's graph as SVG from dagre's layout (vendor/dagre.min.js).
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function draw(box) {
    if (!window.dagre) return;
    var nodes = JSON.parse(box.dataset.nodes || "[]");
    var edges = JSON.parse(box.dataset.edges || "[]");
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 50, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(function () { return {}; });
    nodes.forEach(function (n) { g.setNode(n.id, { width: Math.max(90, n.id.length * 8 + 24), height: 40, n: n }); });
    edges.forEach(function (e) { if (g.hasNode(e[0]) && g.hasNode(e[1])) g.setEdge(e[0], e[1]); });
    dagre.layout(g);
    var gr = g.graph();
    var svg = el("svg", { viewBox: "0 0 " + gr.width + " " + gr.height, width: gr.width, height: gr.height, role: "img" });
    var defs = el("defs", {}), m = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
    m.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z" })); defs.appendChild(m); svg.appendChild(defs);
    g.edges().forEach(function (e) {
      var pts = g.edge(e).points;
      svg.appendChild(el("path", { d: "M" + pts.map(function (p) { return p.x + "," + p.y; }).join(" L"), "marker-end": "url(#arrow)" }));
    });
    g.nodes().forEach(function (id) {
      var v = g.node(id), n = v.n;
      var grp = el("g", { "class": "node " + n.status.replace(/ /g, "-"), "data-task": n.id, "data-status": n.status });
      grp.appendChild(el("rect", { x: v.x - v.width / 2, y: v.y - v.height / 2, width: v.width, height: v.height, rx: 6 }));
      var t = el("text", { x: v.x, y: v.y - 6 }); t.textContent = n.id; grp.appendChild(t);
      var s = el("text", { x: v.x, y: v.y + 10, "class": "st" }); s.textContent = n.status; grp.appendChild(s);
      var node = grp;
      if (n.run) { var a = el("a", { href: "/runs/" + n.run }); a.appendChild(grp); node = a; }
      svg.appendChild(node);
    });
    box.replaceChildren(svg);
  }
  function drawAll(root) { (root || document).querySelectorAll(".dag").forEach(draw); }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (ev) { drawAll(ev.target); });
})();
