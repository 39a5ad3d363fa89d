// What every page shares: the session, error messages, the summary of a draft as it will be
// sent, and the count tables.
import { get } from "./api.js";
import { h } from "./dom.js";
import { formatNumber, t } from "./i18n.js";

export const session = { user: "", agency: "", roles: [], csrf: "", tile_url: "" };

export function hasRole(role) {
  return session.roles.includes(role);
}

// Names of the regions of a draft: provinces from the outlines, wards asked of the server
export async function regionNames(codes, names) {
  const found = { ...names };
  for (const code of codes || []) {
    if (found[code]) continue;
    try {
      for (const r of await get(`/api/regions?q=${encodeURIComponent(code)}&limit=1`)) found[r.code] = r.name;
    } catch {
      break; // names are a courtesy: the codes stay
    }
  }
  return found;
}

export function errorText(err) {
  if (!err || err.status === 0) return t("error_network");
  if (err.status === 404) return t("error_not_found");
  if (err.code === "csrf") return t("error_csrf");
  if (err.code === "role") return t("error_role");
  if (err.code === "second_person") return t("error_second_person");
  return t("error_generic", { message: err.message || err.code || String(err.status) });
}

export function alertBox(text, kind = "error") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function label(prefix, value) {
  if (value === undefined || value === null || value === "") return "—";
  const key = `${prefix}_${value}`;
  const text = t(key);
  return text === key ? String(value) : text;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(document.documentElement.lang === "en" ? "en-GB" : "vi-VN", {
    dateStyle: "short",
    timeStyle: "short",
    timeZone: "Asia/Ho_Chi_Minh",
  }).format(date);
}

// Exactly the fields the server will sign, read-only, every value as text.
export function draftSummary(draft, names = {}) {
  const row = (key, value) => [h("dt", {}, t(key)), h("dd", {}, value)];
  const areas = draft.areas || {};
  const regionList = (areas.regions || []).map((code) => (names[code] ? `${names[code]} (${code})` : code));
  const list = h(
    "dl",
    { class: "summary" },
    row("f_status", label("status", draft.status)),
    row("f_msg_type", label("msg", draft.msg_type)),
    draft.references && draft.references.length ? row("f_references", draft.references.join(" ")) : null,
    row("f_event", draft.event || "—"),
    row("f_urgency", label("urgency", draft.urgency)),
    row("f_severity", label("severity", draft.severity)),
    row("f_certainty", label("certainty", draft.certainty)),
    row("f_category", (draft.category || []).map((c) => label("category", c)).join(", ") || "—"),
    row("f_expires", formatTime(draft.expires)),
    row("f_regions", regionList.join(", ") || "—"),
    (areas.polygons || []).length ? row("f_polygons", (areas.polygons || []).map(polygonText).join("\n")) : null,
    (areas.circles || []).length ? row("f_circles", (areas.circles || []).map(circleText).join("\n")) : null,
  );
  const infos = (draft.infos || []).map((info) =>
    h(
      "section",
      { class: "info-block", lang: (info.language || "vi").slice(0, 2) },
      h("h3", {}, info.language === "en-US" ? t("info_en") : t("info_vi")),
      h("dl", { class: "summary" }, row("f_headline", info.headline || "—"), row("f_description", info.description || "—"), row("f_instruction", info.instruction || "—")),
    ),
  );
  return h("div", { class: "draft-summary" }, list, infos);
}

export function polygonText(ring) {
  return ring.map(([lat, lon]) => `${lat},${lon}`).join(" ");
}

export function circleText(c) {
  return `${c.lat},${c.lon} ${c.radius_km}`;
}

// A two-column table of counts, largest first: name → n
export function countTable(caption, headKey, counts, names = {}) {
  const rows = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
  return h(
    "table",
    { class: "counts" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t(headKey)), h("th", { scope: "col", class: "num" }, t("count")))),
    h(
      "tbody",
      {},
      rows.map(([key, n]) => h("tr", {}, h("th", { scope: "row" }, names[key] ? `${names[key]} (${key})` : key), h("td", { class: "num" }, formatNumber(n)))),
    ),
  );
}

// Follow's table: rows (channels or provinces) × the five progress counts
export const PROGRESS = ["tasks", "delivered", "retrying", "fell_back", "failed"];

// Follow's table: rows (channels or provinces) × the progress counts they carry
export function progressTable(caption, headKey, rows, names = {}) {
  const entries = Object.entries(rows || {}).sort((a, b) => size(b[1]) - size(a[1]));
  const columns = ["targeted", ...PROGRESS].filter((k) => entries.some(([, c]) => c[k] != null));
  return h(
    "table",
    { class: "counts" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t(headKey)), columns.map((k) => h("th", { scope: "col", class: "num" }, t(k))))),
    h(
      "tbody",
      {},
      entries.map(([key, c]) =>
        h("tr", {}, h("th", { scope: "row" }, names[key] ? `${names[key]} (${key})` : key), columns.map((k) => h("td", { class: "num" }, formatNumber(c[k] || 0)))),
      ),
    ),
  );
}

export function size(counts) {
  return counts.tasks || counts.targeted || 0;
}
