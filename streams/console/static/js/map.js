// The map: Leaflet (vendored by deploy/console/build.sh) over the build-time province outlines,
// no tiles unless the server names a tile URL. Used by Compose (drawing polygons and circles),
// Preview and Follow (provinces shaded by counts, cells as dots when the server gives centres).
/* global L */
import { t } from "./i18n.js";

// the server serves the build's static/vendor/vn-provinces.geojson here, not cached forever
const OUTLINES_URL = "/api/outlines";
const VIET_NAM = [
  [8.2, 102.1],
  [23.4, 109.6],
];
let outlinesPromise = null;

const NO_OUTLINES = { type: "FeatureCollection", features: [] };

export function outlines() {
  outlinesPromise ??= fetch(OUTLINES_URL, { credentials: "same-origin" })
    .then((r) => {
      if (!r.ok) throw new Error(`outlines: HTTP ${r.status}`);
      return r.json();
    })
    .catch(() => {
      outlinesPromise = null; // signed out or offline: try again next time, draw none now
      return NO_OUTLINES;
    });
  return outlinesPromise;
}

export async function provinceNames() {
  const doc = await outlines();
  return Object.fromEntries(doc.features.map((f) => [f.properties.code, f.properties.name]));
}

export function makeMap(container, { tileUrl = "" } = {}) {
  container.setAttribute("role", "region");
  container.setAttribute("aria-label", t("map_label"));
  // canvas: a national preview draws a few thousand cells, too many for one SVG element each
  const map = L.map(container, { zoomSnap: 0.25, minZoom: 4, maxZoom: 14, preferCanvas: true });
  map.fitBounds(VIET_NAM);
  if (tileUrl) L.tileLayer(tileUrl, { maxZoom: 18 }).addTo(map);
  map.attributionControl.setPrefix("Leaflet");
  const layer = L.geoJSON(null, { style: () => baseStyle(), interactive: false }).addTo(map);
  const ready = outlines().then((doc) => {
    layer.addData(doc);
    map.attributionControl.addAttribution("svg-maps (CC BY 4.0)");
  });
  return { map, outlines: layer, ready };
}

function baseStyle() {
  return { color: "#5a6b7b", weight: 0.8, fillColor: "#f4f1ea", fillOpacity: 1 };
}

// Shade each province by share of the largest count (a sequential blue scale).
export function shadeProvinces(view, counts) {
  const max = Math.max(1, ...Object.values(counts));
  view.outlines.setStyle((feature) => {
    const n = counts[feature.properties.code] || 0;
    if (!n) return baseStyle();
    const share = n / max;
    return { color: "#1f3b57", weight: 1, fillColor: blue(share), fillOpacity: 0.7 };
  });
}

function blue(share) {
  const light = Math.round(88 - share * 50);
  return `hsl(210, 70%, ${light}%)`;
}

// Cells of preview/follow: dots, only when the server gave their centres.
export function drawCells(view, cells) {
  view.cells?.remove();
  const dots = (cells || []).filter((c) => typeof c.lat === "number" && typeof c.lon === "number");
  if (!dots.length) return;
  const max = Math.max(1, ...dots.map((c) => c.n));
  view.cells = L.layerGroup(
    dots.map((c) =>
      L.circleMarker([c.lat, c.lon], {
        radius: 2 + 6 * Math.sqrt(c.n / max),
        color: "#a4161a",
        weight: 0,
        fillOpacity: 0.6,
        interactive: false,
      }),
    ),
  ).addTo(view.map);
}

// The draft's own shapes (polygons, circles) and its chosen provinces, highlighted.
export function drawAreas(view, areas, options = {}) {
  // after the outlines are in: a ward's province is drawn from them
  view.ready.then(() => drawAreasNow(view, areas, options));
}

function drawAreasNow(view, areas, { fit = true } = {}) {
  view.areas?.remove();
  const group = L.featureGroup();
  for (const ring of areas.polygons || []) {
    L.polygon(ring, { color: "#a4161a", weight: 2, fillOpacity: 0.15 }).addTo(group);
  }
  for (const c of areas.circles || []) {
    L.circle([c.lat, c.lon], { radius: c.radius_km * 1000, color: "#a4161a", weight: 2, fillOpacity: 0.15 }).addTo(group);
  }
  // a whole province is highlighted; a ward (no outline of its own here) marks its province dashed
  const codes = areas.regions || [];
  const whole = new Set(codes.filter((code) => code.split("-").length === 2));
  const partly = new Set(codes.map((code) => code.split("-").slice(0, 2).join("-")));
  view.outlines.eachLayer((layer) => {
    const code = layer.feature.properties.code;
    if (whole.has(code)) group.addLayer(L.geoJSON(layer.feature, { style: selectedStyle, interactive: false }));
    else if (partly.has(code)) group.addLayer(L.geoJSON(layer.feature, { style: partStyle, interactive: false }));
  });
  group.addTo(view.map);
  view.areas = group;
  if (fit && group.getLayers().length) view.map.fitBounds(group.getBounds(), { maxZoom: 8, padding: [10, 10] });
}

function partStyle() {
  return { color: "#a4161a", weight: 2, dashArray: "5 4", fill: false };
}

function selectedStyle() {
  return { color: "#a4161a", weight: 2, fillColor: "#f6c453", fillOpacity: 0.35 };
}

// Drawing: click corners for a polygon, centre then edge for a circle. onShape gets
// {polygon: [[lat, lon], ...]} or {circle: {lat, lon, radius_km}}.
export class Drawer {
  constructor(view, onShape) {
    this.view = view;
    this.onShape = onShape;
    this.mode = "";
    this.points = [];
    this.sketch = L.layerGroup().addTo(view.map);
    view.map.on("click", (e) => this.click(e.latlng));
  }

  start(mode) {
    this.mode = mode;
    this.points = [];
    this.sketch.clearLayers();
    this.view.map.getContainer().classList.toggle("drawing", Boolean(mode));
  }

  click(latlng) {
    const point = [round(latlng.lat, 5), round(latlng.lng, 5)];
    if (this.mode === "polygon") {
      this.points.push(point);
      this.sketch.clearLayers();
      L.polyline(this.points, { color: "#a4161a", dashArray: "4 4" }).addTo(this.sketch);
      for (const p of this.points) L.circleMarker(p, { radius: 3, color: "#a4161a" }).addTo(this.sketch);
    } else if (this.mode === "circle") {
      if (!this.points.length) {
        this.points.push(point);
        L.circleMarker(point, { radius: 3, color: "#a4161a" }).addTo(this.sketch);
      } else {
        const [lat, lon] = this.points[0];
        const radius_km = round(latlng.distanceTo(L.latLng(lat, lon)) / 1000, 2);
        this.start("");
        if (radius_km > 0) this.onShape({ circle: { lat, lon, radius_km } });
      }
    }
  }

  finish() {
    if (this.mode === "polygon" && this.points.length >= 3) this.onShape({ polygon: this.points });
    this.start("");
  }
}

function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
