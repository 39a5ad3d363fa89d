// Login, Preview, Approve, Follow and History: each renders into <main> and returns an
// optional stop function (Follow's poll) that the router calls when the user leaves.
import { ApiError, get, post, setCsrf } from "./api.js";
import { alertBox, countTable, draftSummary, errorText, formatTime, hasRole, label, progressTable, PROGRESS, regionNames, session, size } from "./common.js";
import { h, replace } from "./dom.js";
import { formatNumber, t } from "./i18n.js";
import { drawAreas, drawCells, makeMap, provinceNames, shadeProvinces } from "./map.js";

const FOLLOW_EVERY_MS = 2000;

// "loading" in <main>, then the record at `path` and the names of its regions; on an error the
// error in <main> and null.
async function loadRecord(main, path) {
  replace(main, h("p", {}, t("loading")));
  let record;
  try {
    record = await get(path);
  } catch (err) {
    replace(main, alertBox(errorText(err)));
    return null;
  }
  const names = await regionNames((record.areas || {}).regions, await provinceNames().catch(() => ({})));
  return { record, names };
}

export function loginPage(main, onLogin) {
  const message = h("p", { id: "login-error", class: "field-error", role: "alert", hidden: true });
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true, "aria-describedby": "login-error" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "login-error" });
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: async (e) => {
        e.preventDefault();
        message.hidden = true;
        try {
          const me = await post("/api/login", { username: user.value, password: password.value });
          onLogin(me);
        } catch (err) {
          message.hidden = false;
          if (err.status === 401) message.textContent = t("login_failed");
          else if (err.status === 429) message.textContent = t("login_limited", { seconds: err.retryAfter || 60 });
          else message.textContent = errorText(err);
          for (const el of [user, password]) el.setAttribute("aria-invalid", "true");
          password.value = "";
          password.focus();
        }
      },
    },
    h("h1", {}, t("login_title")),
    message,
    h("div", { class: "field" }, h("label", { for: "username" }, t("login_username")), user),
    h("div", { class: "field" }, h("label", { for: "password" }, t("login_password")), password),
    h("p", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "login" }, t("login_submit"))),
  );
  replace(main, form);
  user.focus();
}

export function adoptSession(me) {
  Object.assign(session, { user: me.user, agency: me.agency, roles: me.roles || [], csrf: me.csrf, tile_url: me.tile_url || "" });
  setCsrf(me.csrf);
}

