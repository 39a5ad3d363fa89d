// Compose: every field of the Draft, areas by searchable pickers (provinces and wards), by
// polygons and circles drawn on the map or typed, or both. Checks run as the user types
// (POST /api/check, debounced) and each problem is shown at its field (aria-invalid +
// aria-describedby). Saving (POST or PUT /api/drafts) leads to the preview.
import { ApiError, get, post, put } from "./api.js";
import { alertBox, circleText, errorText, label, polygonText, session } from "./common.js";
import { clear, debounce, fieldId, h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { Drawer, drawAreas, makeMap, provinceNames } from "./map.js";

const STATUSES = ["Actual", "Exercise", "Test"];
const URGENCIES = ["Immediate", "Expected", "Future", "Past", "Unknown"];
const SEVERITIES = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
const CERTAINTIES = ["Observed", "Likely", "Possible", "Unlikely", "Unknown"];
const CATEGORIES = ["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"];
const VN_OFFSET_MS = 7 * 3600 * 1000;

function emptyDraft() {
  const expires = new Date(Date.now() + 6 * 3600 * 1000);
  return {
    status: "Actual",
    msg_type: "Alert",
    event: "",
    urgency: "Immediate",
    severity: "Severe",
    certainty: "Likely",
    category: ["Met"],
    expires: toIso(toLocalInput(expires.toISOString())),
    infos: [{ language: "vi-VN", headline: "", description: "", instruction: "" }],
    areas: { regions: [], polygons: [], circles: [] },
  };
}

// datetime-local value (Viet Nam wall time) <-> ISO 8601 with +07:00
export function toLocalInput(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Date(date.getTime() + VN_OFFSET_MS).toISOString().slice(0, 16);
}

export function toIso(local) {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(local) ? `${local}:00+07:00` : "";
}

export function parsePolygons(text) {
  const shapes = [];
  const problems = [];
  lines(text).forEach((line, index) => {
    const points = line.split(/\s+/).map((pair) => pair.split(",").map(Number));
    const ok = points.length >= 3 && points.every((p) => p.length === 2 && p.every(Number.isFinite) && Math.abs(p[0]) <= 90 && Math.abs(p[1]) <= 180);
    if (ok) shapes.push(points);
    else problems.push({ field: `areas.polygons[${index}]`, message: t("bad_polygon", { line: index + 1 }) });
  });
  return { shapes, problems };
}

export function parseCircles(text) {
  const shapes = [];
  const problems = [];
  lines(text).forEach((line, index) => {
    const match = /^(-?[\d.]+),\s*(-?[\d.]+)\s+([\d.]+)$/.exec(line);
    const [lat, lon, radius] = match ? match.slice(1).map(Number) : [NaN, NaN, NaN];
    if (match && [lat, lon, radius].every(Number.isFinite) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180 && radius > 0) {
      shapes.push({ lat, lon, radius_km: radius });
    } else {
      problems.push({ field: `areas.circles[${index}]`, message: t("bad_circle", { line: index + 1 }) });
    }
  });
  return { shapes, problems };
}

function lines(text) {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}

// The form being written, so a language switch (which renders the page anew) keeps it
let current = null;

export async function composePage(main, draftId, { keep = false } = {}) {
  if (keep && current && current.draftId === (draftId || "")) {
    new Compose(main, current.draft, current.record, current.names, draftId).render();
    return;
  }
  replace(main, h("p", {}, t("loading")));
  let record = null;
  if (draftId) {
    try {
      record = await get(`/api/drafts/${encodeURIComponent(draftId)}`);
    } catch (err) {
      replace(main, alertBox(errorText(err)));
      return;
    }
  }
  if (record && !["draft", "returned"].includes(record.state)) {
    // awaiting approval or sent: nothing to edit here (an Update starts from the alert's page)
    location.hash = `#/preview/${encodeURIComponent(record.id)}`;
    return;
  }
  const draft = record ? structuredClone(record) : emptyDraft();
  draft.areas ??= { regions: [], polygons: [], circles: [] };
  draft.infos ??= [];
  const names = await provinceNames().catch(() => ({}));
  new Compose(main, draft, record, names, draftId).render();
}

class Compose {
  constructor(main, draft, record, names, draftId) {
    this.main = main;
    this.draft = draft;
    this.record = record;
    this.names = { ...names };
    current = { draftId: draftId || "", draft, record, names: this.names };
    this.touched = new Set();
    this.showAll = false;
    this.localProblems = [];
    this.searchProblems = [];
    this.serverProblems = [];
    this.warnings = [];
    this.check = debounce(() => this.runCheck(), 600);
    this.search = debounce((q) => this.runSearch(q), 250);
    this.errors = new Map(); // element id -> error element
  }

  title() {
    if (this.draft.msg_type === "Update") return t("compose_update_title");
    if (this.draft.msg_type === "Cancel") return t("compose_cancel_title");
    return t("compose_title");
  }

  render() {
    const d = this.draft;
    this.summary = h("div", { id: "problems", class: "problems", "aria-live": "polite" });
    this.status = h("p", { class: "notice", role: "status" });
    const en = d.infos.find((i) => i.language === "en-US");
    this.form = h(
      "form",
      { class: "compose", novalidate: true, onsubmit: (e) => this.save(e), oninput: (e) => this.changed(e), onchange: (e) => this.changed(e) },
      h("h1", {}, this.title()),
      h("p", { class: "intro" }, t("compose_intro")),
      this.record && this.record.return_reason ? alertBox(t("returned_reason", { reason: this.record.return_reason }), "warning") : null,
      this.summary,
      h(
        "fieldset",
        { class: "grid" },
        h("legend", {}, t("section_message")),
        this.select("status", "f_status", STATUSES, "status"),
        h("div", { class: "field" }, h("span", { class: "label" }, t("f_msg_type")), h("span", { id: fieldId("msg_type") }, label("msg", d.msg_type))),
        d.references && d.references.length
          ? h("div", { class: "field wide" }, h("span", { class: "label" }, t("f_references")), h("code", { id: fieldId("references") }, d.references.join(" ")))
          : null,
        this.input("event", "f_event", { value: d.event, placeholder: t("f_event_hint"), maxlength: 500, autocomplete: "off" }),
        this.select("urgency", "f_urgency", URGENCIES, "urgency"),
        this.select("severity", "f_severity", SEVERITIES, "severity"),
        this.select("certainty", "f_certainty", CERTAINTIES, "certainty"),
        this.categories(),
        this.input("expires", "f_expires", { type: "datetime-local", value: toLocalInput(d.expires) }),
      ),
      this.infoBlock(0, "vi-VN"),
      h(
        "p",
        { class: "field-inline" },
        h("input", { type: "checkbox", id: "with-en", checked: Boolean(en), onchange: (e) => this.toggleEnglish(e.target.checked) }),
        h("label", { for: "with-en" }, t("info_en_include")),
      ),
      (this.enSlot = h("div", {}, en ? this.infoBlock(d.infos.indexOf(en), "en-US") : null)),
      this.areaSection(),
      h("p", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "save" }, t("save_preview"))),
      this.status,
    );
    replace(this.main, this.form);
    this.view = makeMap(this.mapEl, { tileUrl: session.tile_url });
    this.drawer = new Drawer(this.view, (shape) => this.addShape(shape));
    this.redraw(true);
    this.lookupNames();
    if (this.record) {
      this.showAll = true;
      this.runCheck();
    }
  }

  // --- fields ---------------------------------------------------------------------------
  describe(path, control) {
    const id = fieldId(path);
    control.id = id;
    const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
    this.errors.set(id, { error, control });
    control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), `${id}-error`].filter(Boolean).join(" "));
    control.dataset.path = path;
    return error;
  }

  input(path, key, attrs) {
    const control = attrs.rows ? h("textarea", { ...attrs, value: undefined }) : h("input", { type: "text", ...attrs });
    if (attrs.rows) control.value = attrs.value || "";
    const error = this.describe(path, control);
    return h("div", { class: `field ${attrs.rows ? "wide" : ""}` }, h("label", { for: control.id }, t(key)), control, error);
  }

  select(path, key, values, prefix) {
    const control = h(
      "select",
      {},
      values.map((v) => h("option", { value: v, selected: this.draft[path] === v }, label(prefix, v))),
    );
    const error = this.describe(path, control);
    return h("div", { class: "field" }, h("label", { for: control.id }, t(key)), control, error);
  }

  categories() {
    const boxes = CATEGORIES.map((c) => {
      const id = `cat-${c}`;
      return h(
        "span",
        { class: "check" },
        h("input", { type: "checkbox", id, value: c, checked: (this.draft.category || []).includes(c), dataset: { path: "category", category: c } }),
        h("label", { for: id }, label("category", c)),
      );
    });
    const group = h("fieldset", { class: "field wide categories" }, h("legend", {}, t("f_category")), boxes);
    // the group's problem is described on its first box (a fieldset takes no aria-invalid)
    const first = boxes[0].querySelector("input");
    const id = fieldId("category");
    const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
    first.setAttribute("aria-describedby", `${id}-error`);
    group.id = id;
    this.errors.set(id, { error, control: first });
    group.append(error);
    return group;
  }

  infoBlock(index, language) {
    const info = this.draft.infos[index];
    const lang = language.slice(0, 2);
    return h(
      "fieldset",
      { class: "grid info", lang },
      h("legend", {}, language === "en-US" ? t("info_en") : t("info_vi")),
      this.input(`infos[${index}].headline`, "f_headline", { value: info.headline, maxlength: 2000, autocomplete: "off", class: "wide-input" }),
      this.input(`infos[${index}].description`, "f_description", { value: info.description, rows: 4 }),
      this.input(`infos[${index}].instruction`, "f_instruction", { value: info.instruction, rows: 3 }),
    );
  }

  toggleEnglish(on) {
    const infos = this.draft.infos;
    const at = infos.findIndex((i) => i.language === "en-US");
    if (on && at < 0) {
      infos.push({ language: "en-US", headline: "", description: "", instruction: "" });
      replace(this.enSlot, this.infoBlock(infos.length - 1, "en-US"));
    } else if (!on && at >= 0) {
      infos.splice(at, 1);
      clear(this.enSlot);
    }
    this.check();
  }

  areaSection() {
    const areas = this.draft.areas;
    this.results = h("ul", { class: "results", id: "region-results", "aria-live": "polite" });
    this.chosen = h("ul", { class: "chips", "aria-label": t("regions_chosen") });
    const searchBox = h("input", { type: "search", autocomplete: "off", placeholder: t("f_regions_search"), "aria-controls": "region-results" });
    searchBox.addEventListener("input", (e) => {
      e.stopPropagation();
      this.search(e.target.value.trim());
    });
    searchBox.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.results.querySelector("button")?.click();
      }
    });
    const searchError = this.describe("areas.regions", searchBox);
    this.searchBox = searchBox;
    this.polygonBox = h("textarea", { rows: 3, spellcheck: "false" });
    this.polygonBox.value = (areas.polygons || []).map(polygonText).join("\n");
    const polygonError = this.describe("areas.polygons", this.polygonBox);
    this.circleBox = h("textarea", { rows: 2, spellcheck: "false" });
    this.circleBox.value = (areas.circles || []).map(circleText).join("\n");
    const circleError = this.describe("areas.circles", this.circleBox);
    this.mapEl = h("div", { class: "map", id: "compose-map" });
    this.drawHelp = h("p", { class: "hint", "aria-live": "polite" });
    const areaError = h("p", { class: "field-error", id: `${fieldId("areas")}-error`, hidden: true });
    this.errors.set(fieldId("areas"), { error: areaError, control: searchBox });
    searchBox.setAttribute("aria-describedby", `${searchBox.getAttribute("aria-describedby")} ${fieldId("areas")}-error`);
    this.renderChosen();
    return h(
      "fieldset",
      { class: "areas", id: fieldId("areas") },
      h("legend", {}, t("section_area")),
      areaError,
      h(
        "div",
        { class: "area-grid" },
        h(
          "div",
          { class: "area-inputs" },
          h("div", { class: "field wide" }, h("label", { for: searchBox.id }, t("f_regions")), searchBox, searchError, this.results, h("p", { class: "label" }, t("regions_chosen")), this.chosen),
          h("div", { class: "field wide" }, h("label", { for: this.polygonBox.id }, t("f_polygons")), this.polygonBox, polygonError),
          h("div", { class: "field wide" }, h("label", { for: this.circleBox.id }, t("f_circles")), this.circleBox, circleError),
        ),
        h(
          "div",
          { class: "area-map" },
          h(
            "div",
            { class: "toolbar" },
            h("button", { type: "button", id: "draw-polygon", onclick: () => this.startDrawing("polygon") }, t("draw_polygon")),
            h("button", { type: "button", id: "draw-finish", onclick: () => this.drawer.finish() }, t("draw_finish")),
            h("button", { type: "button", id: "draw-circle", onclick: () => this.startDrawing("circle") }, t("draw_circle")),
            h("button", { type: "button", id: "draw-clear", onclick: () => this.clearShapes() }, t("draw_clear")),
          ),
          this.drawHelp,
          this.mapEl,
        ),
      ),
    );
  }

  startDrawing(mode) {
    this.drawer.start(mode);
    this.drawHelp.textContent = mode === "polygon" ? t("draw_help_polygon") : t("draw_help_circle");
  }

  addShape(shape) {
    const box = shape.polygon ? this.polygonBox : this.circleBox;
    const line = shape.polygon ? polygonText(shape.polygon) : circleText(shape.circle);
    box.value = [box.value.trim(), line].filter(Boolean).join("\n");
    this.drawHelp.textContent = "";
    this.touched.add(box.id);
    this.readAreas();
    this.redraw(false);
    this.check();
  }

  clearShapes() {
    this.polygonBox.value = "";
    this.circleBox.value = "";
    this.drawer.start("");
    this.readAreas();
    this.redraw(false);
    this.check();
  }

  renderChosen() {
    const codes = this.draft.areas.regions;
    replace(
      this.chosen,
      codes.length
        ? codes.map((code, i) =>
            h(
              "li",
              { class: "chip", id: `region-${i}` },
              h("span", {}, this.names[code] ? `${this.names[code]} (${code})` : code),
              h("button", { type: "button", "aria-label": t("region_remove", { name: this.names[code] || code }), onclick: () => this.removeRegion(code) }, "×"),
            ),
          )
        : h("li", { class: "empty" }, t("regions_empty")),
    );
  }

  async runSearch(q) {
    if (!q) {
      clear(this.results);
      this.searchProblems = [];
      this.showProblems();
      return;
    }
    let found = [];
    try {
      found = await get(`/api/regions?q=${encodeURIComponent(q)}&limit=20`);
    } catch (err) {
      replace(this.results, h("li", {}, errorText(err)));
      return;
    }
    this.searchProblems = found.length ? [] : [{ field: "areas.regions", message: t("regions_none", { q }) }];
    this.touched.add(fieldId("areas.regions"));
    this.showProblems();
    if (!found.length) {
      clear(this.results);
      return;
    }
    replace(
      this.results,
      found.map((r) => {
        this.names[r.code] = r.name;
        const province = r.kind === "ward" && this.names[r.province] ? ` — ${this.names[r.province]}` : "";
        return h(
          "li",
          {},
          h("button", { type: "button", class: "result", dataset: { code: r.code }, onclick: () => this.addRegion(r.code) }, `${r.name}${province} (${r.code}, ${t(`kind_${r.kind}`)})`),
        );
      }),
    );
  }

  // names of prefilled wards, which the outlines do not carry
  async lookupNames() {
    for (const code of this.draft.areas.regions) {
      if (this.names[code]) continue;
      try {
        const found = await get(`/api/regions?q=${encodeURIComponent(code)}&limit=1`);
        for (const r of found) this.names[r.code] = r.name;
      } catch {
        return;
      }
    }
    this.renderChosen();
  }

  addRegion(code) {
    const regions = this.draft.areas.regions;
    if (!regions.includes(code)) regions.push(code);
    this.touched.add(fieldId("areas.regions"));
    this.renderChosen();
    clear(this.results);
    this.searchBox.value = "";
    this.searchBox.focus();
    this.redraw(true);
    this.check();
  }

  removeRegion(code) {
    this.draft.areas.regions = this.draft.areas.regions.filter((c) => c !== code);
    this.renderChosen();
    this.redraw(false);
    this.check();
  }

  redraw(fit) {
    drawAreas(this.view, this.draft.areas, { fit });
  }

  // --- reading the form -----------------------------------------------------------------
  changed(event) {
    const target = event.target;
    const path = target.dataset.path;
    if (!path) return;
    this.touched.add(target.id || fieldId(path));
    if (path === "category") {
      this.draft.category = [...this.form.querySelectorAll("input[data-path=category]")].filter((b) => b.checked).map((b) => b.value);
      this.touched.add(fieldId("category"));
    } else if (path === "expires") {
      this.draft.expires = toIso(target.value);
    } else if (path.startsWith("infos[")) {
      const [, index, key] = /^infos\[(\d+)\]\.(\w+)$/.exec(path);
      this.draft.infos[Number(index)][key] = target.value;
    } else if (path === "areas.polygons" || path === "areas.circles") {
      this.readAreas();
      if (event.type === "change") this.redraw(false);
    } else if (path !== "areas.regions") {
      this.draft[path] = target.value;
    }
    this.check();
  }

  readAreas() {
    const polygons = parsePolygons(this.polygonBox.value);
    const circles = parseCircles(this.circleBox.value);
    this.draft.areas.polygons = polygons.shapes;
    this.draft.areas.circles = circles.shapes;
    this.localProblems = [...polygons.problems, ...circles.problems];
    if (!this.draft.expires) this.localProblems.push({ field: "expires", message: t("bad_expires") });
  }

  body() {
    const d = this.draft;
    const body = {
      status: d.status,
      msg_type: d.msg_type,
      event: d.event,
      urgency: d.urgency,
      severity: d.severity,
      certainty: d.certainty,
      category: d.category,
      expires: d.expires,
      infos: d.infos.map((i) => ({ language: i.language, headline: i.headline, description: i.description, instruction: i.instruction })),
      areas: { regions: d.areas.regions, polygons: d.areas.polygons, circles: d.areas.circles },
    };
    if (d.references && d.references.length) body.references = d.references;
    return body;
  }

  // --- checks ---------------------------------------------------------------------------
  async runCheck() {
    this.readAreas();
    try {
      const answer = await post("/api/check", this.body());
      this.serverProblems = answer.problems || [];
      this.warnings = answer.warnings || [];
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        this.serverProblems = err.problems;
      } else {
        this.serverProblems = [];
        this.status.textContent = errorText(err);
      }
    }
    this.showProblems();
  }

  // The element a problem belongs to: its own path, else the nearest enclosing one
  elementFor(field) {
    let path = field;
    while (path) {
      const id = fieldId(path);
      if (this.errors.has(id)) return id;
      const shorter = path.replace(/(\[\d+\]|\.[^.[\]]+)$/, "");
      if (shorter === path) break;
      path = shorter;
    }
    return null;
  }

  showProblems() {
    const problems = [...this.localProblems, ...this.searchProblems, ...this.serverProblems];
    const byElement = new Map();
    const unplaced = [];
    for (const p of problems) {
      const id = this.elementFor(p.field || "");
      if (id) byElement.set(id, [...(byElement.get(id) || []), p.message]);
      else unplaced.push(p.message);
    }
    let shown = 0;
    const invalid = new Set(); // one control may carry two errors (the regions picker: its own, the area's)
    for (const [id, { error, control }] of this.errors) {
      const messages = byElement.get(id);
      const visible = messages && (this.showAll || this.touched.has(id) || this.touched.has(control.id));
      error.hidden = !visible;
      error.textContent = visible ? messages.join(" ") : "";
      if (visible) {
        invalid.add(control);
        shown += 1;
      }
    }
    for (const { control } of this.errors.values()) {
      if (invalid.has(control)) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    }
    const items = [];
    if (this.showAll) {
      for (const [id, messages] of byElement) {
        const target = this.errors.get(id).control;
        const name = this.form.querySelector(`label[for="${target.id}"]`)?.textContent || this.form.querySelector(`#${id} legend`)?.textContent || "";
        const go = (e) => {
          e.preventDefault();
          target.focus();
        };
        items.push(h("li", {}, h("a", { href: `#${target.id}`, onclick: go }, name ? `${name}: ${messages.join(" ")}` : messages.join(" "))));
      }
    }
    // a problem of the alert as a whole has no field: it is listed at once
    for (const m of unplaced) items.push(h("li", {}, m));
    const warnings = this.warnings.map((w) => h("li", {}, w.message || w.code));
    replace(
      this.summary,
      items.length ? h("div", { class: "notice notice-error" }, h("h2", {}, t("problems_title", { n: items.length })), h("ul", {}, items)) : null,
      warnings.length ? h("div", { class: "notice notice-warning" }, h("h2", {}, t("warnings_title")), h("ul", {}, warnings)) : null,
    );
    return shown + unplaced.length;
  }

  async save(event) {
    event.preventDefault();
    this.showAll = true;
    this.readAreas();
    if (this.localProblems.length) {
      this.serverProblems = [];
      this.showProblems();
      this.summary.querySelector("a")?.focus();
      return;
    }
    const button = this.form.querySelector("#save");
    button.disabled = true;
    this.status.textContent = t("checking");
    try {
      const editable = this.record && ["draft", "returned"].includes(this.record.state);
      const saved = editable ? await put(`/api/drafts/${encodeURIComponent(this.record.id)}`, this.body()) : await post("/api/drafts", this.body());
      this.status.textContent = t("saved");
      location.hash = `#/preview/${encodeURIComponent(saved.id)}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        this.serverProblems = err.problems;
        this.status.textContent = "";
        this.showProblems();
        this.summary.querySelector("a")?.focus();
      } else {
        this.status.textContent = errorText(err);
      }
    } finally {
      button.disabled = false;
    }
  }
}
