// Command loa-dashboard-lint checks Grafana dashboard JSON files; exit 1 on any error.
//
// Two checks, both with upstream code rather than our own reading of Grafana's format:
//
//  1. Schema: the dashboard decodes strictly into Grafana's foundation SDK types
//     (github.com/grafana/grafana-foundation-sdk/go, generated from Grafana's schemas: unknown
//     fields, wrong types and missing required fields are errors; panel options and queries are
//     decoded by their plugin's types) and passes the SDK's Validate.
//  2. Lint: the rules of Grafana's dashboard linter (github.com/grafana/dashboard-linter), same
//     names and logic, on Prometheus' own PromQL parser. The linter itself cannot be installed
//     here: the Go module proxy refuses it, and it depends on AGPL modules (Loki, Grafana's
//     dashboard app) that this project does not take in.
//
// Usage: loa-dashboard-lint DASHBOARD.json...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The dashboard linter's stand-ins for Grafana's interval variables (lint/variables.go).
var magicDurations = map[string]string{
	"__rate_interval": "8869990787ms",
	"__interval":      "4867856611ms",
	"__range":         "6692311173ms",
}

var variableRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Label      string          `json:"label"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasourceRef  `json:"datasource"`
	Multi      bool            `json:"multi"`
	AllValue   string          `json:"allValue"`
	Refresh    int             `json:"refresh"`
}

// queryString is the variable's query: a string or {"query": string}.
func (v variable) queryString() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var m struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &m)
	return m.Query
}

type target struct {
	Expr string `json:"expr"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	Targets     []target       `json:"targets"`
	Panels      []panel        `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type board struct {
	Title      string  `json:"title"`
	Editable   bool    `json:"editable"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loa-dashboard-lint DASHBOARD.json...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		problems, err := check(path)
		if err != nil {
			problems = append(problems, err.Error())
		}
		for _, p := range problems {
			fmt.Printf("%s: %s\n", path, p)
		}
		failed = failed || len(problems) > 0
	}
	if failed {
		os.Exit(1)
	}
}

func check(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var problems []string
	var typed dashboard.Dashboard
	if err := orNil(typed.UnmarshalJSONStrict(raw)); err != nil {
		problems = append(problems, "[schema] "+err.Error())
	} else if err := orNil(typed.Validate()); err != nil {
		problems = append(problems, "[schema] "+err.Error())
	}
	var d board
	if err := json.Unmarshal(raw, &d); err != nil {
		return problems, err
	}
	return append(problems, lint(d)...), nil
}

// orNil turns the SDK's empty error list (a non-nil interface holding a nil slice) into nil.
func orNil(err error) error {
	if errs, ok := err.(cog.BuildErrors); ok && len(errs) == 0 {
		return nil
	}
	return err
}

// lint applies the dashboard linter's rules for Prometheus dashboards.
func lint(d board) []string {
	var out []string
	add := func(rule, format string, args ...any) {
		out = append(out, fmt.Sprintf("[%s] %s", rule, fmt.Sprintf(format, args...)))
	}
	var datasources []variable
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			datasources = append(datasources, v)
		}
	}
	if len(datasources) == 0 {
		add("template-datasource-rule", "does not have a templated data source")
	}
	for _, v := range datasources {
		q := v.queryString()
		names := map[string]bool{strings.ToLower(q) + "_datasource": true}
		titled := strings.ToUpper(q[:min(1, len(q))]) + q[min(1, len(q)):]
		labels := map[string]bool{titled + " data source": true}
		if len(datasources) == 1 {
			names["datasource"], labels["Data source"] = true, true
		}
		if !names[v.Name] {
			add("template-datasource-rule", "templated data source variable named %q", v.Name)
		}
		if !labels[v.Label] {
			add("template-datasource-rule", "templated data source variable labeled %q", v.Label)
		}
	}
	prometheus := len(datasources) > 0 && datasources[0].queryString() == "prometheus"
	if prometheus {
		for _, name := range []string{"job", "instance"} {
			checkTemplate(d, name, add)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && v.Refresh != 2 {
			add("template-on-time-change-reload-rule", "%s template should refresh on time range change (refresh 2)", v.Name)
		}
	}
	if d.Editable {
		add("uneditable-dashboard", "is editable, it should be set to 'editable: false'")
	}
	for _, p := range flatten(d.Panels) {
		lintPanel(d, p, prometheus, add)
	}
	return out
}

func checkTemplate(d board, name string, add func(string, string, ...any)) {
	rule := "template-" + name + "-rule"
	var t *variable
	for i := range d.Templating.List {
		if d.Templating.List[i].Name == name {
			t = &d.Templating.List[i]
		}
	}
	if t == nil {
		add(rule, "is missing the %s template", name)
		return
	}
	if t.Datasource == nil || (t.Datasource.UID != "$datasource" && t.Datasource.UID != "${datasource}") {
		add(rule, "%s template should use datasource '$datasource'", name)
	}
	if t.Type != "query" {
		add(rule, "%s template should be a Prometheus query, is currently %q", name, t.Type)
	}
	if want := strings.ToUpper(name[:1]) + name[1:]; t.Label != want {
		add(rule, "%s template should be labeled %q, is currently %q", name, want, t.Label)
	}
	if !t.Multi {
		add(rule, "%s template should be a multi select", name)
	}
	if t.AllValue != ".+" {
		add(rule, "%s template allValue should be '.+', is currently %q", name, t.AllValue)
	}
	if _, err := parsePromQL(labelValuesSelector(t.queryString())); err != nil {
		add("template-label-promql-rule", "%s template has invalid PromQL query %q: %v", name, t.queryString(), err)
	}
}