// --- Preview ---------------------------------------------------------------------------------
function previewPanel(preview, names) {
  return h(
    "div",
    { class: "preview" },
    h(
      "dl",
      { class: "figures" },
      h("div", {}, h("dt", {}, t("preview_reached")), h("dd", { id: "reached" }, formatNumber(preview.reached))),
      h("div", {}, h("dt", {}, t("preview_directory")), h("dd", {}, formatNumber(preview.directory))),
      h("div", {}, h("dt", {}, t("preview_eta")), h("dd", {}, preview.eta_s == null ? t("preview_eta_unknown") : duration(preview.eta_s))),
    ),
    h("p", { class: "hint" }, t("preview_version", { version: preview.version, msg_type: label("msg", preview.msg_type) })),
    (preview.warnings || []).length
      ? h("div", { class: "notice notice-warning", role: "status" }, h("h2", {}, t("warnings_title")), h("ul", {}, preview.warnings.map((w) => h("li", { dataset: { code: w.code } }, w.message || w.code))))
      : null,
    preview.alert
      ? h("details", { id: "signed-alert" }, h("summary", {}, t("alert_to_sign")), h("pre", { class: "cap", tabindex: "0" }, JSON.stringify(preview.alert, null, 2)))
      : null,
    h(
      "div",
      { class: "tables" },
      countTable(t("preview_by_province"), "province", preview.by_province, names),
      countTable(t("preview_by_channel"), "channel", preview.by_channel),
      countTable(t("preview_by_kind"), "kind", preview.by_kind),
    ),
  );
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

async function showPreview(slot, mapEl, draft, names) {
  const view = makeMap(mapEl, { tileUrl: session.tile_url });
  drawAreas(view, draft.areas || {});
  try {
    const preview = await post(`/api/drafts/${encodeURIComponent(draft.id)}/preview`);
    replace(slot, previewPanel(preview, names));
    shadeProvinces(view, preview.by_province || {});
    drawCells(view, preview.cells);
    drawAreas(view, draft.areas || {}, { fit: false });
  } catch (err) {
    replace(slot, alertBox(errorText(err)));
  }
}

export async function previewPage(main, id) {
  const loaded = await loadRecord(main, `/api/drafts/${encodeURIComponent(id)}`);
  if (!loaded) return;
  const { record: draft, names } = loaded;
  const slot = h("div", {}, h("p", {}, t("loading")));
  const mapEl = h("div", { class: "map", id: "preview-map" });
  const outcome = h("div", { id: "outcome", "aria-live": "polite" });
  const mine = draft.author === session.user;
  const editable = ["draft", "returned"].includes(draft.state);
  const actions = h(
    "p",
    { class: "actions" },
    editable && hasRole("author") ? h("a", { class: "button", href: `#/compose/${encodeURIComponent(id)}`, id: "edit" }, t("edit")) : null,
    editable && hasRole("author")
      ? h(
          "button",
          {
            type: "button",
            class: "primary",
            id: "submit",
            onclick: async (e) => {
              e.target.disabled = true;
              try {
                const record = await post(`/api/drafts/${encodeURIComponent(id)}/submit`);
                showOutcome(outcome, record);
                actions.hidden = true;
              } catch (err) {
                replace(outcome, alertBox(errorText(err)));
                e.target.disabled = false;
              }
            },
          },
          t("submit"),
        )
      : null,
    draft.state === "awaiting_approval" && hasRole("approver") && !mine ? h("a", { class: "button primary", href: `#/approve/${encodeURIComponent(id)}` }, t("approve_title")) : null,
  );
  replace(
    main,
    h("h1", {}, t("preview_title")),
    h("p", { class: "state" }, label("state", draft.state)),
    draft.return_reason ? alertBox(t("returned_reason", { reason: draft.return_reason }), "warning") : null,
    h("div", { class: "two-col" }, h("div", {}, slot, draftSummary(draft, names)), h("div", {}, mapEl)),
    actions,
    outcome,
  );
  if (draft.state === "awaiting_approval" || draft.state === "sent") showOutcome(outcome, draft);
  await showPreview(slot, mapEl, draft, names);
}

function showOutcome(slot, record) {
  if (record.state === "sent" && record.alert_id) {
    location.hash = `#/follow/${encodeURIComponent(record.alert_id)}`;
    return;
  }
  if (record.state === "returned") {
    replace(slot, alertBox(t("returned_reason", { reason: record.return_reason || "" }), "warning"));
    return;
  }
  if (record.state === "awaiting_approval") {
    const link = `${location.origin}${location.pathname}#/approve/${encodeURIComponent(record.id)}`;
    replace(slot, h("div", { class: "notice notice-ok", role: "status" }, h("p", {}, t("awaiting")), h("p", {}, h("a", { href: link, id: "approve-link" }, link))));
  }
}

// --- Approve ---------------------------------------------------------------------------------
export async function approvePage(main, id) {
  const loaded = await loadRecord(main, `/api/drafts/${encodeURIComponent(id)}`);
  if (!loaded) return;
  const { record: draft, names } = loaded;
  const slot = h("div", {}, h("p", {}, t("loading")));
  const mapEl = h("div", { class: "map", id: "approve-map" });
  const outcome = h("div", { id: "outcome", "aria-live": "polite" });
  const confirm = h("input", { type: "checkbox", id: "approve-confirm" });
  const reason = h("textarea", { id: "return-reason", rows: 2 });
  const act = async (button, path, body) => {
    button.disabled = true;
    try {
      const record = await post(`/api/drafts/${encodeURIComponent(id)}/${path}`, body);
      if (record.state === "sent") {
        replace(
          outcome,
          h(
            "div",
            { class: "notice notice-ok", role: "status" },
            h("p", { id: "decision" }, t("decision", { outcome: decisionText(record.decision) })),
            record.alert_id ? h("p", {}, h("a", { href: `#/follow/${encodeURIComponent(record.alert_id)}`, id: "follow-link" }, t("follow_link"))) : null,
          ),
        );
        controls.hidden = true;
      } else {
        replace(outcome, alertBox(label("state", record.state), "ok"));
        controls.hidden = true;
      }
    } catch (err) {
      replace(outcome, alertBox(errorText(err)));
      button.disabled = false;
    }
  };
  const approveButton = h("button", { type: "button", class: "primary", id: "approve", disabled: true, onclick: () => act(approveButton, "approve") }, t("approve"));
  confirm.addEventListener("change", () => (approveButton.disabled = !confirm.checked));
  const returnButton = h("button", { type: "button", id: "return", onclick: () => act(returnButton, "return", { reason: reason.value }) }, t("return"));
  const controls = h(
    "div",
    { class: "approve-controls" },
    h("p", { class: "field-inline" }, confirm, h("label", { for: "approve-confirm" }, t("approve_confirm"))),
    h("p", { class: "actions" }, approveButton),
    h("div", { class: "field wide" }, h("label", { for: "return-reason" }, t("return_reason")), reason),
    h("p", { class: "actions" }, returnButton),
  );
  controls.hidden = draft.state !== "awaiting_approval";
  replace(
    main,
    h("h1", {}, t("approve_title")),
    h("p", { class: "intro" }, t("approve_intro")),
    h("p", { class: "state" }, `${label("state", draft.state)} · ${t("approve_author", { author: draft.author })}`),
    h("div", { class: "two-col" }, h("div", {}, draftSummary(draft, names), slot), h("div", {}, mapEl)),
    controls,
    outcome,
  );
  await showPreview(slot, mapEl, draft, names);
}

function decisionText(decision) {
  if (!decision) return "—";
  if (typeof decision === "string") return decision;
  const parts = [decision.outcome || decision.decision || "", decision.message || ""];
  for (const r of decision.reasons || []) parts.push(typeof r === "string" ? r : r.message || r.code);
  for (const w of decision.warnings || []) parts.push(typeof w === "string" ? w : w.message || w.code);
  return parts.filter(Boolean).join(" — ");
}

// --- Follow ----------------------------------------------------------------------------------
export async function followPage(main, alertId) {
  const loaded = await loadRecord(main, `/api/alerts/${encodeURIComponent(alertId)}`);
  if (!loaded) return null;
  const { record, names } = loaded;
  const headline = ((record.infos || [])[0] || {}).headline || alertId;
  const figures = h("div", { id: "follow-figures", "aria-live": "off" }, h("p", {}, t("loading")));
  const state = h("p", { id: "follow-state", class: "state", role: "status" }, t("follow_live"));
  const mapEl = h("div", { class: "map", id: "follow-map" });
  const outcome = h("div", { id: "outcome" });
  const lifecycle = async (button, kind) => {
    button.disabled = true;
    try {
      const draft = await post(`/api/alerts/${encodeURIComponent(alertId)}/${kind}`);
      location.hash = `#/compose/${encodeURIComponent(draft.id)}`;
    } catch (err) {
      replace(outcome, alertBox(errorText(err)));
      button.disabled = false;
    }
  };
  const updateButton = h("button", { type: "button", id: "do-update", onclick: () => lifecycle(updateButton, "update") }, t("do_update"));
  const cancelButton = h("button", { type: "button", id: "do-cancel", class: "danger", onclick: () => lifecycle(cancelButton, "cancel") }, t("do_cancel"));
  const cap = typeof record.cap === "string" ? record.cap : JSON.stringify(record.cap, null, 2);
  replace(
    main,
    h("h1", {}, t("follow_title", { headline })),
    state,
    h("div", { class: "two-col" }, figures, h("div", {}, mapEl)),
    hasRole("author") && record.msg_type !== "Cancel" ? h("p", { class: "actions" }, updateButton, cancelButton) : null,
    outcome,
    h("details", {}, h("summary", {}, t("cap_title")), h("pre", { class: "cap", tabindex: "0" }, cap || "—")),
    draftSummary(record, names),
  );
  const view = makeMap(mapEl, { tileUrl: session.tile_url });
  drawAreas(view, record.areas || {});
  let timer = null;
  let stopped = false;
  const poll = async () => {
    try {
      const progress = await get(`/api/alerts/${encodeURIComponent(alertId)}/follow`);
      replace(figures, followPanel(progress, names));
      const delivered = Object.fromEntries(Object.entries(progress.by_province || {}).map(([k, v]) => [k, size(v)]));
      shadeProvinces(view, delivered);
      drawCells(view, progress.cells);
      drawAreas(view, record.areas || {}, { fit: false });
      state.textContent = progress.done ? t("follow_done") : `${t("follow_live")} · ${t("follow_updated", { time: formatTime(progress.updated_at) })}`;
      state.dataset.done = progress.done ? "true" : "false";
    } catch (err) {
      state.textContent = errorText(err);
    }
    if (!stopped) timer = setTimeout(poll, FOLLOW_EVERY_MS);
  };
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function followPanel(p, names) {
  return h(
    "div",
    {},
    h("dl", { class: "figures" }, ["targeted", ...PROGRESS].filter((k) => p[k] != null).map((k) => h("div", {}, h("dt", {}, t(k)), h("dd", { id: `follow-${k}` }, formatNumber(p[k] || 0))))),
    h("div", { class: "tables" }, progressTable(t("follow_by_channel"), "channel", p.by_channel), progressTable(t("follow_by_province"), "province", p.by_province, names)),
  );
}

// --- History ---------------------------------------------------------------------------------
export async function historyPage(main) {
  replace(main, h("p", {}, t("loading")));
  let alerts;
  let drafts;
  try {
    [alerts, drafts] = await Promise.all([get("/api/alerts"), get("/api/drafts")]);
  } catch (err) {
    replace(main, alertBox(errorText(err)));
    return;
  }
  const draftLink = (d) => (d.state === "awaiting_approval" && hasRole("approver") && d.author !== session.user ? `#/approve/${encodeURIComponent(d.id)}` : `#/preview/${encodeURIComponent(d.id)}`);
  const table = (label_, heads, rows) =>
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label_ }, h("table", { class: "history" }, h("thead", {}, h("tr", {}, heads.map((k) => h("th", { scope: "col" }, t(k))))), h("tbody", {}, rows)));
  replace(
    main,
    h("h1", {}, t("history_title")),
    h("h2", {}, t("drafts_title")),
    drafts.length
      ? table(
          t("drafts_title"),
          ["h_updated", "h_headline", "h_type", "h_status", "h_severity", "h_author", "h_state"],
          drafts.map((d) =>
            h(
              "tr",
              { dataset: { draft: d.id } },
              h("td", {}, formatTime(d.updated_at || d.created_at)),
              h("td", {}, h("a", { href: draftLink(d) }, ((d.infos || [])[0] || {}).headline || d.id)),
              h("td", {}, label("msg", d.msg_type)),
              h("td", {}, label("status", d.status)),
              h("td", {}, label("severity", d.severity)),
              h("td", {}, d.author || "—"),
              h("td", {}, label("state", d.state)),
            ),
          ),
        )
      : h("p", {}, t("drafts_empty")),
    h("h2", {}, t("sent_title")),
    alerts.length
      ? table(
          t("history_title"),
          ["h_sent", "h_headline", "h_type", "h_status", "h_severity", "h_people", "h_decision", "h_state"],
          alerts.map((a) =>
            h(
              "tr",
              { dataset: { alert: a.alert_id || "", draft: a.draft_id || "" } },
              h("td", {}, formatTime(a.sent_at)),
              h("td", {}, a.alert_id ? h("a", { href: `#/follow/${encodeURIComponent(a.alert_id)}` }, a.headline || a.alert_id) : a.headline || "—"),
              h("td", {}, label("msg", a.msg_type)),
              h("td", {}, label("status", a.status)),
              h("td", {}, label("severity", a.severity)),
              h("td", {}, [a.author, a.approver].filter(Boolean).join(" / ")),
              h("td", {}, decisionText(a.decision)),
              h("td", {}, label("state", a.state)),
            ),
          ),
        )
      : h("p", {}, t("history_empty")),
  );
}

export { ApiError };
