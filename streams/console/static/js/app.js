// The console's single page: hash routes (#/login, #/compose[/id], #/preview/id,
// #/approve/id, #/follow/alert_id, #/history), the header with the language switch, and the
// session check (/api/me) before any page that needs one.
import { get, post, setCsrf, setOnSignedOut } from "./api.js";
import { hasRole, session } from "./common.js";
import { composePage } from "./compose.js";
import { h, replace } from "./dom.js";
import { language, savedLanguage, setLanguage, t } from "./i18n.js";
import { adoptSession, approvePage, followPage, historyPage, loginPage, previewPage } from "./views.js";

const header = document.getElementById("header");
const main = document.getElementById("main");
let stopPage = null;
let signedIn = false;

function renderHeader() {
  const route = location.hash.split("/")[1] || "";
  const nav = signedIn
    ? h(
        "nav",
        { "aria-label": "Loa" },
        h("a", { href: "#/compose", "aria-current": route === "compose" ? "page" : null }, t("nav_compose")),
        h("a", { href: "#/history", "aria-current": route === "history" ? "page" : null }, t("nav_history")),
        h("button", { type: "button", id: "logout", onclick: logout }, t("nav_logout")),
      )
    : null;
  replace(
    header,
    h("a", { class: "skip", href: "#main" }, t("skip")),
    h("p", { class: "brand" }, t("app_name")),
    signedIn ? h("p", { class: "who", id: "who" }, t("signed_in_as", { user: session.user, agency: session.agency, roles: session.roles.map((r) => t(`role_${r}`)).join(", ") })) : null,
    nav,
    h("button", { type: "button", id: "lang", lang: language() === "vi" ? "en" : "vi", "aria-label": t("lang_switch_label"), onclick: switchLanguage }, t("lang_switch")),
  );
  // the skip link must not change the route
  header.querySelector(".skip").addEventListener("click", (e) => {
    e.preventDefault();
    main.focus();
  });
}

function switchLanguage() {
  setLanguage(language() === "vi" ? "en" : "vi");
  route({ keep: true }); // the same page in the other language, with what was typed
}

async function logout() {
  try {
    await post("/api/logout");
  } catch {
    // signed out either way: the page forgets the session
  }
  signedIn = false;
  setCsrf("");
  location.hash = "#/login";
}

async function ensureSession() {
  if (signedIn) return true;
  try {
    const me = await get("/api/me");
    adoptSession(me);
    if (!savedLanguage() && me.lang) setLanguage(me.lang);
    signedIn = true;
  } catch {
    signedIn = false;
  }
  return signedIn;
}

async function route({ keep = false } = {}) {
  if (stopPage) stopPage();
  stopPage = null;
  const [, page = "", id = ""] = location.hash.split("/");
  const decoded = decodeURIComponent(id);
  if (page !== "login" && !(await ensureSession())) {
    sessionStorage.setItem("loa.after", location.hash);
    location.hash = "#/login";
    return;
  }
  renderHeader();
  document.title = `${t("app_name")}`;
  if (page === "login") {
    if (signedIn) {
      location.hash = hasRole("author") ? "#/compose" : "#/history";
      return;
    }
    loginPage(main, (me) => {
      adoptSession(me);
      if (!savedLanguage() && me.lang) setLanguage(me.lang);
      signedIn = true;
      const after = sessionStorage.getItem("loa.after");
      sessionStorage.removeItem("loa.after");
      location.hash = after && after !== "#/login" ? after : hasRole("author") ? "#/compose" : "#/history";
    });
  } else if (page === "compose") await composePage(main, decoded, { keep });
  else if (page === "preview") await previewPage(main, decoded);
  else if (page === "approve") await approvePage(main, decoded);
  else if (page === "follow") stopPage = await followPage(main, decoded);
  else if (page === "history") await historyPage(main);
  else location.hash = hasRole("author") ? "#/compose" : "#/history";
  main.dataset.page = page;
}

setLanguage(savedLanguage() || "vi");
setOnSignedOut(() => {
  if (!signedIn) return;
  signedIn = false;
  setCsrf("");
  sessionStorage.setItem("loa.after", location.hash);
  location.hash = "#/login";
});
window.addEventListener("hashchange", () => route());
route();