// labelValuesSelector is the series selector of label_values(SELECTOR, label), else the query.
func labelValuesSelector(q string) string {
	if m := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`).FindStringSubmatch(q); m != nil {
		return m[1]
	}
	return q
}

func flatten(panels []panel) []panel {
	var out []panel
	for _, p := range panels {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

var unitsChecked = map[string]bool{"stat": true, "singlestat": true, "graph": true, "table-old": true, "timeseries": true, "gauge": true}

func lintPanel(d board, p panel, prometheus bool, add func(string, string, ...any)) {
	where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
	if p.Type == "row" || p.Type == "text" {
		return
	}
	if unitsChecked[p.Type] {
		if p.Title == "" || p.Description == "" {
			add("panel-title-description-rule", "%s has missing title or description", where)
		}
		if !validUnits[p.FieldConfig.Defaults.Unit] {
			add("panel-units-rule", "%s has no or invalid units defined: %q", where, p.FieldConfig.Defaults.Unit)
		}
	}
	if len(p.Targets) == 0 {
		add("panel-no-targets-rule", "%s has no targets", where)
	}
	if p.Datasource == nil || (p.Datasource.UID != "$datasource" && p.Datasource.UID != "${datasource}") {
		add("panel-datasource-rule", "%s does not use a templated datasource", where)
	}
	if !prometheus {
		return
	}
	for _, t := range p.Targets {
		expr, err := parsePromQL(t.Expr)
		if err != nil {
			add("target-promql-rule", "%s: invalid PromQL query %q: %v", where, t.Expr, err)
			continue
		}
		for _, rule := range targetRules {
			if err := rule.check(expr); err != nil {
				add(rule.name, "%s: %q: %v", where, t.Expr, err)
			}
		}
	}
}

// parsePromQL expands Grafana's variables as the dashboard linter does: interval variables to
// its magic durations, others (inside label matchers, as "$job") are left as they are.
func parsePromQL(expr string) (parser.Expr, error) {
	expanded := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		name := strings.Trim(ref, "${}")
		if d, ok := magicDurations[name]; ok {
			return d
		}
		return ref
	})
	return parser.NewParser(parser.Options{}).ParseExpr(expanded)
}

type targetRule struct {
	name  string
	check func(parser.Expr) error
}

var rateInterval, _ = time.ParseDuration(magicDurations["__rate_interval"])

var targetRules = []targetRule{
	{"target-rate-interval-rule", func(e parser.Expr) error {
		return walk(e, func(node parser.Node, path []parser.Node) error {
			m, ok := node.(*parser.MatrixSelector)
			if !ok || m.Range == rateInterval || len(path) == 0 {
				return nil
			}
			if call, ok := path[len(path)-1].(*parser.Call); ok && (call.Func.Name == "rate" || call.Func.Name == "irate") {
				return fmt.Errorf("should use $__rate_interval")
			}
			return nil
		})
	}},
	{"target-counter-agg-rule", func(e parser.Expr) error {
		return walk(e, func(node parser.Node, path []parser.Node) error {
			// by the metric name: upstream tests the selector's text, which misses every
			// counter written with label matchers (foo_total{job=~"$job"})
			v, ok := node.(*parser.VectorSelector)
			if !ok || !strings.HasSuffix(v.Name, "_total") {
				return nil
			}
			bad := fmt.Errorf("counter metric '%s' is not aggregated with rate, irate, or increase", v)
			if len(path) < 2 {
				return bad
			}
			if _, ok := path[len(path)-1].(*parser.MatrixSelector); !ok {
				return bad
			}
			call, ok := path[len(path)-2].(*parser.Call)
			if !ok || (call.Func.Name != "rate" && call.Func.Name != "irate" && call.Func.Name != "increase") {
				return bad
			}
			return nil
		})
	}},
	{"target-job-rule", requiredMatcher("job")},
	{"target-instance-rule", requiredMatcher("instance")},
}

func requiredMatcher(name string) func(parser.Expr) error {
	return func(e parser.Expr) error {
		for _, selector := range parser.ExtractSelectors(e) {
			found := false
			for _, m := range selector {
				if m.Name == name {
					if m.Type != labels.MatchRegexp || m.Value != "$"+name {
						return fmt.Errorf("%s selector is %s, not %s=~\"$%s\"", name, m, name, name)
					}
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s selector not found", name)
			}
		}
		return nil
	}
}

type inspector func(parser.Node, []parser.Node) error

func (f inspector) Visit(node parser.Node, path []parser.Node) (parser.Visitor, error) {
	if err := f(node, path); err != nil {
		return nil, err
	}
	return f, nil
}

func walk(e parser.Expr, f inspector) error { return parser.Walk(f, e, nil) }
