// meshrun's dashboard: the event graph of the fleet, live, over the websocket `/live` of the page's
// own origin (the protocol: docs/dashboard.md). No framework: the graph is drawn once per `graph`
// message, and `state` messages only change the attributes and texts of what is drawn, at most
// once a frame.
//
// Hooks for scripts and tests: data-pin="NODE.PIN" (data-level), data-channel="NODE.CHANNEL"
// (data-count), data-rule="NODE.INDEX" (data-fired), data-link="NODE.EDGE" (data-state), and
// window.meshrunDashboard (below).
"use strict";

(() => {
  const TOKEN_KEY = "meshrun.token";
  const BACKOFF_FIRST = 500;  // ms, then doubled up to
  const BACKOFF_LAST = 5000;
  const FLASH_MS = 300;

  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  // What scripts read: the last state's seq, whether the socket is open with the graph, the sum of
  // every channel's count, the state messages received, and both per second over the last second.
  const dashboard = {
    status: "connecting",
    connected: false,
    mesh: "",
    seq: 0,
    totals: { messages: 0 },
    updates: 0,
    frames: 0,
    rates: { updates: 0, messages: 0 },
  };
  window.meshrunDashboard = dashboard;

  let graph = null;  // the last `graph` message
  let model = {};    // node -> {pins, variables, channels, rules, links}: every state so far, merged
  let view = null;   // what is drawn: element maps, see draw()
  let socket = null;
  let denied = false;
  let backoff = BACKOFF_FIRST;
  let reconnectTimer = 0;
  let frameRequested = false;
  let nextDriveId = 1;
  const drives = new Map();  // id -> "NODE.PIN = LEVEL", until answered
  let updatesFrom = 0;       // dashboard.updates a second ago
  let countsFrom = null;     // dashboard.totals.messages a second ago (null: no state yet)

  // ---- the socket ------------------------------------------------------------------------------

  function liveUrl() {
    const url = new URL("live", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    denied = false;
    if (dashboard.status === "reconnecting") setStatus("reconnecting", "reconnecting…");
    const ws = new WebSocket(liveUrl());
    socket = ws;
    ws.onopen = () => {
      const hello = { type: "hello" };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token !== null) hello.token = token;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("meshrun: not JSON:", event.data);
        return;
      }
      receive(message);
    };
    ws.onclose = () => {
      if (ws !== socket) return;
      socket = null;
      dashboard.connected = false;
      $("board").classList.add("offline");
      if (denied) return;  // the token form reconnects
      setStatus("reconnecting", `reconnecting in ${(backoff / 1000).toFixed(1)} s`);
      reconnectTimer = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, BACKOFF_LAST);
    };
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function receive(message) {
    switch (message.type) {
      case "graph":
        backoff = BACKOFF_FIRST;
        hideTokenForm();
        graph = message;
        model = {};
        dashboard.seq = 0;
        dashboard.totals.messages = 0;
        countsFrom = null;  // messages/s: from the first state's counts, not from 0
        dashboard.connected = true;
        dashboard.mesh = message.mesh || "";
        setStatus("connected", "connected");
        $("board").classList.remove("offline");
        draw();
        break;
      case "state":
        applyState(message);
        break;
      case "drove":
        droveAnswer(message);
        break;
      case "denied":
        denied = true;
        onDenied(message.error);
        break;
      default:
        break;  // a newer engine's message: nothing to do with it
    }
  }

  function setStatus(status, text) {
    dashboard.status = status;
    const el = $("status");
    el.dataset.status = status;
    el.textContent = text;
  }

  // ---- the token -------------------------------------------------------------------------------

  function onDenied(error) {
    const hadToken = sessionStorage.getItem(TOKEN_KEY) !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    dashboard.connected = false;
    setStatus("denied", "denied");
    $("empty").hidden = true;
    const form = $("token-form");
    $("token-error").textContent = hadToken ? `Denied: ${error || "wrong token"}` : "";
    form.hidden = false;
    $("token").value = "";
    $("token").focus();
  }

  function hideTokenForm() {
    $("token-form").hidden = true;
    $("token-error").textContent = "";
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token-form").hidden = true;
    $("empty").hidden = false;
    setStatus("connecting", "connecting");
    if (socket) socket.close();
    socket = null;
    connect();
  });

  // ---- state -----------------------------------------------------------------------------------

  const PARTS = ["pins", "variables", "channels", "rules", "links"];

  // A full state replaces the model; a partial one changes what it names: a pin's level, a
  // variable's value or a rule's count replaced, a channel's or link's fields merged.
  function applyState(message) {
    dashboard.updates += 1;
    dashboard.seq = message.seq;
    if (message.full) model = {};
    for (const [name, changes] of Object.entries(message.nodes || {})) {
      const node = (model[name] ||= { pins: {}, variables: {}, channels: {}, rules: {}, links: {} });
      for (const part of PARTS) {
        for (const [key, value] of Object.entries(changes[part] || {})) {
          const old = node[part][key];
          node[part][key] = value !== null && typeof value === "object" && old ? Object.assign(old, value) : value;
        }
      }
    }
    let messages = 0;
    for (const node of Object.values(model)) {
      for (const channel of Object.values(node.channels)) messages += channel.count || 0;
    }
    dashboard.totals.messages = messages;
    requestRender();
  }

  function requestRender() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(render);
  }

  // ---- drawing the graph -----------------------------------------------------------------------

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Columns by the longest path of sends that reaches a node (a send back to an earlier node, in
  // a cycle, does not count); in a column, nodes in the order of their senders; a column taller
  // than about the square root of the fleet is split into several, side by side.
  function layout(nodes) {
    const index = new Map(nodes.map((n, i) => [n.name, i]));
    const targets = nodes.map((n) => [...new Set((n.edges || []).map((e) => index.get(e.node))
      .filter((t) => t !== undefined && t !== index.get(n.name)))]);
    // Depth-first: the post-order, reversed, ranks every node after its senders but for back edges.
    const mark = new Array(nodes.length).fill(0);  // 0 new, 1 on the path, 2 done
    const order = [];
    const back = new Set();
    const visit = (i) => {
      mark[i] = 1;
      for (const t of targets[i]) {
        if (mark[t] === 1) back.add(`${i}>${t}`);
        else if (mark[t] === 0) visit(t);
      }
      mark[i] = 2;
      order.push(i);
    };
    nodes.forEach((_, i) => { if (mark[i] === 0) visit(i); });
    order.reverse();
    const rank = new Array(nodes.length).fill(0);
    for (const i of order) {
      for (const t of targets[i]) if (!back.has(`${i}>${t}`)) rank[t] = Math.max(rank[t], rank[i] + 1);
    }
    const columns = [];
    nodes.forEach((_, i) => (columns[rank[i]] ||= []).push(i));
    // Order each column by the mean row of its senders in the columns before it.
    const row = new Array(nodes.length).fill(0);
    const senders = nodes.map(() => []);
    targets.forEach((ts, i) => ts.forEach((t) => senders[t].push(i)));
    const out = [];
    const tallest = Math.max(3, Math.ceil(Math.sqrt(nodes.length)));
    for (const column of columns.filter(Boolean)) {
      const weight = (i) => {
        const before = senders[i].filter((s) => rank[s] < rank[i]);
        return before.length ? before.reduce((a, s) => a + row[s], 0) / before.length : row[i];
      };
      column.forEach((i, r) => (row[i] = r));
      column.sort((a, b) => weight(a) - weight(b));
      for (let start = 0; start < column.length; start += tallest) {
        const part = column.slice(start, start + tallest);
        part.forEach((i, r) => (row[i] = r));
        out.push(part);
      }
    }
    return out;
  }

  function pinTitle(node, pin, clickable, level) {
    const where = pin.chip ? ` (${pin.chip} ${pin.line})` : "";
    if (!node.here) return `${node.name}.${pin.name}: not run in this process`;
    if (pin.direction === "output") return `${node.name}.${pin.name}: an output${where}, written by the node's rules; not driven from the page`;
    if (!clickable) return `${node.name}.${pin.name}: a real input${where}, read from its line; never driven from the page`;
    return `${node.name}.${pin.name}: a simulated input; click to drive it to ${level === 1 ? 0 : 1}`;
  }

  function draw() {
    const columnsEl = $("columns");
    for (const column of columnsEl.querySelectorAll(".column")) column.remove();
    for (const old of $("wires").querySelectorAll(".wire")) old.remove();
    $("mesh").textContent = graph.mesh || "";
    document.title = graph.mesh ? `${graph.mesh} · meshrun` : "meshrun";
    const nodes = graph.nodes || [];
    $("empty").hidden = nodes.length > 0;
    view = { pins: new Map(), variables: new Map(), channels: new Map(), rules: new Map(), links: [], boxes: new Map() };

    for (const column of layout(nodes)) {
      const columnEl = el("div", "column");
      for (const i of column) columnEl.append(drawNode(nodes[i]));
      columnsEl.append(columnEl);
    }
    for (const node of nodes) {
      (node.edges || []).forEach((edge, e) => {
        const g = document.createElementNS(SVG, "g");
        g.setAttribute("class", "wire");
        g.dataset.link = `${node.name}.${e}`;
        g.dataset.state = "";
        const path = document.createElementNS(SVG, "path");
        path.setAttribute("class", "line");
        path.setAttribute("marker-end", "url(#arrow-none)");
        const text = document.createElementNS(SVG, "text");
        text.setAttribute("text-anchor", "middle");
        const title = document.createElementNS(SVG, "title");
        g.append(path, text, title);
        $("wires").append(g);
        view.links.push({ node, e, edge, g, path, text, title, shown: null });
      });
    }
    drawWires();
    requestRender();
  }

  function drawNode(node) {
    const box = el("section", "node");
    box.dataset.node = node.name;
    if (!node.here) {
      box.classList.add("away");
      box.title = `${node.name} does not run in this process`;
    }
    view.boxes.set(node.name, box);
    const header = el("header");
    header.append(el("span", "name", node.name),
                  el("span", node.simulated ? "badge sim" : "badge real", node.simulated ? "simulated" : "real pins"));
    box.append(header, el("div", "address", node.address || "client (no port)"));

    const pins = el("div", "pins");
    for (const pin of node.pins || []) {
      const clickable = node.here && node.simulated && pin.direction === "input";
      const p = el(clickable ? "button" : "div", `pin ${pin.direction}`);
      if (clickable) p.type = "button";
      p.dataset.pin = `${node.name}.${pin.name}`;
      p.dataset.level = "";
      p.title = pinTitle(node, pin, clickable, null);
      p.append(el("span", "lamp"), el("span", "pname", pin.name), el("span", "dir", pin.direction === "input" ? "in" : "out"));
      if (clickable) p.addEventListener("click", () => drive(node, pin, p));
      pins.append(p);
      view.pins.set(p.dataset.pin, { node, pin, el: p, clickable, shown: undefined });
    }
    if (pins.childElementCount) box.append(pins);

    const variables = el("dl", "variables");
    for (const name of node.variables || []) {
      const value = el("dd", "value");
      value.dataset.variable = `${node.name}.${name}`;
      variables.append(el("dt", "", name), value);
      view.variables.set(`${node.name}.${name}`, { el: value, shown: undefined });
    }
    if (variables.childElementCount) box.append(variables);

    for (const source of node.sources || []) {
      const s = el("div", `source source-${source.kind}`);
      const head = el("div", "head");
      head.append(el("span", "kind", source.kind), el("span", "what", source.name));
      s.append(head);
      if (source.kind === "channel") {
        const count = el("span", "count", "0");
        const last = el("ol", "last");
        head.append(count);
        s.append(last);
        s.dataset.channel = `${node.name}.${source.name}`;
        s.dataset.count = "0";
        view.channels.set(s.dataset.channel, { el: s, count, last, shown: undefined, lastShown: undefined });
      }
      const rules = el("ul", "rules");
      for (const rule of source.rules || []) {
        const r = el("li", "rule");
        r.dataset.rule = `${node.name}.${rule.index}`;
        r.dataset.fired = "0";
        r.title = rule.line ? `line ${rule.line}: ${rule.label}` : rule.label;
        const fired = el("span", "fired", "0");
        r.append(el("span", "label", rule.label), fired);
        rules.append(r);
        view.rules.set(r.dataset.rule, { el: r, fired, shown: undefined });
      }
      if (rules.childElementCount) s.append(rules);
      box.append(s);
    }
    return box;
  }

  function drive(node, pin, p) {
    const level = p.dataset.level === "1" ? 0 : 1;
    const id = nextDriveId++;
    if (!send({ type: "drive", id, node: node.name, pin: pin.name, level })) {
      toast(`${node.name}.${pin.name}: not connected`);
      return;
    }
    drives.set(id, `${node.name}.${pin.name} = ${level}`);
  }

  function droveAnswer(message) {
    const what = drives.get(message.id) || "drive";
    drives.delete(message.id);
    if (!message.ok) toast(`${what}: ${message.error || "refused"}`);
  }

  function toast(text) {
    const t = el("div", "toast", text);
    t.setAttribute("role", "status");
    $("toasts").append(t);
    setTimeout(() => t.remove(), 5000);
  }

  // ---- the wires -------------------------------------------------------------------------------

  // Each send, from the right side of its node's box (the node's edges spread along it) to the
  // left side of the target's channel, as a cubic curve; its label halfway: the link's state and
  // what it has queued.
  function drawWires() {
    if (!view) return;
    const board = $("columns").getBoundingClientRect();
    const svg = $("wires");
    svg.setAttribute("width", $("columns").scrollWidth);
    svg.setAttribute("height", $("columns").scrollHeight);
    const perNode = new Map();
    for (const link of view.links) perNode.set(link.node.name, (perNode.get(link.node.name) || 0) + 1);
    const seen = new Map();
    for (const link of view.links) {
      const from = view.boxes.get(link.node.name).getBoundingClientRect();
      const channel = view.channels.get(`${link.edge.node}.${link.edge.channel}`);
      const targetBox = view.boxes.get(link.edge.node);
      if (!targetBox) continue;
      const to = (channel ? channel.el : targetBox).getBoundingClientRect();
      const k = seen.get(link.node.name) || 0;
      seen.set(link.node.name, k + 1);
      const x1 = from.right - board.left;
      const y1 = from.top - board.top + (from.height * (k + 1)) / (perNode.get(link.node.name) + 1);
      const x2 = to.left - board.left - 1;
      const y2 = to.top - board.top + Math.min(to.height / 2, 14);
      const reach = Math.max(40, Math.abs(x2 - x1) / 2);
      link.path.setAttribute("d", `M${x1},${y1} C${x1 + reach},${y1} ${x2 - reach},${y2} ${x2},${y2}`);
      // The curve's middle (t = 1/2) holds the label, just above it.
      link.text.setAttribute("x", (x1 + x2) / 2);
      link.text.setAttribute("y", (y1 + y2) / 2 - 6);
    }
  }

  // ---- rendering a frame -----------------------------------------------------------------------

  function render() {
    frameRequested = false;
    if (!view) return;
    dashboard.frames += 1;
    $("seq").textContent = dashboard.seq ? String(dashboard.seq) : "–";
    $("messages").textContent = dashboard.totals.messages.toLocaleString("en");

    for (const item of view.pins.values()) {
      const level = model[item.node.name]?.pins[item.pin.name];
      const known = level === 0 || level === 1 ? level : null;
      if (known === item.shown) continue;
      item.shown = known;
      item.el.dataset.level = known === null ? "" : String(known);
      item.el.title = pinTitle(item.node, item.pin, item.clickable, known);
    }
    for (const [key, item] of view.variables) {
      const dot = key.indexOf(".");
      const value = model[key.slice(0, dot)]?.variables[key.slice(dot + 1)];
      if (value === undefined || value === item.shown) continue;
      if (item.shown !== undefined) flash(item.el);
      item.shown = value;
      item.el.textContent = value === "" ? "(empty)" : value;
      item.el.title = value;
    }
    for (const [key, item] of view.channels) {
      const dot = key.indexOf(".");
      const channel = model[key.slice(0, dot)]?.channels[key.slice(dot + 1)];
      if (!channel) continue;
      const count = channel.count || 0;
      if (count !== item.shown) {
        item.shown = count;
        item.el.dataset.count = String(count);
        item.count.textContent = count.toLocaleString("en");
      }
      const last = channel.last || [];
      if (last !== item.lastShown) {
        item.lastShown = last;
        item.last.replaceChildren(...last.map((m) => {
          const li = el("li", "", m === "" ? "(empty)" : m);
          li.title = m;
          return li;
        }));
      }
    }
    for (const [key, item] of view.rules) {
      const dot = key.lastIndexOf(".");
      const fired = model[key.slice(0, dot)]?.rules[key.slice(dot + 1)];
      if (typeof fired !== "number" || fired === item.shown) continue;
      if (item.shown !== undefined && fired > item.shown) flash(item.el);
      item.shown = fired;
      item.el.dataset.fired = String(fired);
      item.fired.textContent = fired.toLocaleString("en");
    }
    for (const link of view.links) {
      const state = model[link.node.name]?.links[String(link.e)];
      const shown = state ? `${state.state}|${state.queued}|${state.sent}|${state.dropped}|${state.why}` : "";
      if (shown === link.shown) continue;
      link.shown = shown;
      const name = state ? state.state : "";
      link.g.dataset.state = name;
      link.g.dataset.queued = state ? String(state.queued || 0) : "";
      link.path.setAttribute("marker-end", `url(#arrow-${name || "none"})`);
      // Every state said in a small graph; in a larger one, what is not `up` (green) only.
      const said = state && (state.queued || name !== "up" || view.links.length <= 8);
      link.text.textContent = !said ? "" : state.queued ? `${name} · ${state.queued} queued` : name;
      link.title.textContent = `${link.node.name} → ${link.edge.node}/${link.edge.channel}` + (state
        ? `: ${name}${state.why ? ` (${state.why})` : ""}; sent ${state.sent}, acknowledged ${state.acked}, dropped ${state.dropped}`
        : "");
    }
    drawWires();
  }

  function flash(e) {
    e.animate([{ backgroundColor: "var(--flash)", boxShadow: "0 0 0 1px var(--accent)" }, {}],
              { duration: FLASH_MS, easing: "ease-out" });
  }

  // The figures per second, over the last second.
  setInterval(() => {
    dashboard.rates.updates = dashboard.updates - updatesFrom;
    updatesFrom = dashboard.updates;
    const messages = dashboard.totals.messages;
    dashboard.rates.messages = countsFrom === null ? 0 : Math.max(0, messages - countsFrom);
    countsFrom = dashboard.connected && dashboard.seq > 0 ? messages : null;
    $("update-rate").textContent = String(dashboard.rates.updates);
    $("message-rate").textContent = dashboard.rates.messages.toLocaleString("en");
  }, 1000);

  new ResizeObserver(() => drawWires()).observe($("columns"));
  connect();
})();
